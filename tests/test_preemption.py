"""Graceful stop (SIGTERM / SIGINT) and resume, one and two processes."""
import os
import re
import signal
import subprocess
import time

import numpy as np

from tests.conftest import main_command, main_env, read_records, run_main
from tests.test_scale import _free_port

# ~90 ms a step on 2 idle cores: a signal lands well before the last step.
_ARGS = ('--config.total_steps=40', '--config.checkpoint_every=1000',
         '--config.eval_every=1000', '--config.log_every=1',
         '--config.image_size=32', '--config.model.hidden_size=64',
         '--config.model.transformer.mlp_dim=256',
         '--config.model.transformer.num_layers=4', '--config.batch_size=32')


def _latest_step(workdir):
  try:
    return max((r['step'] for r in read_records(workdir)), default=0)
  except (OSError, ValueError):  # Not there yet, or a line being written.
    return 0


def _wait_for_step(workdir, procs, step, timeout=300):
  """Polls metrics.jsonl (no fixed sleeps: the machine may be busy)."""
  deadline = time.time() + timeout
  while _latest_step(workdir) < step:
    assert all(p.poll() is None for p in procs), 'a run ended early'
    assert time.time() < deadline, f'no step {step} in {timeout} s'
    time.sleep(0.05)


def _stop_with(signum, workdir, data_dir, after_step, *overrides):
  """Starts a run, sends `signum` once it logged `after_step`; returns the
  step it stopped at."""
  proc = subprocess.Popen(main_command(workdir, data_dir, *overrides),
                          env=main_env(), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
  _wait_for_step(workdir, [proc], after_step)
  proc.send_signal(signum)
  _, err = proc.communicate(timeout=300)
  name = signal.Signals(signum).name
  assert proc.returncode == 128 + signum, err[-3000:]
  assert 'Traceback' not in err, err[-3000:]
  stopped = int(re.search(rf'stopped by {name} at step (\d+); checkpoint '
                          r'saved in \S+; re-run', err).group(1))
  assert stopped >= after_step
  assert str(stopped) in os.listdir(workdir / 'checkpoints')
  assert not (workdir / 'params.npz').exists()
  return stopped


def _assert_same_params(a_dir, b_dir):
  with np.load(a_dir / 'params.npz') as a, np.load(b_dir / 'params.npz') as b:
    assert sorted(a.files) == sorted(b.files)
    for k in a.files:
      np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_sigterm_then_sigint_resume_bit_exact(tmp_path, image_folder):
  full = tmp_path / 'full'
  proc = run_main(full, image_folder, *_ARGS)
  assert proc.returncode == 0, proc.stderr[-3000:]

  cut = tmp_path / 'cut'
  first = _stop_with(signal.SIGTERM, cut, image_folder, 3, *_ARGS)
  # A kill mid-write leaves a torn last line: dropped on resume.
  with open(cut / 'metrics.jsonl', 'a') as f:
    f.write('{"step": %d, "train/lo' % (first + 1))
  second = _stop_with(signal.SIGINT, cut, image_folder, first + 3, *_ARGS)
  assert first < second < 40
  resumed = run_main(cut, image_folder, *_ARGS)
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  assert f'Starting at step {second}' in resumed.stderr
  _assert_same_params(full, cut)
  steps = [r['step'] for r in read_records(cut) if 'train/loss' in r]
  assert steps == list(range(1, 41))


def _start_processes(workdir, data_dir, *overrides):
  port = _free_port()
  return [subprocess.Popen(
      main_command(workdir, data_dir, *overrides,
                   f'--coordinator_address=127.0.0.1:{port}',
                   '--num_processes=2', f'--process_id={i}'),
      env=main_env(4), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
      text=True) for i in range(2)]


def test_two_processes_stop_at_the_same_step(tmp_path, image_folder):
  """SIGTERM to process 1 only: both stop at one step, with one checkpoint;
  the resumed run ends bit-identical to an uninterrupted one."""
  args = ('--config.total_steps=80', '--config.batch_size=64',
          '--config.log_every=1', '--config.eval_every=1000',
          '--config.checkpoint_every=1000')
  full = tmp_path / 'full'
  for proc in _start_processes(full, image_folder, *args):
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]

  cut = tmp_path / 'cut'
  procs = _start_processes(cut, image_folder, *args)
  _wait_for_step(cut, procs, 5)
  procs[1].send_signal(signal.SIGTERM)
  errs = [p.communicate(timeout=300)[1] for p in procs]
  stops = []
  for proc, err in zip(procs, errs):
    assert proc.returncode == 143, err[-3000:]
    assert 'Traceback' not in err, err[-3000:]
    stops += re.findall(r'stopped by SIGTERM at step (\d+)', err)
  assert len(stops) == 2 and stops[0] == stops[1], errs
  stopped = int(stops[0])
  assert 5 <= stopped < 80
  assert os.listdir(cut / 'checkpoints') == [str(stopped)]

  for proc in _start_processes(cut, image_folder, *args):
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
  _assert_same_params(full, cut)
