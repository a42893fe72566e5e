"""Optimisation options: layer-wise lr decay, big_vision's decoupled weight
decay, the EMA of the params (unit level and through main.py)."""
import shutil

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from vit_jax.configs import common
from tests.conftest import read_records, tiny_config, train_in_process
from vit_jax import checkpoint
from vit_jax import models
from vit_jax.train import ema
from vit_jax.train import optim
from vit_jax.train import sharding
from vit_jax.train import steps
from vit_jax.workdir import layout


def _params(scan=False, **overrides):
  model = models.create(tiny_config(**overrides), 3, scan=scan)
  return model.init(jax.random.PRNGKey(0), np.zeros((1, 32, 32, 3)),
                    train=False)['params']


def _config(**optimizer):
  config = common.base_config()
  config.total_steps = 100
  config.lr.warmup_steps = 10
  config.optimizer.update(optimizer)
  return config


def test_layer_decay_multipliers():
  mults = optim.layer_decay_multipliers(_params(representation_size=4), 0.5)
  # Two blocks: embedding 0.5^3, block i 0.5^(2-i), the rest 1.
  assert mults['embedding']['kernel'] == 0.125
  assert mults['cls'] == 0.125
  assert mults['Transformer']['posembed_input']['pos_embedding'] == 0.125
  assert mults['Transformer']['encoderblock_0']['LayerNorm_0']['scale'] == 0.25
  assert mults['Transformer']['encoderblock_1']['MlpBlock_0']['Dense_1'][
      'kernel'] == 0.5
  for top in ('head', 'pre_logits'):
    assert mults[top]['kernel'] == 1.0
  assert mults['Transformer']['encoder_norm']['scale'] == 1.0
  stacked = optim.layer_decay_multipliers(_params(scan=True), 0.5)
  kernel = stacked['Transformer']['encoderblocks']['block']['MlpBlock_0'][
      'Dense_0']['kernel']
  np.testing.assert_array_equal(kernel.reshape(-1), [0.25, 0.5])
  assert kernel.shape == (2, 1, 1)


def test_layer_decay_scales_updates():
  params = _params(head_zeroinit=False)
  grads = jax.tree.map(jnp.ones_like, params)
  plain, decayed = (_config(weight_decay=0.0, grad_clip_norm=0),
                    _config(weight_decay=0.0, grad_clip_norm=0,
                            layer_decay=0.5))
  plain.lr.warmup_steps = decayed.lr.warmup_steps = 0  # Non-zero at step 0.
  plain, decayed = optim.make_optimizer(plain), optim.make_optimizer(decayed)
  u0, _ = plain.update(grads, plain.init(params), params)
  u1, _ = decayed.update(grads, decayed.init(params), params)
  mults = optim.layer_decay_multipliers(params, 0.5)
  jax.tree.map(lambda a, b, m: np.testing.assert_allclose(a * m, b,
                                                          rtol=1e-6),
               u0, u1, mults)
  assert not np.allclose(u0['embedding']['kernel'], u1['embedding']['kernel'])


@pytest.mark.parametrize('name', ['adam', 'sgd'])
def test_decoupled_weight_decay_arithmetic(name):
  """Zero gradients: the update is the decay alone, -m(t) * wd * kernel,
  with m(t) the schedule's multiplier (not times the base lr); biases and
  other non-kernels are not decayed."""
  params = _params(head_zeroinit=False)
  zeros = jax.tree.map(jnp.zeros_like, params)
  config = _config(name=name, weight_decay=1e-4, decoupled_weight_decay=True,
                   grad_clip_norm=0)
  tx = optim.make_optimizer(config)
  state = tx.init(params)
  for step in range(4):  # Warmup: m(t) = t / 10.
    updates, state = tx.update(zeros, state, params)
    m = step / 10
    np.testing.assert_allclose(updates['head']['kernel'],
                               -m * 1e-4 * params['head']['kernel'],
                               rtol=1e-5, atol=1e-12)
    assert not np.any(updates['head']['bias'])
    assert not np.any(updates['cls'])
  # AdamW's weight_decay = wd / lr decays kernels the same way.
  adamw = optim.make_optimizer(_config(name='adam', weight_decay=0.1,
                                       grad_clip_norm=0))
  astate = adamw.init(params)
  for _ in range(4):
    a_updates, astate = adamw.update(zeros, astate, params)
  if name == 'adam':
    np.testing.assert_allclose(a_updates['head']['kernel'],
                               updates['head']['kernel'], rtol=1e-5)


def test_decoupled_adam_matches_adamw_on_gradients():
  """Without weight decay both styles are Adam at lr(t)."""
  params = _params(head_zeroinit=False)
  grads = jax.tree.map(lambda p: jnp.full_like(p, 0.3), params)
  a = optim.make_optimizer(_config(weight_decay=0.0, grad_clip_norm=0))
  b = optim.make_optimizer(_config(weight_decay=0.0, grad_clip_norm=0,
                                   decoupled_weight_decay=True))
  sa, sb = a.init(params), b.init(params)
  for _ in range(3):
    ua, sa = a.update(grads, sa, params)
    ub, sb = b.update(grads, sb, params)
  jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-5),
               ua, ub)


def test_bad_options():
  with pytest.raises(ValueError, match='layer_decay=1.5'):
    optim.check(_config(layer_decay=1.5))
  config = _config()
  config.ema_decay = 1.0
  with pytest.raises(ValueError, match='ema_decay=1.0'):
    optim.check(config)


def test_ema_update_value():
  new = ema.update({'w': jnp.array([1.0, 2.0])}, {'w': jnp.array([3.0, 0.0])},
                   0.9)
  np.testing.assert_allclose(new['w'], [1.2, 1.8], rtol=1e-6)


def test_train_step_updates_ema():
  config = _config()
  config.model = tiny_config()
  config.image_size = 32
  config.ema_decay = 0.75
  config.lr.warmup_steps = 0  # Step 0 changes the params.
  model = steps.create_model(config, 3)
  tx = optim.make_optimizer(config)
  mesh = sharding.make_mesh((('data', 1), ('fsdp', 1)), jax.devices()[:1])
  state, _ = steps.init_state(config, model, tx, jax.random.PRNGKey(0), mesh)
  jax.tree.map(np.testing.assert_array_equal, state['ema_params'],
               state['params'])
  step = jax.jit(steps.make_train_step(config, model, tx,
                                       jax.random.PRNGKey(1)))
  batch = {'image': np.random.RandomState(0).uniform(
      -1, 1, (4, 32, 32, 3)).astype(np.float32),
           'label': np.array([0, 1, 2, 0])}
  new, _ = step(state, batch)
  jax.tree.map(
      lambda e, old, p: np.testing.assert_allclose(
          e, 0.75 * old + 0.25 * p, rtol=1e-6, atol=1e-7),
      new['ema_params'], state['params'], new['params'])
  assert not np.allclose(new['ema_params']['embedding']['kernel'],
                         new['params']['embedding']['kernel'])


# EMA, stochastic depth, layer decay, decoupled weight decay, a MAP head and
# sincos2d position embeddings, on configs/testing.py.
_EVERY_OPTION = ('--config.ema_decay=0.9', '--config.optimizer.layer_decay=0.8',
                 '--config.optimizer.decoupled_weight_decay=True',
                 '--config.optimizer.weight_decay=1e-4',
                 '--config.model.transformer.stochastic_depth=0.3',
                 '--config.model.classifier=map',
                 '--config.model.posemb=sincos2d')


@pytest.fixture(scope='module')
def every_option_run(tmp_path_factory, image_folder):
  """The workdir of a finished run with _EVERY_OPTION (in this process)."""
  workdir = tmp_path_factory.mktemp('every_option')
  train_in_process(workdir, image_folder, *_EVERY_OPTION)
  return workdir


def test_main_evaluates_and_saves_ema(every_option_run):
  evals = [r for r in read_records(every_option_run) if 'eval/accuracy' in r]
  assert [r['step'] for r in evals] == [3, 6]
  assert all('eval_ema/accuracy' in r for r in evals), evals
  params = checkpoint.load_npz(str(every_option_run / 'params.npz'))
  averaged = checkpoint.load_npz(str(every_option_run / layout.PARAMS_EMA))
  assert jax.tree.structure(params) == jax.tree.structure(averaged)
  assert not np.allclose(params['head']['kernel'], averaged['head']['kernel'])


def test_with_vit_options_defaults_reproduce_the_model():
  config = common.with_vit_options(ml_collections.ConfigDict(
      tiny_config().to_dict()))
  assert (config.posemb, config.head_zeroinit,
          config.transformer.stochastic_depth) == ('learn', True, 0.0)
  a = models.create(config, 3).init(jax.random.PRNGKey(0),
                                    np.zeros((1, 32, 32, 3)), train=False)
  b = models.create(tiny_config(), 3).init(jax.random.PRNGKey(0),
                                           np.zeros((1, 32, 32, 3)),
                                           train=False)
  jax.tree.map(np.testing.assert_array_equal, a, b)


def test_resume_with_every_option_is_bit_exact(tmp_path, image_folder,
                                               every_option_run, capsys):
  """EMA, stochastic depth, layer decay and decoupled weight decay on: a run
  resumed from its step-3 checkpoint ends with the uninterrupted run's
  params and EMA params, bit for bit."""
  full, cut = every_option_run, tmp_path / 'cut'
  shutil.copytree(full, cut)
  shutil.rmtree(cut / 'checkpoints' / '6')
  for name in ('params.npz', layout.PARAMS_EMA):
    (cut / name).unlink()
  capsys.readouterr()
  train_in_process(cut, image_folder, *_EVERY_OPTION)
  assert 'Starting at step 3' in capsys.readouterr().err
  for name in ('params.npz', layout.PARAMS_EMA):
    with np.load(full / name) as a, np.load(cut / name) as b:
      assert sorted(a.files) == sorted(b.files)
      for k in a.files:
        np.testing.assert_array_equal(a[k], b[k], err_msg=f'{name}: {k}')
