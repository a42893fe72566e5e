"""SigLIP: the two-tower model against big_vision, its files, configs, presets."""
import json
import pathlib

import flax
import jax
import numpy as np
import pytest

from vit_jax import checkpoint
from vit_jax import models
from vit_jax.configs import models as models_config
from vit_jax.models import two_towers


def _case(reference):
  ref_dir, cases = reference
  if 'siglip_bv_tiny' not in cases:
    pytest.skip('No siglip_bv_tiny case in the reference.')
  return ref_dir, cases['siglip_bv_tiny']


def test_reference_case(reference):
  """big_vision's two_towers.Model: the released layout (`params/...`)."""
  ref_dir, case = _case(reference)
  config = models_config.from_big_vision_two_towers(**case['big_vision_kwargs'])
  model = models.create(config)
  assert isinstance(model, models.TwoTowerModel)
  params = checkpoint.load_npz(str(ref_dir / case['checkpoint']))
  zimg, ztxt, out = model.apply(
      {'params': params}, images=np.load(ref_dir / case['images']),
      tokens=np.load(ref_dir / case['tokens']))
  np.testing.assert_allclose(zimg, np.load(ref_dir / case['zimg']),
                             atol=2e-5, rtol=0)
  np.testing.assert_allclose(ztxt, np.load(ref_dir / case['ztxt']),
                             atol=2e-5, rtol=0)
  np.testing.assert_allclose(out['t'], [case['t']], rtol=1e-6)
  np.testing.assert_allclose(out['b'], [case['b']], rtol=1e-6)


def test_reference_case_without_params_prefix(reference, tmp_path):
  """Files saved from a model alone have no `params/` prefix."""
  ref_dir, case = _case(reference)
  with np.load(ref_dir / case['checkpoint']) as npz:
    bare = {k.removeprefix('params/'): npz[k] for k in npz.files}
  assert 'img/pos_embedding' in bare and 'b' in bare
  np.savez(tmp_path / 'bare.npz', **bare)
  want = flax.traverse_util.flatten_dict(
      checkpoint.load_npz(str(ref_dir / case['checkpoint'])))
  got = flax.traverse_util.flatten_dict(
      checkpoint.load_npz(str(tmp_path / 'bare.npz')))
  assert set(got) == set(want)
  for k in want:
    np.testing.assert_array_equal(got[k], want[k])


def test_from_big_vision_two_towers_fields():
  config = models_config.from_big_vision_two_towers(
      image=dict(variant='So400m/14', pool_type='map', scan=True),
      text=dict(variant='So400m', vocab_size=32_000, scan=True),
      out_dim=[None, 1152], bias_init=-10, temperature_init=10)
  assert config.image.hidden_size == 1152
  assert config.image.transformer.num_layers == 27
  assert config.image.transformer.mlp_dim == 4304
  assert tuple(config.image.patches.size) == (14, 14)
  assert config.image.classifier == 'map'
  assert config.text.to_dict() == dict(width=1152, num_layers=27, mlp_dim=4304,
                             num_heads=16, dropout_rate=0.0,
                             vocab_size=32_000, pool_type='last')
  assert config.out_dim == (None, 1152)
  # big_vision's text tower defaults to mlp_dim 2048 (None: 4 * width), its
  # ViT to 4 * width.
  small = models_config.from_big_vision_two_towers(
      image=dict(width=16), text=dict(width=16))
  assert small.text.mlp_dim == 2048 and small.image.transformer.mlp_dim == 64
  assert models_config.from_big_vision_two_towers(
      text=dict(width=16, mlp_dim=None)).text.mlp_dim == 64
  assert config.temperature_init == 10 and config.bias_init == -10
  with pytest.raises(ValueError, match='num_classes'):
    models.create(config, 10)
  with pytest.raises(ValueError, match="image_model='vit_x'"):
    models_config.from_big_vision_two_towers(image_model='vit_x')
  with pytest.raises(ValueError, match=r"\['bias'\]"):
    models_config.from_big_vision_two_towers(bias=1.0)
  with pytest.raises(ValueError, match=r"\['depht'\]"):
    models_config.from_big_vision_two_towers(text=dict(depht=2))
  with pytest.raises(ValueError, match="variant 'Q/16'"):
    models_config.from_big_vision_two_towers(image=dict(variant='Q/16'))


def test_init_temperature_bias_and_probabilities():
  config = models_config.from_big_vision_two_towers(
      image=dict(variant='mu/8', pool_type='gap', posemb='sincos2d'),
      text=dict(width=16, depth=1, num_heads=2, vocab_size=20),
      out_dim=8, temperature_init=10.0, bias_init=-10.0)
  model = models.create(config)
  images, tokens = np.zeros((3, 16, 16, 3), np.float32), np.ones((2, 5), int)
  params = model.init(jax.random.key(0), images=images, tokens=tokens)[
      'params']
  assert set(params) == {'img', 'txt', 't', 'b'}
  np.testing.assert_allclose(params['t'], [np.log(10.0)], rtol=1e-6)
  np.testing.assert_allclose(params['b'], [-10.0])
  zimg, ztxt, out = model.apply({'params': params}, images=images,
                                tokens=tokens)
  assert zimg.shape == (3, 8) and ztxt.shape == (2, 8)
  np.testing.assert_allclose(out['t'], [10.0], rtol=1e-6)
  probs = two_towers.pairwise_probabilities(zimg, ztxt, out)
  want = 1 / (1 + np.exp(-(10 * np.asarray(zimg) @ np.asarray(ztxt).T - 10)))
  np.testing.assert_allclose(probs, want, rtol=1e-5)
  del out['b']  # LiT: a softmax over the texts.
  np.testing.assert_allclose(
      two_towers.pairwise_probabilities(zimg, ztxt, out).sum(1), 1, rtol=1e-6)


DATA = pathlib.Path(__file__).parent / 'data' / 'siglip'
BV_CASES = json.loads((DATA / 'cases.json').read_text())


@pytest.mark.parametrize('name', sorted(BV_CASES))
def test_big_vision_two_towers_cases(name, tmp_path):
  """Made by big_vision's own two_towers.Model (make_big_vision_cases.py):
  MAP + bias with scanned towers, GAP + sin-cos with heads and no bias, a
  class token with pre-logits. Loaded from the released layout, then saved
  by us and loaded again: the same embeddings, t and b."""
  path = DATA / f'{name}.npz'
  model = models.create(
      models_config.from_big_vision_two_towers(**BV_CASES[name]))
  with np.load(path) as npz:
    ref = {k: npz[k] for k in npz.files if not k.startswith('params/')}
  params = checkpoint.load_npz(str(path))
  checkpoint.save_npz(str(tmp_path / 'ours.npz'), params)
  for loaded in (params, checkpoint.load_npz(str(tmp_path / 'ours.npz'))):
    zimg, ztxt, out = model.apply({'params': loaded},
                                  images=ref['input/images'],
                                  tokens=ref['input/tokens'])
    np.testing.assert_allclose(zimg, ref['out/zimg'], atol=2e-5, rtol=0)
    np.testing.assert_allclose(ztxt, ref['out/ztxt'], atol=2e-5, rtol=0)
    np.testing.assert_allclose(out['t'], ref['out/t'], rtol=1e-6)
    assert ('b' in out) == ('out/b' in ref)
    if 'b' in out:
      np.testing.assert_allclose(out['b'], ref['out/b'], rtol=1e-6)
