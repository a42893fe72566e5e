"""Model options of models_vit: stochastic depth, sin-cos position
embeddings, GAP/MAP pooling, the zero-initialised head."""
import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.conftest import tiny_config
from vit_jax import models
from vit_jax.models import vit

IMAGES = np.random.RandomState(0).uniform(-1, 1, (4, 32, 32, 3)).astype(
    np.float32)


def _init(config, num_classes=3):
  model = models.create(config, num_classes)
  # One compile for the whole init instead of one per eager primitive.
  return model, jax.jit(lambda rng: model.init(rng, IMAGES[:1], train=False)[
      'params'])(jax.random.PRNGKey(0))


def _apply(model, params, images=IMAGES):
  return jax.jit(lambda p, x: model.apply({'params': p}, x, train=False))(
      params, images)


def test_drop_path_rates_linear_over_depth():
  np.testing.assert_allclose(vit.drop_path_rates(0.3, 4),
                             [0.0, 0.1, 0.2, 0.3])
  np.testing.assert_allclose(vit.drop_path_rates(0.3, 1), [0.0])


def test_drop_path_masks_whole_examples_and_rescales():
  class Branch(flax.linen.Module):
    @flax.linen.compact
    def __call__(self, x, rate, deterministic):
      return vit.drop_path(self, x, rate, deterministic)

  x = jnp.ones((4000, 3, 2))
  rngs = {'dropout': jax.random.PRNGKey(1)}
  y = Branch().apply({}, x, 0.25, False, rngs=rngs)
  per_example = np.asarray(y).reshape(4000, -1)
  # Each example is all zeros or all 1/(1-rate).
  assert set(np.unique(per_example)) == {0.0, np.float32(1 / 0.75)}
  assert np.all(per_example.min(1) == per_example.max(1))
  assert abs((per_example[:, 0] == 0).mean() - 0.25) < 0.03
  np.testing.assert_array_equal(
      y, Branch().apply({}, x, 0.25, False, rngs=rngs))  # Same rng, same mask.
  np.testing.assert_array_equal(Branch().apply({}, x, 0.25, True), x)
  np.testing.assert_array_equal(Branch().apply({}, x, None, False), x)


@pytest.mark.parametrize('scan', [False, True])
def test_stochastic_depth_off_at_eval_and_random_in_training(scan):
  config = tiny_config(head_zeroinit=False)
  config.transformer.stochastic_depth = 0.5
  model, params = _init(config)
  plain = models.create(tiny_config(head_zeroinit=False), 3, scan=scan)
  if scan:
    from vit_jax import checkpoint  # pylint: disable=g-import-not-at-top
    params = checkpoint.stack_blocks(params)
    model = models.create(config, 3, scan=True)
  # No parameter of its own; eval is the model without it.
  assert (jax.tree.structure(params) == jax.tree.structure(jax.eval_shape(
      lambda: plain.init(jax.random.PRNGKey(0), IMAGES[:1], train=False)[
          'params'])))
  np.testing.assert_array_equal(_apply(model, params), _apply(plain, params))
  # Training: a function of the dropout rng, different from eval.
  train_fn = jax.jit(lambda p, rng: model.apply(
      {'params': p}, IMAGES, train=True, rngs={'dropout': rng}))
  train = lambda key: train_fn(params, jax.random.PRNGKey(key))
  np.testing.assert_array_equal(train(0), train(0))
  outputs = [train(key) for key in range(4)]
  assert not all(np.allclose(outputs[0], y) for y in outputs[1:])


def test_stochastic_depth_rate_checked():
  config = tiny_config()
  config.transformer.stochastic_depth = 1.0
  with pytest.raises(ValueError, match='stochastic_depth=1.0'):
    _init(config)


def test_posemb_sincos_2d_values():
  pe = np.asarray(vit.posemb_sincos_2d(3, 4, 16))
  assert pe.shape == (1, 12, 16)
  omega = 1.0 / 10_000 ** (np.arange(4) / 3)  # width/4 = 4 frequencies.
  y, x = 1, 2  # Token 6 = row 1, column 2 (row-major).
  np.testing.assert_allclose(
      pe[0, 6], np.concatenate([np.sin(x * omega), np.cos(x * omega),
                                np.sin(y * omega), np.cos(y * omega)]),
      rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(pe[0, 0], [0] * 4 + [1] * 4 + [0] * 4 + [1] * 4)
  with pytest.raises(ValueError, match='multiple of 4'):
    vit.posemb_sincos_2d(2, 2, 10)


def test_sincos2d_model_has_no_posemb_param_and_adds_it():
  config = tiny_config(posemb='sincos2d', classifier='gap')
  model, params = _init(config)
  assert 'posembed_input' not in params['Transformer']
  # The same params without sin-cos (and a zero learned posemb) differ by
  # exactly the sin-cos embedding on the patch tokens: compare token outputs
  # through a learned posemb that holds the sin-cos values.
  learned = dict(params)
  learned['Transformer'] = {
      **params['Transformer'],
      'posembed_input': {'pos_embedding': vit.posemb_sincos_2d(
          4, 4, 16)}}
  np.testing.assert_allclose(
      _apply(model, params),
      _apply(models.create(tiny_config(classifier='gap'), 3), learned),
      atol=1e-6)


@pytest.mark.parametrize('classifier', ['gap', 'map'])
def test_pooling_shapes(classifier):
  model = models.create(tiny_config(classifier=classifier), 3)
  # Only shapes are checked: traced, not compiled.
  params = jax.eval_shape(lambda: model.init(
      jax.random.PRNGKey(0), IMAGES[:1], train=False)['params'])
  assert 'cls' not in params
  if classifier == 'map':
    head = params['MAPHead_0']
    assert head['probe'].shape == (1, 1, 16)
    assert head['MultiHeadDotProductAttention_0']['query']['kernel'].shape == (
        16, 2, 8)
    assert head['MlpBlock_0']['Dense_0']['kernel'].shape == (16, 32)
  else:
    assert 'MAPHead_0' not in params
  # Only shapes are checked.
  logits = jax.eval_shape(
      lambda p: model.apply({'params': p}, IMAGES, train=False), params)
  assert logits.shape == (4, 3)
  features = jax.eval_shape(lambda p: model.clone(num_classes=0).apply(
      {'params': {k: v for k, v in p.items() if k != 'head'}}, IMAGES,
      train=False), params)
  assert features.shape == (4, 16)


def test_map_head_pools_like_attention_over_tokens():
  """One head, a probe equal for all tokens' keys: the attention is uniform
  when the key kernel is zero, so MAP's attention output is the mean value."""
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 5, 8))
  head = vit.CrossAttention(num_heads=1)
  probe = jnp.ones((2, 1, 8))
  p = head.init(jax.random.PRNGKey(1), probe, x)['params']
  p = jax.tree.map(lambda a: a, p)
  p['key']['kernel'] = jnp.zeros_like(p['key']['kernel'])
  out = head.apply({'params': p}, probe, x)
  v = jnp.einsum('bnd,dhe->bnhe', x, p['value']['kernel']) + p['value']['bias']
  expected = jnp.einsum('bhe,hef->bf', v.mean(1), p['out']['kernel']) + p[
      'out']['bias']
  np.testing.assert_allclose(out[:, 0], expected, atol=1e-5)


@pytest.mark.parametrize('zero', [True, False])
def test_head_zeroinit(zero):
  _, params = _init(tiny_config(head_zeroinit=zero))
  assert np.all(params['head']['kernel'] == 0) == zero


def test_bad_options_are_named():
  with pytest.raises(ValueError, match="classifier='mean'"):
    _init(tiny_config(classifier='mean'))
  with pytest.raises(ValueError, match="posemb='fixed'"):
    _init(tiny_config(posemb='fixed'))
