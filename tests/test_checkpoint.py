"""Published-layout I/O, fine-tuning init and posemb interpolation."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.ndimage

from tests.conftest import REFERENCE, tiny_config, zero_params
from vit_jax import checkpoint
from vit_jax import models
from vit_jax.configs import models as models_config


def _in_order_of(ref, tree):
  """`tree`'s dicts with the keys in `ref`'s order."""
  if not isinstance(ref, dict):
    return tree
  return {k: _in_order_of(v, tree[k]) for k, v in ref.items()}


def _init(model, shape, seed=0):
  """An eager init's params, compiled once instead of once per primitive.

  jit returns dicts with sorted keys: the init's own order (which, say, a
  mismatch message's order follows) is put back."""
  traced = []

  def init(rng):
    traced.append(model.init(rng, jnp.zeros(shape, jnp.float32),
                             train=False)['params'])
    return traced[-1]

  params = jax.jit(init)(jax.random.PRNGKey(seed))
  return _in_order_of(traced[-1], params)


def _apply(model, params, x):
  return jax.jit(lambda p, x: model.apply({'params': p}, x, train=False))(
      params, x)


def _layout():
  path = REFERENCE / 'param_layout.json'
  if not path.exists():
    pytest.skip(f'{path} not found.')
  return json.loads(path.read_text())


@pytest.mark.parametrize('name', list(models_config.MODEL_CONFIGS))
def test_published_layout_of_every_preset(name):
  layout = _layout()
  if name not in layout:
    pytest.skip(f'{name} has no published layout.')
  entry = layout[name]
  if 'text_model' in entry['config']:
    pytest.skip('LiT: tests/test_lit.py checks its linen-named tree.')
  model = models.get_model(name, num_classes=entry['num_classes'])
  size = entry['image_size']
  shapes = jax.eval_shape(lambda: _init(model, (1, size, size, 3)))
  got = {k: list(v.shape) for k, v in checkpoint.to_published(shapes).items()}
  assert got == entry['params']


@pytest.mark.parametrize('name', ['testing', 'R+ViT-Ti_16'])
def test_save_npz_writes_published_layout(tmp_path, name):
  entry = _layout()[name]
  model = models.get_model(name, num_classes=entry['num_classes'])
  size = entry['image_size']
  path = str(tmp_path / 'params.npz')
  # Only the layout is checked: zeros of the init's shapes.
  checkpoint.save_npz(path, zero_params(model, (1, size, size, 3)))
  with np.load(path) as npz:
    assert {k: list(npz[k].shape) for k in npz.files} == entry['params']
  assert list(tmp_path.iterdir()) == [tmp_path / 'params.npz']


def test_round_trip_is_bit_exact(reference, tmp_path):
  ref_dir, cases = reference
  src = str(ref_dir / cases['vit_s16_2blocks']['checkpoint'])
  dst = str(tmp_path / 'copy.npz')
  checkpoint.save_npz(dst, checkpoint.load_npz(src))
  with np.load(src) as a, np.load(dst) as b:
    assert sorted(a.files) == sorted(b.files)
    for k in a.files:
      assert a[k].dtype == b[k].dtype
      np.testing.assert_array_equal(a[k], b[k])


def _tiny_published(tmp_path, **overrides):
  config = tiny_config(**overrides)
  model = models.VisionTransformer(num_classes=3, **config)
  params = _init(model, (1, 32, 32, 3), seed=1)
  # In numpy (float32 + float32, as jax adds them): no eager op per shape.
  params = jax.tree.map(
      lambda p: np.asarray(p) + np.random.RandomState(p.size).standard_normal(
          p.shape).astype(np.float32),
      params)
  return config, model, params, checkpoint.to_published(params)


def test_loads_squeezable_shapes_and_linen_names(tmp_path):
  config = tiny_config(patches={'size': (1, 1)},
                       resnet=dict(num_layers=(1,), width_factor=0.5))
  model = models.VisionTransformer(num_classes=3, **config)
  params = _init(model, (1, 16, 16, 3), seed=1)
  flat = {k: np.asarray(v) for k, v in checkpoint.to_published(params).items()}
  odd = dict(flat)
  odd['gn_root/scale'] = flat['gn_root/scale'].reshape(1, 1, 1, -1)
  odd['block1/unit1/gn3/bias'] = flat['block1/unit1/gn3/bias'][:, None]
  odd['cls'] = flat['cls'].reshape(-1)
  odd['embedding/kernel'] = flat['embedding/kernel'].squeeze()
  odd['Transformer/posembed_input/pos_embedding'] = flat[
      'Transformer/posembed_input/pos_embedding'][None]
  # Linen numbering for one block's children instead of the published one.
  for old, new in [('MultiHeadDotProductAttention_1',
                    'MultiHeadDotProductAttention_0'),
                   ('LayerNorm_2', 'LayerNorm_1'), ('MlpBlock_3', 'MlpBlock_0')]:
    for k in [k for k in odd if f'encoderblock_1/{old}/' in k]:
      odd[k.replace(old, new)] = odd.pop(k)
  path = str(tmp_path / 'odd.npz')
  np.savez(path, **odd)
  loaded = checkpoint.load_npz(path)
  jax.tree.map(np.testing.assert_array_equal, loaded, jax.device_get(params))


def test_interpolate_posemb_identity_and_scipy():
  posemb = np.random.RandomState(0).standard_normal((1, 1 + 14 * 14, 8))
  posemb = posemb.astype(np.float32)
  same = checkpoint.interpolate_posemb(posemb, 197, num_prefix_tokens=1)
  np.testing.assert_allclose(same, posemb, atol=1e-6)
  bigger = checkpoint.interpolate_posemb(posemb, 1 + 24 * 24,
                                         num_prefix_tokens=1)
  assert bigger.shape == (1, 577, 8)
  np.testing.assert_array_equal(bigger[:, :1], posemb[:, :1])
  want = scipy.ndimage.zoom(posemb[0, 1:].reshape(14, 14, 8),
                            (24 / 14, 24 / 14, 1), order=1)
  np.testing.assert_allclose(bigger[0, 1:], want.reshape(-1, 8), atol=1e-6)
  # Corners of a bilinear resize keep the corner values.
  np.testing.assert_allclose(bigger[0, 1], posemb[0, 1], atol=1e-6)
  nonsquare = checkpoint.interpolate_posemb(posemb[:, 1:], 12 * 20,
                                            num_prefix_tokens=0,
                                            new_grid=(12, 20))
  assert nonsquare.shape == (1, 240, 8)
  with pytest.raises(ValueError, match='not a square grid'):
    checkpoint.interpolate_posemb(posemb, 1 + 12 * 20, num_prefix_tokens=1)


@pytest.mark.parametrize('classifier', ['token', 'gap'])
def test_load_pretrained_higher_resolution(tmp_path, classifier):
  config, _, params, flat = _tiny_published(tmp_path, classifier=classifier,
                                            representation_size=6)
  path = str(tmp_path / 'pre.npz')
  checkpoint.save_npz(path, params)
  # Fine-tune at 48 px (6x6 grid instead of 4x4), 5 classes, no pre-logits.
  ft_config = tiny_config(classifier=classifier)
  ft_model = models.VisionTransformer(num_classes=5, **ft_config)
  init = _init(ft_model, (1, 48, 48, 3), seed=2)
  out = checkpoint.load_pretrained(pretrained_path=path, init_params=init,
                                   model_config=ft_config)
  assert 'pre_logits' not in out
  np.testing.assert_array_equal(out['head']['kernel'], init['head']['kernel'])
  prefix = 1 if classifier == 'token' else 0
  posemb = flat['Transformer/posembed_input/pos_embedding']
  want = checkpoint.interpolate_posemb(posemb, prefix + 36,
                                       num_prefix_tokens=prefix)
  np.testing.assert_allclose(
      out['Transformer']['posembed_input']['pos_embedding'], want, atol=1e-6)
  np.testing.assert_array_equal(out['embedding']['kernel'],
                                flat['embedding/kernel'])
  logits = _apply(ft_model, out, np.ones((2, 48, 48, 3)))
  assert logits.shape == (2, 5)


def test_load_pretrained_keeps_representation_and_nonsquare(tmp_path):
  config, _, params, flat = _tiny_published(tmp_path, representation_size=6)
  path = str(tmp_path / 'pre.npz')
  checkpoint.save_npz(path, params)
  model = models.VisionTransformer(num_classes=2, **config)
  init = _init(model, (1, 48, 32, 3))
  grid = models.token_grid(config, (48, 32))
  out = checkpoint.load_pretrained(pretrained_path=path, init_params=init,
                                   model_config=config, grid_size=grid)
  np.testing.assert_array_equal(out['pre_logits']['kernel'],
                                flat['pre_logits/kernel'])
  assert out['Transformer']['posembed_input']['pos_embedding'].shape == (
      1, 1 + 6 * 4, 16)


def test_load_pretrained_mismatch_lists_keys(tmp_path):
  _, _, params, _ = _tiny_published(tmp_path)
  path = str(tmp_path / 'pre.npz')
  checkpoint.save_npz(path, params)
  other = tiny_config(hidden_size=24, transformer=dict(
      mlp_dim=32, num_heads=2, num_layers=3, dropout_rate=0.0,
      attention_dropout_rate=0.0))
  init = _init(models.VisionTransformer(num_classes=3, **other),
               (1, 32, 32, 3))
  with pytest.raises(checkpoint.CheckpointMismatchError) as err:
    checkpoint.load_pretrained(pretrained_path=path, init_params=init,
                               model_config=other)
  msg = str(err.value)
  assert 'missing from the checkpoint: Transformer/encoderblock_2' in msg
  assert 'shape mismatch: embedding/kernel checkpoint (8, 8, 3, 16) vs model' \
      ' (8, 8, 3, 24)' in msg


def test_missing_and_corrupt_files(tmp_path):
  with pytest.raises(FileNotFoundError, match='does not exist'):
    checkpoint.load_npz(str(tmp_path / 'nope.npz'))
  _, _, params, _ = _tiny_published(tmp_path)
  path = tmp_path / 'cut.npz'
  checkpoint.save_npz(str(path), params)
  path.write_bytes(path.read_bytes()[:500])
  with pytest.raises(ValueError, match='truncated or corrupt'):
    checkpoint.load_npz(str(path))
