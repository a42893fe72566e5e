"""Model numerics against the original implementation, shapes, errors."""
import jax
import numpy as np
import pytest

from tests.conftest import tiny_config
from vit_jax import checkpoint
from vit_jax import models
from vit_jax.configs import models as models_config
from vit_jax.models import vit as models_vit


def test_reference_logits(reference):
  """The original implementation's logits, within 3e-5."""
  ref_dir, cases = reference
  case = cases['vit_s16_2blocks']
  params = checkpoint.load_npz(str(ref_dir / case['checkpoint']))
  model = models.VisionTransformer(num_classes=case['num_classes'],
                                   **case['model'])
  logits = _apply(model)(params, np.load(ref_dir / case['input']))
  want = np.load(ref_dir / case['logits'])
  assert logits.shape == want.shape
  np.testing.assert_allclose(logits, want, atol=3e-5, rtol=0)


def _init(model, shape):
  # One compile for the whole init instead of one per eager primitive.
  return jax.jit(lambda rng: model.init(
      rng, jax.numpy.zeros(shape, np.float32), train=False)['params'])(
          jax.random.PRNGKey(0))


def _apply(model, **kw):
  """`model.apply` at eval (or with `kw`), jitted: call it for each input."""
  return jax.jit(lambda p, x: model.apply({'params': p}, x, train=False, **kw))


def _perturb(params):
  """Random non-zero values everywhere (the head and cls init to zero)."""
  leaves, tree = jax.tree.flatten(params)
  rng = np.random.RandomState(0)
  return jax.tree.unflatten(
      # float32 + float32 in numpy, as jax adds them, without an eager op.
      tree, [np.asarray(p) + (0.1 * rng.standard_normal(p.shape)).astype(
          np.float32) for p in leaves])


@pytest.mark.parametrize('name,size', [('testing', 32), ('R+ViT-Ti_16', 64)])
def test_presets_run(name, size):
  model = models.get_model(name, num_classes=5)
  if name == 'R+ViT-Ti_16':  # Shrink the transformer; the stem stays real.
    model = model.clone(transformer=dict(model.transformer, num_layers=1))
  params = _init(model, (1, size, size, 3))
  logits = _apply(model)(params, np.ones((2, size, size, 3)))
  assert logits.shape == (2, 5) and logits.dtype == np.float32


def test_hybrid_with_stages_grid():
  config = tiny_config(patches={'size': (1, 1)},
                       resnet=dict(num_layers=(1, 1), width_factor=0.5))
  model = models.VisionTransformer(num_classes=3, **config)
  # Only shapes are checked.
  params = jax.eval_shape(lambda: _init(model, (1, 64, 48, 3)))
  # 64x48 -> stem /4 -> 16x12 -> second stage /2 -> 8x6 tokens + class token.
  assert models.token_grid(config, (64, 48)) == (8, 6)
  assert params['Transformer']['posembed_input']['pos_embedding'].shape == (
      1, 8 * 6 + 1, 16)
  assert params['block2']['unit1']['conv2']['kernel'].shape == (3, 3, 64, 64)


def test_nonsquare_image_and_patches_gap():
  config = tiny_config(patches={'size': (8, 4)}, classifier='gap',
                       representation_size=7)
  model = models.VisionTransformer(num_classes=4, **config)
  # Only shapes are checked: traced, not compiled.
  params = jax.eval_shape(lambda: _init(model, (1, 32, 16, 3)))
  assert 'cls' not in params
  assert params['Transformer']['posembed_input']['pos_embedding'].shape == (
      1, 4 * 4, 16)
  assert params['pre_logits']['kernel'].shape == (16, 7)
  out = jax.eval_shape(_apply(model), params, np.ones((3, 32, 16, 3)))
  assert out.shape == (3, 4)


def test_dropout_needs_rng_and_changes_output():
  model = models.VisionTransformer(
      num_classes=3, **tiny_config(transformer=dict(
          mlp_dim=32, num_heads=2, num_layers=2, dropout_rate=0.5,
          attention_dropout_rate=0.5)))
  params = _init(model, (1, 32, 32, 3))
  params = _perturb(params)
  x = np.random.RandomState(0).uniform(-1, 1, (2, 32, 32, 3))
  train = jax.jit(lambda p, x, rng: model.apply(
      {'params': p}, x, train=True, rngs={'dropout': rng}))
  a = train(params, x, jax.random.PRNGKey(1))
  b = train(params, x, jax.random.PRNGKey(2))
  c = _apply(model)(params, x)
  d = _apply(model)(params, x)
  assert not np.allclose(a, b)
  np.testing.assert_array_equal(c, d)


def test_attention_weights_collected_match_fused_path(monkeypatch):
  # The GPU-only jax.nn.dot_product_attention path, forced on here.
  monkeypatch.setattr(models_vit, '_fused_attention_available', lambda: True)
  model = models.VisionTransformer(num_classes=3, **tiny_config())
  params = _perturb(_init(model, (1, 32, 32, 3)))
  x = np.random.RandomState(0).uniform(-1, 1, (2, 32, 32, 3))
  apply = lambda p, **kw: model.apply({'params': p}, x, train=False, **kw)
  fused = jax.jit(apply)(params)
  explicit, state = jax.jit(
      lambda p: apply(p, mutable=['intermediates']))(params)
  np.testing.assert_allclose(fused, explicit, atol=1e-5)
  fused_grads = jax.jit(jax.grad(lambda p: apply(p).sum()))(params)
  explicit_grads = jax.jit(jax.grad(
      lambda p: apply(p, mutable=['intermediates'])[0].sum()))(params)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5),
               fused_grads, explicit_grads)
  weights = state['intermediates']['Transformer']['encoderblock_1'][
      'MultiHeadDotProductAttention_0']['attention_weights'][0]
  assert weights.shape == (2, 2, 17, 17)
  np.testing.assert_allclose(weights.sum(-1), 1.0, atol=1e-5)


@pytest.mark.parametrize('in_dim,out_dim', [(3, 7), (7, 3)])
def test_matmul_gradients_match_autodiff(in_dim, out_dim):
  """Both orders of `_matmul`'s kernel gradient (narrow input or output)."""
  rng = np.random.RandomState(0)
  x = rng.normal(size=(2, 5, in_dim)).astype(np.float32)
  kernel = rng.normal(size=(in_dim, out_dim)).astype(np.float32)
  loss = lambda f: lambda x, k: jax.numpy.sin(f(x, k)).sum()
  got = jax.grad(loss(models_vit._matmul), argnums=(0, 1))(x, kernel)
  want = jax.grad(loss(lambda x, k: x @ k), argnums=(0, 1))(x, kernel)
  for g, w in zip(got, want):
    assert g.shape == w.shape
    np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)


def test_mlp_block_params_and_outputs_match_flax_dense():
  """The MLP keeps `nn.Dense`'s param tree, initial values and outputs."""

  class DenseMlp(models_vit.nn.Module):
    @models_vit.nn.compact
    def __call__(self, x):
      dense = lambda n: models_vit.nn.Dense(
          n, kernel_init=models_vit.nn.initializers.xavier_uniform(),
          bias_init=models_vit.nn.initializers.normal(stddev=1e-6))
      hidden = models_vit.nn.gelu(dense(8)(x))
      return dense(x.shape[-1])(hidden)

  x = np.random.RandomState(0).normal(size=(2, 5, 4)).astype(np.float32)
  ours = models_vit.MlpBlock(mlp_dim=8)
  params = ours.init(jax.random.PRNGKey(0), x, deterministic=True)
  ref_params = DenseMlp().init(jax.random.PRNGKey(0), x)
  jax.tree.map(np.testing.assert_array_equal, params, ref_params)
  params = _perturb(params['params'])
  np.testing.assert_allclose(
      ours.apply({'params': params}, x, deterministic=True),
      DenseMlp().apply({'params': params}, x), rtol=1e-6, atol=1e-6)


def test_remat_and_bf16_close_to_fp32():
  config = tiny_config()
  model = models.VisionTransformer(num_classes=3, **config)
  params = _perturb(_init(model, (1, 32, 32, 3)))
  x = np.random.RandomState(0).uniform(-1, 1, (2, 32, 32, 3))
  ref = _apply(model)(params, x)
  remat = _apply(model.clone(remat=True))(params, x)
  np.testing.assert_allclose(ref, remat, atol=1e-6)
  bf16 = _apply(model.clone(dtype=jax.numpy.bfloat16))(params, x)
  assert bf16.dtype == np.float32
  np.testing.assert_allclose(ref, bf16, atol=0.05)


def test_scan_over_stacked_blocks_matches_unrolled():
  """Same logits and gradients; the stacked tree converts both ways."""
  model = models.VisionTransformer(num_classes=3, **tiny_config())
  params = _perturb(_init(model, (1, 32, 32, 3)))
  scanned = model.clone(scan=True)
  stacked = checkpoint.stack_blocks(params)
  assert jax.tree.map(np.shape, stacked) == jax.tree.map(
      np.shape, jax.eval_shape(lambda: _init(scanned, (1, 32, 32, 3))))
  assert stacked['Transformer']['encoderblocks']['block']['MlpBlock_0'][
      'Dense_0']['kernel'].shape == (2, 16, 32)
  x = np.random.RandomState(0).uniform(-1, 1, (2, 32, 32, 3))
  loss = lambda m: lambda p: (m.apply({'params': p}, x, train=False)**2).sum()
  ref = _apply(model)(params, x)
  np.testing.assert_allclose(_apply(scanned)(stacked, x), ref, atol=1e-6)
  grads = checkpoint.unstack_blocks(jax.jit(jax.grad(loss(scanned)))(stacked))
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5),
               grads, jax.jit(jax.grad(loss(model)))(params))
  assert checkpoint.to_published(stacked).keys() == checkpoint.to_published(
      params).keys()
  jax.tree.map(np.testing.assert_array_equal,
               checkpoint.unstack_blocks(stacked), params)
  np.testing.assert_allclose(
      _apply(scanned.clone(remat=True))(stacked, x), ref, atol=1e-6)
  # Collected attention weights come stacked too: [layers, batch, heads, ...].
  collect = lambda m, p: _apply(m, mutable=['intermediates'])(p, x)[1][
      'intermediates']
  stacked_weights = checkpoint.unstack_blocks(collect(scanned, stacked))
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6),
               stacked_weights, collect(model, params))


@pytest.mark.parametrize('bad,match', [
    (dict(hidden_size=15), 'not divisible by num_heads'),
    (dict(patches={'size': (5, 5)}), 'not divisible by the patch size'),
    (dict(classifier='cls'), "classifier='cls'"),
])
def test_bad_configs_raise(bad, match):
  model = models.VisionTransformer(num_classes=3, **tiny_config(**bad))
  with pytest.raises(ValueError, match=match):
    _init(model, (1, 32, 32, 3))


def test_unknown_preset_lists_known_names():
  with pytest.raises(ValueError, match='Unknown model .*ViT-B_16'):
    models_config.get_model_config('ViT-X_99')
  config = models_config.get_model_config('ViT-B_16')
  config.hidden_size = 12  # An editable copy; the registry stays intact.
  assert models_config.MODEL_CONFIGS['ViT-B_16'].hidden_size == 768
