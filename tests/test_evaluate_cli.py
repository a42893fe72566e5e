"""`python -m vit_jax.evaluate --workdir=DIR`: the trainer's own evaluation."""
import json
import subprocess

import jax
import pytest

from tests.conftest import ROOT, main_env, read_records, python_command
from tests.test_command_line import LIBRARY_LOG_LINE
from vit_jax.evaluators import classification
from vit_jax.train import sharding
from vit_jax.workdir import run as run_dir


def _evaluate(*args, fresh=False):
  return subprocess.run(python_command('-m', 'vit_jax.evaluate', *args,
                                       fresh=fresh),
                        cwd=ROOT, env=main_env(devices=1), capture_output=True,
                        text=True, timeout=300, check=False)


def _eval_record(workdir, step):
  return next(r for r in read_records(workdir)
              if r['step'] == step and 'eval/accuracy' in r)


def test_cli_reproduces_the_final_eval(trained_run):
  # A fresh interpreter: what TensorFlow prints while it is imported counts.
  proc = _evaluate(f'--workdir={trained_run}', fresh=True)
  assert proc.returncode == 0, proc.stderr[-3000:]
  # On a CPU host: no line from absl or TensorFlow that nobody asked for.
  assert not LIBRARY_LOG_LINE.search(proc.stderr), proc.stderr[-3000:]
  human, last = proc.stdout.splitlines()[-2:]
  assert 'params.npz' in human and "split 'test'" in human
  metrics = json.loads(last)
  expected = _eval_record(trained_run, 6)
  assert metrics['eval/accuracy'] == expected['eval/accuracy']
  assert metrics['eval/num_examples'] == expected['eval/num_examples'] == 21
  assert metrics['eval/loss'] == pytest.approx(expected['eval/loss'],
                                               rel=1e-6)


def test_checkpoint_reproduces_its_eval(trained_run):
  """evaluate_split on checkpoint 3, in this process (one device, as the
  run), gives the run's eval at step 3 exactly."""
  run = run_dir.load(str(trained_run), step=3)
  mesh = sharding.make_mesh(run.config.mesh, jax.devices()[:1])
  metrics = classification.evaluate_split(
      run.config, jax.jit(classification.make_eval_step(run.model)),
      jax.device_put(run.params, sharding.state_shardings(mesh, run.params)),
      mesh)
  expected = _eval_record(trained_run, 3)
  assert metrics['eval/accuracy'] == expected['eval/accuracy']
  assert metrics['eval/loss'] == pytest.approx(expected['eval/loss'],
                                               rel=1e-6)


def test_cli_errors_are_one_line(trained_run):
  proc = _evaluate(f'--workdir={trained_run}', '--split=nope')
  assert proc.returncode == 1
  lines = proc.stderr.strip().splitlines()
  assert lines[-1].startswith('error: Image folder split ') and 'nope' in (
      lines[-1])
  assert 'Traceback' not in proc.stderr
