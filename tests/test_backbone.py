"""A ViT as a backbone: block features (`forward_intermediates`), any image
size at call time (`dynamic_img_size`, `dynamic_img_pad`), FlexiViT's patch
size at call time, and the public timm case `features_tiny`."""
import json
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vit_jax import checkpoint
from vit_jax import models


def _tiny(**overrides):
  config = dict(patches={'size': (4, 4)}, hidden_size=16,
                transformer=dict(mlp_dim=32, num_heads=2, num_layers=3,
                                 dropout_rate=0.0, attention_dropout_rate=0.0),
                classifier='token', representation_size=None)
  config.update(overrides)
  return config


def _init(config, size=(16, 16), num_classes=3):
  model = models.create(config, num_classes)
  # Only the shapes: every value is drawn below.
  params = jax.eval_shape(lambda: model.init(
      jax.random.PRNGKey(0), jnp.zeros((1, *size, 3)), train=False)['params'])
  # Non-zero everywhere (head, class token), so every path is checked.
  # (float32 * float32(0.3) in numpy, as jax multiplies: no eager op.)
  params = jax.tree.map(
      lambda p: jnp.asarray(np.random.RandomState(p.size).standard_normal(
          p.shape).astype(np.float32) * np.float32(0.3)), params)
  return model, params


def _images(size, n=2, seed=0):
  return np.random.RandomState(seed).uniform(-1, 1, (n, *size, 3)).astype(
      np.float32)


def _apply(model, params, x, **kw):
  """`model.apply` at eval, jitted: one compile, not one per eager op."""
  return jax.jit(lambda p, x: model.apply({'params': p}, x, train=False,
                                          **kw))(params, x)


def _features(model, params, x, **kw):
  return _apply(model, params, x, method='forward_intermediates', **kw)


def test_features_tiny_matches_timm(reference, tmp_path):
  """The public case: timm's file, its config.json with dynamic_img_size
  in model_args (as a file saved from such a model has it), logits and
  per-block maps under jax.jit at a size it was not trained at."""
  ref_dir, cases = reference
  case = cases['features_tiny']
  refs = np.load(ref_dir / case['refs'])
  src = ref_dir / case['checkpoint']
  shutil.copy(src, tmp_path / 'model.safetensors')
  hub = json.loads((src.parent / 'config.json').read_text())
  hub['model_args']['dynamic_img_size'] = True
  (tmp_path / 'config.json').write_text(json.dumps(hub))
  path = str(tmp_path / 'model.safetensors')

  config = checkpoint.safetensors_model_config(path)
  assert config.dynamic_img_size  # torch_config maps model_args.
  params = checkpoint.load_safetensors(path, config)
  model = models.create(config, case['num_classes'])

  def close(got, key):
    ref = refs[key]
    np.testing.assert_allclose(
        got, ref, rtol=0, atol=2e-5 * max(1., float(np.abs(ref).max())))

  for name in case['inputs']:
    x = refs[f'input/{name}']
    logits = jax.jit(lambda p, x: model.apply({'params': p}, x, train=False))(
        params, x)
    close(logits, f'logits/{name}')
  for query in case['queries']:
    x = refs[f"input/{query['input']}"]
    feats = jax.jit(lambda p, x, q=query: _features(
        model, p, x, indices=q['indices'], norm=q['norm']))(params, x)
    assert len(feats) == len(query['blocks'])
    close(np.stack(feats), query['key'])


@pytest.mark.parametrize('overrides', [
    {}, dict(classifier='gap', class_token=True, fc_norm=True),
    dict(classifier='gap')])
def test_trained_size_is_the_same_with_dynamic_img_size(overrides):
  config = _tiny(**overrides)
  model, params = _init(config)
  x = _images((16, 16))
  static = _apply(model, params, x)
  dynamic = _apply(models.create(dict(config, dynamic_img_size=True), 3),
                   params, x)
  np.testing.assert_array_equal(static, dynamic)
  assert np.abs(static).max() > 0.1


def test_other_sizes_need_dynamic_img_size():
  model, params = _init(_tiny())
  with pytest.raises(ValueError, match='dynamic_img_size=True'):
    _apply(model, params, _images((12, 20)))
  dynamic = models.create(_tiny(dynamic_img_size=True), 3)
  assert jax.eval_shape(lambda: dynamic.apply(
      {'params': params}, _images((12, 20)), train=False)).shape == (2, 3)


def test_posemb_is_resized_per_grid_not_per_token_count():
  """A 2x8 grid holds as many tokens as the trained 4x4 one: it is still
  resized (as timm does), and the class token's embedding is not."""
  config = _tiny(dynamic_img_size=True)
  model, params = _init(config)
  posemb = params['Transformer']['posembed_input']['pos_embedding']
  grid = jax.image.resize(posemb[0, 1:].reshape(4, 4, -1), (2, 8, 16),
                          'cubic', antialias=True)
  expected = np.concatenate([posemb[0, :1], grid.reshape(16, -1)])
  x = _images((8, 32))
  zeroed = jax.tree.map(jnp.zeros_like, params)
  zeroed['Transformer']['posembed_input']['pos_embedding'] = posemb
  zeroed['cls'] = jnp.zeros_like(params['cls'])
  # With every other weight zero, block 0's input is the posemb (and the
  # zero patch tokens): read it back through the blocks' residual stream.
  feats = _features(model, zeroed, x, indices=[0], return_prefix_tokens=True)
  patch_map, prefix = feats[0]
  np.testing.assert_allclose(patch_map[0].reshape(16, -1), expected[1:],
                             atol=1e-6)
  np.testing.assert_allclose(prefix[0], expected[:1], atol=1e-6)


def test_dynamic_img_pad_pads_bottom_right():
  config = _tiny(dynamic_img_size=True, dynamic_img_pad=True)
  model, params = _init(config)
  x = _images((13, 18))
  padded = np.pad(x, ((0, 0), (0, 3), (0, 2), (0, 0)))
  np.testing.assert_array_equal(_apply(model, params, x),
                                _apply(model, params, padded))
  assert _features(model, params, x, indices=1)[0].shape == (2, 4, 5, 16)
  with pytest.raises(ValueError, match='dynamic_img_pad'):
    _apply(models.create(_tiny(dynamic_img_size=True), 3), params, x)


def test_sincos_posemb_any_grid():
  model, params = _init(_tiny(posemb='sincos2d', classifier='gap'))
  maps = _features(model, params, _images((8, 20)), indices=[-1])
  assert maps[0].shape == (2, 2, 5, 16)


def test_indices_select_blocks():
  """Maps are the blocks' outputs (prefix dropped) in the order asked;
  scanned models give the same without unrolling."""
  config = _tiny()
  model, params = _init(config)
  scanned = models.create(dict(config, scan=True), 3)
  stacked = checkpoint.stack_blocks(params)
  x = _images((16, 16))
  cases = [(None, [0, 1, 2]), (1, [2]), (2, [1, 2]), ([0, 2], [0, 2]),
           ([-1, 0], [2, 0])]
  # Each model's calls in one jitted function: one compile, not one each.
  raw = lambda m, p, **kw: m.apply({'params': p}, x, train=False,
                                   method='forward_intermediates', **kw)
  every, *unrolled = jax.jit(lambda p: [raw(model, p)] + [
      raw(model, p, indices=i) for i, _ in cases])(params)
  scans = jax.jit(lambda p: [raw(scanned, p, indices=i) for i, _ in cases])(
      stacked)
  assert [m.shape for m in every] == [(2, 4, 4, 16)] * 3
  for (indices, blocks), got, got_scanned in zip(cases, unrolled, scans):
    for m, b in zip(got, blocks, strict=True):
      np.testing.assert_array_equal(m, every[b])
    for m, b in zip(got_scanned, blocks, strict=True):
      np.testing.assert_allclose(m, every[b], atol=2e-6)


def test_norm_applies_the_final_layer_norm():
  model, params = _init(_tiny())
  x = _images((16, 16))
  raw, = _features(model, params, x, indices=1)
  normed, = _features(model, params, x, indices=1, norm=True)
  scale = params['Transformer']['encoder_norm']['scale']
  bias = params['Transformer']['encoder_norm']['bias']
  mean, var = raw.mean(-1, keepdims=True), raw.var(-1, keepdims=True)
  np.testing.assert_allclose(
      normed, (raw - mean) / np.sqrt(var + 1e-6) * scale + bias, atol=2e-5)
  # timm's fc_norm models have no norm over the tokens: norm=True is a no-op.
  model, params = _init(_tiny(classifier='gap', fc_norm=True))
  assert 'encoder_norm' not in params['Transformer']
  np.testing.assert_array_equal(
      _features(model, params, x, indices=1)[0],
      _features(model, params, x, indices=1, norm=True)[0])


def test_later_blocks_do_not_run():
  config = _tiny()
  model, params = _init(config)
  x = _images((16, 16))
  want = _features(model, params, x, indices=[0])[0]
  # Unrolled: block 1 and 2's params may be absent.
  pruned = dict(params, Transformer={
      k: v for k, v in params['Transformer'].items()
      if k not in ('encoderblock_1', 'encoderblock_2')})
  np.testing.assert_array_equal(_features(model, pruned, x, indices=[0])[0],
                                want)
  # Scanned: one scan over the first block only.
  scanned = models.create(dict(config, scan=True), 3)
  stacked = checkpoint.stack_blocks(params)
  # Not jitted: the scan must be at the jaxpr's top level.
  jaxpr = jax.make_jaxpr(lambda p: scanned.apply(
      {'params': p}, x, train=False, method='forward_intermediates',
      indices=[0]))(stacked)
  lengths = [e.params['length'] for e in jaxpr.jaxpr.eqns
             if e.primitive.name == 'scan']
  assert lengths == [1]


def test_bad_indices():
  model, params = _init(_tiny())
  for indices, message in [(0, 'last n blocks'), (4, 'last n blocks'),
                           ([3], 'out of range'), ([-4], 'out of range'),
                           ([], 'empty')]:
    with pytest.raises(ValueError, match=message):
      _features(model, params, _images((16, 16)), indices=indices)


def test_hybrid_features():
  config = _tiny(patches={'size': (1, 1)},
                 resnet=dict(num_layers=(), width_factor=1))
  model, params = _init(config, size=(16, 16))
  maps = _features(model, params, _images((16, 16)), indices=2)
  assert [m.shape for m in maps] == [(2, 4, 4, 16)] * 2


def test_flexivit_at_the_trained_patch_size_is_the_identity():
  model, params = _init(_tiny())
  x = _images((16, 16))
  np.testing.assert_array_equal(
      _apply(model, params, x),
      _apply(model, params, x, patch_size=(4, 4)))


def test_flexivit_patch_size_at_call_time():
  """Each patch resized 4x4 -> 8x8 (bilinear, as the PI-resize assumes): the
  PI-resized kernel gives the same tokens (exact when growing), the posemb
  grid is unchanged, so the same logits."""
  model, params = _init(_tiny())
  x = _images((16, 16))
  patches = x.reshape(2, 4, 4, 4, 4, 3).transpose(0, 1, 3, 2, 4, 5)
  big = jax.image.resize(patches, (2, 4, 4, 8, 8, 3), 'linear',
                         antialias=False)
  big = big.transpose(0, 1, 3, 2, 4, 5).reshape(2, 32, 32, 3)
  np.testing.assert_allclose(
      _apply(model, params, big, patch_size=(8, 8)),
      _apply(model, params, x), atol=2e-5)
  # Smaller patches: more tokens, posemb resized; maps on the new grid.
  maps = _features(model, params, x, indices=1, patch_size=2)
  assert maps[0].shape == (2, 8, 8, 16)


def test_mixer_features():
  """A Mixer's maps: the last one through the pre-head norm, averaged, is
  the pooled representation; scanned the same."""
  config = dict(patches={'size': (4, 4)}, hidden_dim=16, num_blocks=2,
                tokens_mlp_dim=8, channels_mlp_dim=32)
  model, params = _init(config, num_classes=0)
  x = _images((16, 16))
  last, = _features(model, params, x, indices=[-1], norm=True)
  assert last.shape == (2, 4, 4, 16)
  np.testing.assert_allclose(last.mean((1, 2)), _apply(model, params, x),
                             atol=1e-5)
  scanned = models.create(dict(config, scan=True), 0)
  both = _features(scanned, checkpoint.stack_blocks(params), x)
  np.testing.assert_allclose(both[1], _features(model, params, x)[1],
                             atol=2e-6)
