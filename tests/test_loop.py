"""The one training loop with its tasks; the atomic writer; the file table."""
import os

import jax.numpy as jnp
import numpy as np
import pytest

from tests.conftest import assert_same_params, needs_fashion_mnist
from tests.test_train_lit import _config
from tests.test_train_lit_captions import _tfds_config
from tests.test_train_lit_captions import tiny_captions  # pylint: disable=unused-import  (a fixture)
from vit_jax import atomic_file
from vit_jax import remote
from vit_jax.train import tasks
from vit_jax.train import loop
from vit_jax.train import optim
from vit_jax.train import preemption
from vit_jax.workdir import layout
from vit_jax.workdir import metrics


def _stop_at(monkeypatch, stop_step):
  """SIGTERM as the loop sees it, at `stop_step` of the next runs."""
  monkeypatch.setattr(preemption.StopRequests, 'should_stop',
                      lambda self, step: step == stop_step)


def _lit_configs(kind, data_dir, **overrides):
  """A short LiT run on template captions or on real (TFDS) captions, with a
  checkpoint cadence that is not the log cadence. (Templates: zero-shot on
  500 Fashion-MNIST test images, not 10000: the runs are compared.)"""
  cadence = dict(total_steps=6, log_every=2, checkpoint_every=3,
                 eval_every=6, **overrides)
  if kind == 'templates':
    return _config(image_checkpoint='random', batch_size=16,
                   eval_split='test[:500]', eval_batch_size=500, **cadence)
  config = _tfds_config(data_dir)
  config.update(cadence)
  return config


@pytest.mark.parametrize('kind', [
    pytest.param('templates', marks=needs_fashion_mnist), 'captions'])
def test_lit_stopped_and_resumed_is_bit_identical(tmp_path, monkeypatch,
                                                  tiny_captions, kind):
  # With an EMA of the params: the step every task shares keeps it.
  config = _lit_configs(kind, tiny_captions, ema_decay=0.5)
  full = tasks.train_and_evaluate(config, str(tmp_path / 'full'))
  assert {k.replace('eval/', 'eval_ema/') for k in full if 'eval/' in k} <= (
      set(full))
  _stop_at(monkeypatch, 4)
  with pytest.raises(preemption.Stopped, match='at step 4'):
    tasks.train_and_evaluate(config, str(tmp_path / 'cut'))
  assert not (tmp_path / 'cut' / layout.PARAMS).exists()
  resumed = tasks.train_and_evaluate(config, str(tmp_path / 'cut'))
  assert resumed == full
  assert_same_params(tmp_path / 'full', tmp_path / 'cut')
  with np.load(tmp_path / 'full' / layout.PARAMS_EMA) as a, \
      np.load(tmp_path / 'cut' / layout.PARAMS_EMA) as b:
    assert a.files == b.files
    for k in a.files:
      np.testing.assert_array_equal(a[k], b[k], err_msg=k)
  # The classifier's cadence: a train record per log step only (not at the
  # saves at 3 and 4), the lr that of the logged step.
  records = metrics.read(tmp_path / 'cut' / layout.METRICS)
  train = [r for r in records if 'train/loss' in r]
  assert [r['step'] for r in train] == [2, 4, 6]
  schedule = optim.lr_schedule(config)
  for r in train:
    assert r['train/lr'] == pytest.approx(float(schedule(r['step'] - 1)))
  assert [r['step'] for r in records if 'train/loss' not in r] == [6]


def test_skipping_nonfinite_keeps_the_state_and_counts_the_step():
  def step(state, batch):
    new = {'step': state['step'] + 1, 'params': state['params'] + 1.0,
           'opt_state': {'mu': state['opt_state']['mu'] + 2.0}}
    return new, {'train/loss': batch}

  skipping = loop._skipping_nonfinite(step)  # pylint: disable=protected-access
  state = {'step': jnp.int32(5), 'params': jnp.ones(3),
           'opt_state': {'mu': jnp.zeros(2)}}
  new, _ = skipping(state, jnp.float32(np.nan))
  assert int(new['step']) == 6
  np.testing.assert_array_equal(new['params'], np.ones(3))
  np.testing.assert_array_equal(new['opt_state']['mu'], np.zeros(2))
  new, _ = skipping(state, jnp.float32(0.5))
  np.testing.assert_array_equal(new['params'], np.full(3, 2.0))
  np.testing.assert_array_equal(new['opt_state']['mu'], np.full(2, 2.0))


def test_lit_run_skips_nonfinite_steps(tmp_path, tiny_captions):
  """A learning rate that makes the loss NaN: 'stop' ends the run with the
  classifier's message, 'skip' (the classifier's option) finishes it."""
  config = _lit_configs('captions', tiny_captions)
  config.lr.base = 1e30
  with pytest.raises(loop.NonFiniteLossError, match='nonfinite=skip'):
    tasks.train_and_evaluate(config, str(tmp_path / 'stop'))
  config.nonfinite = 'skip'
  tasks.train_and_evaluate(config, str(tmp_path / 'skip'))
  records = metrics.read(tmp_path / 'skip' / layout.METRICS)
  losses = [r['train/loss'] for r in records if 'train/loss' in r]
  assert len(losses) == 3 and not np.isfinite(losses).all(), losses
  assert (tmp_path / 'skip' / layout.PARAMS).exists()


def test_lit_checks_remote_paths_and_the_workdir(tmp_path, monkeypatch,
                                                 tiny_captions):
  asked = []

  def refuse(path, what, must_exist=True):
    del must_exist
    asked.append(what)
    if '://' in path:
      raise remote.RemotePathError(f'{what}={path}: no network.')

  monkeypatch.setattr(remote, 'check', refuse)
  config = _lit_configs('captions', tiny_captions)
  config.image_checkpoint = 'gs://bucket/vit.npz'
  with pytest.raises(remote.RemotePathError, match='image_checkpoint'):
    tasks.train_and_evaluate(config, str(tmp_path / 'a'))
  assert not (tmp_path / 'a').exists()  # Nothing written.
  config = _lit_configs('captions', tiny_captions)
  (tmp_path / 'file').write_text('')
  with pytest.raises(ValueError, match='cannot be written'):
    tasks.train_and_evaluate(config, str(tmp_path / 'file' / 'w'))
  assert {'--workdir', 'config.captions.data_dir'} <= set(asked)


def test_atomic_write_replaces_whole_files_only(tmp_path, monkeypatch):
  path = tmp_path / 'f.json'
  atomic_file.write(path, 'one')
  atomic_file.write(str(path), b'two')
  assert path.read_text() == 'two'

  def fail(fd):
    raise OSError(28, 'No space left on device')

  monkeypatch.setattr(os, 'fsync', fail)
  with pytest.raises(OSError, match='No space'):
    atomic_file.write(path, 'three')
  assert path.read_text() == 'two'  # The old file, whole.
  assert os.listdir(tmp_path) == ['f.json']  # No temporary file left.
