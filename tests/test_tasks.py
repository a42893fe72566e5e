"""Tasks: the registry, the config fields each task reads, the step every
task shares (accumulation, frozen params, EMA) and LiT's options."""
import glob
import os

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from vit_jax.configs import common
from vit_jax.models import lit
from vit_jax.train import optim
from vit_jax.train import steps
from vit_jax.train import task_lit
from vit_jax.train import tasks
from vit_jax.train import validate

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_every_task_has_its_fields_and_its_name():
  assert set(tasks.TASKS) == set(common.TASK_FIELDS)
  for name, cls in tasks.TASKS.items():
    assert cls.name == name
    assert common.base_config(name).task == name
  assert common.base_config().task == 'classify'
  with pytest.raises(ValueError, match="Unknown task 'clasify'"):
    common.base_config('clasify')


@pytest.mark.parametrize('path', sorted(
    glob.glob(os.path.join(ROOT, 'configs', '[!_]*.py'))), ids=os.path.basename)
def test_every_config_file_has_only_its_tasks_fields(path):
  arg = 'R_Ti_16' if path.endswith('augreg.py') else None
  config = common.config_file(path, arg)
  assert config.task in tasks.TASKS
  validate.check_fields(config, config.task)  # No error.


def _fails(config, match, tmp_path):
  """The run fails up front with `match`, having written nothing."""
  with pytest.raises(ValueError, match=match):
    tasks.train_and_evaluate(config, str(tmp_path / 'w'))
  assert not (tmp_path / 'w').exists()


def _lit_config():
  return common.config_file(os.path.join(ROOT, 'configs', 'lit.py'))


def _testing_config():
  return common.config_file(os.path.join(ROOT, 'configs', 'testing.py'))


def test_no_field_is_silently_ignored(tmp_path):
  # Options of the classifier that a LiT run does not take, by name.
  for field, value in [('label_smoothing', 0.1), ('mixup', {'p': 0.2}),
                       ('dtype', 'bfloat16'), ('remat', True), ('scan', True),
                       ('pretrained_path', 'x.npz'), ('fewshot', {'shots': (1,)})]:
    config = _lit_config()
    config[field] = value
    _fails(config, rf"config\.{field}(\.\w+)? is a field of the 'classify' "
           r"task, not of the 'lit' task", tmp_path)
  # And LiT's fields in a classifier config.
  config = _testing_config()
  config.image_checkpoint = 'random'
  _fails(config, r"config\.image_checkpoint is a field of the 'lit' and "
         r"'siglip' tasks, not of the 'classify' task",
         tmp_path)
  # Misspelled fields, top-level or nested, with the likely one.
  config = _lit_config()
  config.ema_decy = 0.9
  _fails(config, r'Unknown config field config\.ema_decy .*did you mean '
         r'config\.ema_decay\?', tmp_path)
  config = _testing_config()
  config.lr.warmup_step = 3
  _fails(config, r"config\.lr\.warmup_step \(the 'classify' task does not "
         r'read it\); did you mean config\.lr\.warmup_steps\?', tmp_path)
  config = _testing_config()
  config.cutmix.alpha = 1.0  # Not cutmix.p.
  _fails(config, r'config\.cutmix\.alpha .*did you mean config\.cutmix\.p\?',
         tmp_path)
  # The field of the old dispatch, and unknown tasks.
  config = _lit_config()
  config.trainer = 'lit'
  _fails(config, r'config\.trainer is gone: config\.task', tmp_path)
  config = _lit_config()
  config.task = 'siglipp'
  _fails(config, r"Unknown config.task='siglipp'; use one of classify, lit, siglip",
         tmp_path)


def test_lit_refuses_options_it_cannot_apply(tmp_path):
  config = _lit_config()
  config.image_checkpoint = 'random'
  config.accum_steps = 2
  _fails(config, r"config\.accum_steps=2: the 'lit' task needs 1", tmp_path)
  config.accum_steps = 1
  config.optimizer.layer_decay = 0.75
  _fails(config, r"config\.optimizer\.layer_decay=0\.75: the 'lit' task",
         tmp_path)


def _quadratic(params, batch, rng):
  """A loss with an aux metric and a dropout-like use of the rng."""
  noise = jax.random.normal(rng, ()) * 0
  loss = jnp.mean((batch['x'] @ params['w'] + params['b'] - batch['y'])**2)
  return loss + noise, {'train/mean_y': batch['y'].mean()}


def _step_config(**overrides):
  config = common.base_config()
  config.update(dict(total_steps=10, **overrides))
  config.lr.warmup_steps = 0
  config.optimizer.grad_clip_norm = 0.0
  return config


def test_make_step_accumulates_losses_grads_and_aux():
  rs = np.random.RandomState(0)
  params = {'w': jnp.asarray(rs.normal(size=(3,)), jnp.float32),
            'b': jnp.zeros(())}
  batch = {'x': rs.normal(size=(8, 3)).astype(np.float32),
           'y': rs.normal(size=(8,)).astype(np.float32)}
  out = {}
  for accum in (1, 4):
    config = _step_config(accum_steps=accum)
    tx = optax.sgd(0.1)
    state = steps.fresh_state(jnp.int32(0), params, tx, with_ema=False)
    step = jax.jit(steps.make_step(config, _quadratic, tx,
                                   jax.random.PRNGKey(0)))
    out[accum] = step(state, batch)
  (full, m1), (accumulated, m4) = out[1], out[4]
  # Equal-size micro-batches: the mean of their means is the batch mean.
  np.testing.assert_allclose(m4['train/loss'], m1['train/loss'], rtol=1e-6)
  np.testing.assert_allclose(m4['train/mean_y'], batch['y'].mean(),
                             rtol=1e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5,
                                                       atol=1e-6),
               full['params'], accumulated['params'])
  assert set(m1) == {'train/loss', 'train/grad_norm', 'train/lr',
                     'train/mean_y'}


def _tiny_lit():
  return lit.LitModel(
      image=dict(patches={'size': (7, 7)}, hidden_size=16, classifier='token',
                 representation_size=None, transformer=dict(
                     mlp_dim=16, num_heads=2, num_layers=1,
                     attention_dropout_rate=0.0, dropout_rate=0.0)),
      text_model='text_transformer',
      text=dict(width=16, num_layers=1, mlp_dim=16, num_heads=2,
                vocab_size=20),
      pp=dict(tokenizer_name='bert', max_len=4, size=28), out_dim=(None, 16))


@pytest.fixture(scope='module')
def tiny_lit_params():
  """`_tiny_lit()`'s initial params (read-only), once for the module."""
  return jax.jit(lambda: _tiny_lit().init(  # One compile, not one per op.
      jax.random.PRNGKey(0), images=jnp.zeros((1, 28, 28, 3)),
      tokens=jnp.zeros((1, 4), jnp.int32))['params'])()


@pytest.mark.parametrize('decoupled', [False, True])
def test_lit_step_applies_ema_and_keeps_the_locked_tower(decoupled,
                                                         tiny_lit_params):
  """The step every task shares, given LiT's loss: the image tower gets no
  update and no optimizer state; the EMA follows every param."""
  model, params = _tiny_lit(), tiny_lit_params
  frozen = task_lit.frozen_mask(params)
  config = _step_config(ema_decay=0.75)
  config.optimizer.decoupled_weight_decay = decoupled
  tx = optim.make_optimizer(config, frozen)
  state = steps.fresh_state(jnp.int32(0), params, tx, with_ema=True)
  moments = jax.tree.leaves(state['opt_state'])
  trained = jax.tree.leaves({k: v for k, v in params.items() if k != 'img'})
  # Adam's two moments for the trainable params only (and the counters).
  assert sum(x.size for x in moments) < 2 * sum(x.size for x in trained) + 8
  key = jax.random.PRNGKey(1)
  step = jax.jit(steps.make_step(
      config, task_lit.make_loss(model), tx, key,
      prepare=task_lit.caption_tokens(None, key), frozen=frozen))
  rs = np.random.RandomState(0)
  batch = {'image': rs.uniform(-1, 1, (4, 28, 28, 3)).astype(np.float32),
           'tokens': rs.randint(0, 20, (4, 4)).astype(np.int32)}
  new, metrics = step(state, batch)
  assert metrics['train/temperature'] == pytest.approx(10.0 ** 0, rel=1e-6)
  flat = lambda t: flax.traverse_util.flatten_dict(jax.device_get(t))
  old, now, averaged = flat(params), flat(new['params']), flat(
      new['ema_params'])
  for k, locked in flat(frozen).items():
    if locked:
      np.testing.assert_array_equal(now[k], old[k], err_msg=str(k))
    np.testing.assert_allclose(averaged[k], 0.75 * old[k] + 0.25 * now[k],
                               rtol=1e-6, atol=1e-7, err_msg=str(k))
  assert not np.allclose(now[('txt', 'head', 'kernel')],
                         old[('txt', 'head', 'kernel')])
