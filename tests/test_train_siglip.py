"""SigLIP training: the sigmoid loss against a NumPy reference, on one
device and sharded over four; a short run's loss falls; a run killed
(kill -9) after a checkpoint and resumed ends bit-identical."""
import json
import os
import signal
import subprocess
import time

import jax
import numpy as np
import pytest

from tests.conftest import ROOT, assert_same_params, main_command, \
    main_config, main_env, needs_fashion_mnist, read_records, python_command
from vit_jax.configs import common
from vit_jax.train import task_siglip
from vit_jax.train import tasks
from vit_jax.workdir import layout


def _embeddings(n=16, dim=8, seed=0):
  rs = np.random.RandomState(seed)
  z = rs.normal(size=(2, n, dim))
  z /= np.linalg.norm(z, axis=-1, keepdims=True)
  # Pairs that agree more than chance, as after some training.
  zimg, ztxt = z[0], z[1] + 0.5 * z[0]
  return (zimg.astype(np.float32),
          (ztxt / np.linalg.norm(ztxt, axis=-1, keepdims=True)
           ).astype(np.float32))


def _numpy_loss(zimg, ztxt, t, b):
  """big_vision's siglip.py, in float64: the mean over images of the sum
  over texts of -log sigmoid(+-logit)."""
  logits = zimg.astype(np.float64) @ ztxt.T.astype(np.float64) * t + b
  labels = 2 * np.eye(len(zimg)) - 1
  return float(np.mean(np.sum(np.log1p(np.exp(-labels * logits)), axis=-1)))


def test_sigmoid_loss_matches_numpy():
  zimg, ztxt = _embeddings()
  for t, b in [(10.0, -10.0), (1.0, 0.0), (3.5, 2.0)]:
    np.testing.assert_allclose(
        float(task_siglip.sigmoid_loss(zimg, ztxt, t, b)),
        _numpy_loss(zimg, ztxt, t, b), rtol=2e-6)
  # Matching pairs at a high temperature cost little, shuffled ones a lot.
  z = np.eye(4, dtype=np.float32)
  assert float(task_siglip.sigmoid_loss(z, z, 20.0, -10.0)) < 1e-3
  assert float(task_siglip.sigmoid_loss(z, z[::-1], 20.0, -10.0)) > 10


_SHARDED = '''
import json, sys
import jax, numpy as np
from vit_jax.train import sharding, task_siglip
zimg, ztxt = (np.asarray(a, np.float32) for a in json.loads(sys.argv[1]))
mesh = sharding.make_mesh((('data', -1), ('fsdp', 1)))
rows, whole = sharding.batch_sharding(mesh), sharding.replicated(mesh)
fn = jax.jit(jax.value_and_grad(
    lambda zi, zt, t, b: task_siglip.sharded_sigmoid_loss(zi, zt, t, b, mesh),
    argnums=(0, 1, 2, 3)), in_shardings=(rows, rows, whole, whole))
args = (zimg, ztxt, np.float32(10.0), np.float32(-10.0))
loss, grads = fn(*args)
hlo = fn.lower(*args).compile().as_text()
print(json.dumps(dict(devices=jax.device_count(), loss=float(loss),
                      grads=[np.asarray(g).tolist() for g in grads],
                      all_gathers=hlo.count('all-gather('))))
'''


def test_sharded_loss_on_four_devices_matches_one():
  """The loss over a batch split across 4 CPU devices (the text embeddings
  gathered, each device its rows of the logits) is the one-device loss, and
  so are its gradients."""
  zimg, ztxt = _embeddings()
  proc = subprocess.run(
      python_command('-c', _SHARDED,
       json.dumps([zimg.tolist(), ztxt.tolist()])),
      env=main_env(4), cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  got = json.loads(proc.stdout.strip().splitlines()[-1])
  assert got['devices'] == 4
  assert got['all_gathers'] >= 1  # The text embeddings, gathered.
  np.testing.assert_allclose(got['loss'], _numpy_loss(zimg, ztxt, 10.0, -10.0),
                             rtol=2e-6)
  want = jax.grad(task_siglip.sigmoid_loss, argnums=(0, 1, 2, 3))(
      zimg, ztxt, np.float32(10.0), np.float32(-10.0))
  for g, w in zip(got['grads'], want):
    np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=1e-5,
                               atol=1e-7)


# configs/siglip.py from scratch, tiny: 1 block per tower, batch 32, 20
# steps, a checkpoint every 10, zero-shot eval on 200 test images.
_TINY = ('--config.total_steps=20', '--config.batch_size=32',
         '--config.log_every=5', '--config.checkpoint_every=10',
         '--config.eval_every=1000', '--config.eval_batch_size=200',
         '--config.eval_split=test[:200]', '--config.lr.warmup_steps=5',
         '--config.lr.base=0.003', '--config.ema_decay=0.9',
         '--config.model.image.transformer.num_layers=1',
         '--config.model.text.num_layers=1')


@needs_fashion_mnist
def test_short_siglip_run_learns_and_resumes_bit_identical(tmp_path):
  full = tmp_path / 'full'
  config = main_config(None, *_TINY, config='configs/siglip.py')
  metrics = tasks.train_and_evaluate(config, str(full))
  losses = [r['train/loss'] for r in read_records(full) if 'train/loss' in r]
  # From ~5.9 (the mean of steps 1-5) to ~4.6 here. (Zero-shot accuracy
  # needs more steps than a test affords: configs/siglip.py has figures.)
  assert losses[-1] < losses[0] - 0.8, losses
  assert metrics['eval/zeroshot_num_examples'] == 200
  assert 0 <= metrics['eval/zeroshot_accuracy'] <= 1, metrics
  assert 'eval_ema/zeroshot_accuracy' in metrics
  records = [r for r in read_records(full) if 'train/bias' in r]
  assert records and records[-1]['train/bias'] != pytest.approx(-10.0)
  # The same run as main.py, killed (kill -9) once its checkpoint at step 10
  # is complete, then run again here: it ends as the uninterrupted one.
  cut = _killed_after_checkpoint(tmp_path / 'cut', 10, *_TINY)
  assert tasks.train_and_evaluate(config, str(cut)) == metrics
  assert_same_params(full, cut)
  with np.load(full / layout.PARAMS_EMA) as a, \
      np.load(cut / layout.PARAMS_EMA) as b:
    for k in a.files:
      np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def _killed_after_checkpoint(workdir, step, *overrides, attempts=3):
  """Runs configs/siglip.py with `overrides` (main.py, one device) and
  kill -9s it as soon as its checkpoint `step` is complete; returns its
  workdir. A run that got past its next checkpoint before the kill (a busy
  machine) is tried again in a new workdir."""
  for attempt in range(attempts):
    cut = workdir.with_name(f'{workdir.name}{attempt}')
    proc = subprocess.Popen(
        main_command(cut, None, *overrides, config='configs/siglip.py'),
        env=main_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        text=True)
    while proc.poll() is None and not (cut / 'checkpoints' / str(step)
                                       ).is_dir():
      time.sleep(0.005)
    proc.kill()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode in (0, -signal.SIGKILL), err[-3000:]
    checkpoints = [d for d in os.listdir(cut / 'checkpoints') if d.isdigit()]
    if proc.returncode == -signal.SIGKILL and checkpoints == [str(step)]:
      assert not (cut / layout.PARAMS).exists()
      return cut
  raise AssertionError(f'each of {attempts} runs got past checkpoint {step} '
                       'before it was killed')


def test_siglip_needs_a_bias_and_lit_refuses_one(tmp_path):
  config = common.config_file(str(ROOT / 'configs' / 'siglip.py'))
  config.model.bias_init = None
  with pytest.raises(ValueError, match=r'config\.model\.bias_init is not set'):
    tasks.train_and_evaluate(config, str(tmp_path / 'a'))
  config = common.config_file(str(ROOT / 'configs' / 'lit.py'))
  config.image_checkpoint = 'random'
  config.model.bias_init = -10.0
  with pytest.raises(ValueError,
                     match=r"config\.model\.bias_init=-10\.0: the 'lit' task"):
    tasks.train_and_evaluate(config, str(tmp_path / 'b'))
