"""`resnet.ops='matmul'`: the hybrid's ResNet without XLA's convolution and
pooling ops, computing the same numbers."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.conftest import ROOT
from vit_jax import models
from vit_jax.configs import common
from vit_jax.configs import models as models_config
from vit_jax.models import resnet


@pytest.mark.parametrize('shape,kernel,stride', [
    ((32, 32, 1), 7, 2),  # The default job's root.
    ((28, 30, 3), 7, 2),  # Odd padding, not square.
    ((13, 17, 2), 3, 1),
    ((15, 15, 4), 3, 2),
    ((16, 16, 8), 1, 1),
    ((9, 9, 3), 8, 4),  # The kernel a multiple of the stride.
])
def test_matmul_conv_computes_the_convolution(shape, kernel, stride):
  x = jnp.asarray(np.random.RandomState(0).normal(size=(2,) + shape),
                  jnp.float32)
  kwargs = dict(features=5, kernel_size=(kernel, kernel),
                strides=(stride, stride), use_bias=False)
  conv, matmul = resnet.StdConv(**kwargs), resnet.MatmulStdConv(**kwargs)
  # Jitted, both alike: one compilation each instead of one per op.
  params = jax.jit(conv.init)(jax.random.PRNGKey(0), x)
  assert (jax.tree.structure(params) ==
          jax.tree.structure(jax.eval_shape(matmul.init,
                                            jax.random.PRNGKey(0), x)))
  want = jax.jit(conv.apply)(params, x)
  got = jax.jit(matmul.apply)(params, x)
  assert got.shape == want.shape == (2, -(-shape[0] // stride),
                                     -(-shape[1] // stride), 5)
  np.testing.assert_allclose(got, want, atol=2e-5, rtol=1e-5)
  grad = lambda m: jax.jit(jax.grad(
      lambda p: jnp.sum(jnp.sin(m.apply(p, x)))))(params)['params']['kernel']
  want = grad(conv)  # Through the standardisation: entries up to ~200.
  np.testing.assert_allclose(grad(matmul), want,
                             atol=1e-5 * np.abs(want).max())


def test_matmul_conv_refuses_what_it_does_not_compute():
  x = jnp.zeros((1, 8, 8, 1))
  for bad in (dict(kernel_size=(3, 1)), dict(kernel_size=(3, 3), padding=1),
              dict(kernel_size=(3, 3), use_bias=True)):
    with pytest.raises(ValueError, match="ops='matmul' computes square"):
      resnet.MatmulStdConv(features=2, **bad).init(jax.random.PRNGKey(0), x)


@pytest.mark.parametrize('shape', [(2, 16, 16, 3), (2, 15, 17, 2),
                                   (1, 1, 2, 1)])
def test_max_pool_without_pooling_op(shape):
  x = jnp.asarray(np.random.RandomState(0).normal(size=shape), jnp.float32)
  pool = lambda x: nn.max_pool(x, (3, 3), (2, 2), 'SAME')
  np.testing.assert_array_equal(jax.jit(resnet._max_pool_3x3_s2)(x),
                                jax.jit(pool)(x))
  grad = lambda f: jax.jit(jax.grad(lambda x: jnp.sum(jnp.sin(f(x)))))(x)
  np.testing.assert_array_equal(grad(resnet._max_pool_3x3_s2), grad(pool))


def _hybrid(**resnet_options):
  config = models_config.get_model_config('R50+ViT-B_16')
  config.hidden_size, config.patches.size = 32, (1, 1)
  config.transformer.update(num_layers=1, num_heads=2, mlp_dim=64)
  config.resnet = dict(num_layers=(1, 1), width_factor=0.5, **resnet_options)
  return models.create(config, num_classes=3)


def test_hybrid_with_matmul_ops_computes_the_same_logits():
  images = np.random.RandomState(1).uniform(-1, 1, (2, 32, 32, 3))
  model = _hybrid()
  # Jitted, both alike: one compilation instead of one per op.
  params = jax.jit(lambda k: model.init(k, images, train=False))(
      jax.random.PRNGKey(0))['params']
  params['head']['kernel'] = jax.random.normal(
      jax.random.PRNGKey(2), params['head']['kernel'].shape)
  apply = lambda m: jax.jit(lambda p: m.apply({'params': p}, images,
                                              train=False))(params)
  want = apply(model)
  got = apply(_hybrid(ops='matmul'))
  assert np.abs(want).max() > 0.1
  np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5)
  with pytest.raises(ValueError, match="resnet.ops='im2col': use one of"):
    jax.eval_shape(lambda: _hybrid(ops='im2col').init(
        jax.random.PRNGKey(0), images, train=False))
  with pytest.raises(ValueError, match='unknown field.s. op; its fields are'):
    jax.eval_shape(lambda: _hybrid(op='matmul').init(
        jax.random.PRNGKey(0), images, train=False))


def test_default_job_computes_no_convolution_or_pooling_op():
  """The default job must meet its time budget on the AVX2-only EPYC too,
  where XLA:CPU's convolution and reduce-window ran 1.65-2.6x slower and
  matmuls at the Xeon's speed: its model, forward and backward, lowers to
  neither op (and the same model with ops='xla' does, so the check bites)."""
  config = common.config_file(str(ROOT / 'configs' / 'default.py'))
  images = jnp.zeros((2, config.image_size, config.image_size, 1))

  def lowered_text(model_config):
    model = models.create(model_config, num_classes=10)
    params = jax.eval_shape(lambda: model.init(  # Lowered: shapes only.
        jax.random.PRNGKey(0), images, train=False))
    loss = lambda p: jnp.sum(model.apply(p, images, train=False))
    return jax.jit(jax.grad(loss)).lower(params).as_text()

  text = lowered_text(config.model)
  assert 'dot_general' in text
  assert 'convolution' not in text and 'reduce_window' not in text
  config.model.resnet.ops = 'xla'
  text = lowered_text(config.model)
  assert 'convolution' in text and 'reduce_window' in text
