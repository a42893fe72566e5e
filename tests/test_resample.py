"""models/resample: FlexiViT's PI-resize against big_vision's and timm's
(reference values), and big_vision FlexiViT files."""
import warnings

import flax.traverse_util
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vit_jax import checkpoint
from vit_jax import models
from vit_jax.checkpoint import big_vision
from vit_jax.models import resample
from vit_jax.models import vit


@pytest.mark.parametrize('size', ['6x6', '2x3'])
def test_pi_resize_matches_big_vision_and_timm(reference, size):
  ref_dir, cases = reference
  refs = np.load(ref_dir / cases['features_tiny']['refs'])
  kernel = refs['flexi/kernel']
  hw = tuple(int(s) for s in size.split('x'))
  scale = max(1., float(np.abs(refs[f'flexi/bv/{size}']).max()))
  got = jax.jit(lambda k: checkpoint.resize_patch_embedding(k, hw))(kernel)
  np.testing.assert_allclose(got, refs[f'flexi/bv/{size}'], atol=2e-5 * scale)
  got = jax.jit(lambda k: checkpoint.resize_patch_embedding(
      k, hw, interpolation='bicubic', antialias=True))(kernel)
  np.testing.assert_allclose(got, refs[f'flexi/timm_bicubic/{size}'],
                             atol=2e-5 * scale)
  # The two libraries' defaults really differ (0.1-0.3 here).
  assert np.abs(refs[f'flexi/bv/{size}'] -
                refs[f'flexi/timm_bicubic/{size}']).max() > 0.1


def test_pi_resize_same_size_and_errors():
  kernel = jnp.ones((4, 4, 3, 8))
  assert checkpoint.resize_patch_embedding(kernel, 4) is kernel
  with pytest.raises(ValueError, match='interpolation'):
    checkpoint.resize_patch_embedding(kernel, 8, interpolation='nearest')
  with pytest.raises(ValueError, match='HWIO'):
    checkpoint.resize_patch_embedding(kernel[0], 8)


def test_pi_resize_mixed_is_finite_and_warns():
  """8 -> 6x10 (one side shrinks, the other grows): big_vision gives ~1e9;
  the exact pseudo-inverse (timm's too) stays of the kernel's magnitude."""
  kernel = np.random.RandomState(0).standard_normal((8, 8, 3, 4)).astype(
      np.float32)
  # Each call jitted (one compile, not one per eager op); the warning comes
  # while tracing.
  resize = lambda k, hw: jax.jit(
      lambda k: checkpoint.resize_patch_embedding(k, hw))(k)
  with pytest.warns(UserWarning, match='big_vision'):
    mixed = resize(kernel, (6, 10))
  assert mixed.shape == (6, 10, 3, 4)
  assert np.abs(mixed).max() < 10
  with warnings.catch_warnings():
    warnings.simplefilter('error')  # Pure grows/shrinks do not warn.
    resize(kernel, (6, 5))
  # Shrinking one axis and growing the other, as two separable steps.
  step = resize(resize(kernel, (6, 8)), (6, 10))
  np.testing.assert_allclose(mixed, step, atol=1e-5)


def test_big_vision_flexivit_file(tmp_path):
  """A file in big_vision FlexiViT's layout (top-level pos_embedding for a
  2x2 grid, no row for the class token) computes what its `_Model` does at
  another patch size: PI-resized kernel, posemb resized bilinearly (jax's
  'linear'), the class token prepended after."""
  config = big_vision.config_from_kwargs(dict(
      variant='mu', patch_size=(4, 4), posemb_size=(2, 2), pool_type='tok',
      seqhw=None))
  assert config.dynamic_img_size and config.posemb_grid == (2, 2)
  model = models.create(config, 3)
  # Only the init's shapes: every value is drawn here.
  params = jax.tree.map(
      lambda p: np.random.RandomState(p.size).standard_normal(p.shape).astype(
          np.float32) * 0.3,
      jax.eval_shape(lambda: model.init(
          jax.random.PRNGKey(0), jnp.zeros((1, 8, 8, 3)),
          train=False)['params']))
  flat = {'/'.join(k): v for k, v in
          flax.traverse_util.flatten_dict(params).items()}
  posemb = flat.pop('Transformer/posembed_input/pos_embedding')[:, 1:]
  flat['pos_embedding'] = posemb  # big_vision's: no class-token row.
  np.savez(tmp_path / 'flexi.npz', **flat)
  loaded = checkpoint.load_npz(str(tmp_path / 'flexi.npz'))

  x = np.random.RandomState(1).uniform(-1, 1, (2, 12, 12, 3)).astype(
      np.float32)
  # big_vision's forward pass written out, up to the first block's output:
  # a 4x4 grid of 3x3 patches.
  kernel = checkpoint.resize_patch_embedding(params['embedding']['kernel'],
                                             (3, 3))
  tokens = jnp.einsum('nhpwqc,pqcd->nhwd', x.reshape(2, 4, 3, 4, 3, 3),
                      kernel) + params['embedding']['bias']
  pe = jax.image.resize(posemb.reshape(1, 2, 2, -1), (1, 4, 4, 32), 'linear')
  tokens = (tokens + pe).reshape(2, 16, 32)
  tokens = jnp.concatenate([jnp.tile(params['cls'], (2, 1, 1)), tokens], 1)
  want = jax.jit(lambda p, t: vit.Encoder1DBlock(
      mlp_dim=128, num_heads=2).apply({'params': p}, t, True))(
          params['Transformer']['encoderblock_0'], tokens)

  got, = jax.jit(lambda p, x: model.apply(
      {'params': p}, x, train=False, patch_size=(3, 3),
      method='forward_intermediates', indices=[0],
      return_prefix_tokens=True))(loaded, x)
  np.testing.assert_allclose(got[0].reshape(2, 16, 32), want[:, 1:],
                             atol=2e-5)
  np.testing.assert_allclose(got[1], want[:, :1], atol=2e-5)


def test_torch_plain_bicubic_matrix():
  """bicubic without antialias is torch's own cubic (a = -0.75), as
  `F.interpolate(eye(3), size=5, mode='bicubic', align_corners=False)`
  gives it (numbers from torch 2.14); timm's `resample_patch_embed(...,
  'bicubic', antialias=False)` was checked by hand within 2e-6."""
  torch_matrix = [[1.096, -0.096, 0.], [0.612, 0.46, -0.072], [0., 1., 0.],
                  [-0.072, 0.46, 0.612], [0., -0.096, 1.096]]
  np.testing.assert_allclose(resample._torch_cubic_matrix(3, 5),  # pylint: disable=protected-access
                             torch_matrix, atol=1e-6)
