"""Stopping a run (SIGINT / SIGTERM), killing it, and resuming it bit-exact,
in one process and in two."""
import os
import re
import signal
import subprocess
import time

from tests.conftest import SCALE_OVERRIDES, SLOW_STEP_OVERRIDES as _SLOW, \
    assert_same_params, main_command, main_env, read_records, run_processes, \
    start_processes, train_in_process


def _latest_step(workdir):
  try:
    return max((r['step'] for r in read_records(workdir)), default=0)
  except (OSError, ValueError):  # Not there yet, or a line being written.
    return 0


def _wait_for_step(workdir, procs, step, timeout=300):
  """Polls metrics.jsonl until it has `step` (no fixed sleeps: the machine
  may be busy)."""
  deadline = time.time() + timeout
  while _latest_step(workdir) < step:
    assert all(p.poll() is None for p in procs), 'a run ended early'
    assert time.time() < deadline, f'no step {step} in {timeout} s'
    time.sleep(0.01)


def _start(workdir, data_dir, *overrides):
  return subprocess.Popen(main_command(workdir, data_dir, *overrides),
                          env=main_env(), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)


def _stop_with(signum, workdir, data_dir, after_step, *overrides):
  """Starts a run, sends `signum` once it logged `after_step`; returns the
  step it stopped at."""
  proc = _start(workdir, data_dir, *overrides)
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


def _logged_steps(workdir):
  return [r['step'] for r in read_records(workdir) if 'train/loss' in r]


def test_stopped_killed_and_truncated_run_resumes_bit_exact(tmp_path,
                                                            image_folder,
                                                            capfd, caplog):
  """One run of 36 steps, interrupted every way: Ctrl-C (SIGINT) early, a
  torn last line in metrics.jsonl, then kill -9 of the resumed run after its
  checkpoints at steps 12 and 24, and checkpoint 24 truncated. Re-running
  falls back to step 12 and ends with the uninterrupted run's params, each
  step logged once. (SIGTERM in one process: test_workdir_lock.py.) The
  uninterrupted run and the last one, which need no signal, run in this
  process."""
  full = tmp_path / 'full'
  train_in_process(full, image_folder, *_SLOW)

  cut = tmp_path / 'cut'
  stopped = _stop_with(signal.SIGINT, cut, image_folder, 3, *_SLOW)
  assert stopped < 12
  # A kill mid-write leaves a torn last line: dropped on resume.
  with open(cut / 'metrics.jsonl', 'a') as f:
    f.write('{"step": %d, "train/lo' % (stopped + 1))

  proc = _start(cut, image_folder, *_SLOW)
  _wait_for_step(cut, [proc], 30)  # Checkpoint 24 is complete by then.
  proc.kill()
  _, err = proc.communicate(timeout=60)
  assert f'Starting at step {stopped} of 36' in err, err[-3000:]
  assert not (cut / 'params.npz').exists(), 'the run ended before the kill'
  checkpoints = {int(d) for d in os.listdir(cut / 'checkpoints')
                 if d.isdigit()}
  assert {12, 24} <= checkpoints and max(checkpoints) == 24, checkpoints

  # Truncate every file of the newest checkpoint.
  for root, _, files in os.walk(cut / 'checkpoints' / '24'):
    for name in files:
      path = os.path.join(root, name)
      with open(path, 'r+b') as f:
        f.truncate(os.path.getsize(path) // 2)

  capfd.readouterr()
  train_in_process(cut, image_folder, *_SLOW)
  err = capfd.readouterr().err
  assert 'checkpoints/24 is unreadable' in caplog.text  # absl's warning.
  assert 'Starting at step 12 of 36' in err, err[-3000:]
  assert_same_params(full, cut)
  assert _logged_steps(cut) == list(range(1, 37))


def test_two_processes_stop_at_the_same_step(tmp_path, image_folder,
                                             two_process_run):
  """SIGTERM to process 1 only: both stop at one step and save one
  checkpoint there; the resumed run ends bit-identical to the uninterrupted
  one (`two_process_run`: RandAugment, Mixup and CutMix resume too)."""
  cut = tmp_path / 'cut'
  procs = start_processes(cut, image_folder, *SCALE_OVERRIDES)
  _wait_for_step(cut, procs, 2)
  procs[1].send_signal(signal.SIGTERM)
  errs = [p.communicate(timeout=300)[1] for p in procs]
  stops = []
  for proc, err in zip(procs, errs):
    assert proc.returncode == 143, err[-3000:]
    assert 'Traceback' not in err, err[-3000:]
    stops += re.findall(r'stopped by SIGTERM at step (\d+)', err)
  assert len(stops) == 2 and stops[0] == stops[1], errs
  stopped = int(stops[0])
  assert 2 <= stopped < 40
  # The stop's checkpoint, after the periodic one at step 20 if it got there.
  assert sorted(int(d) for d in os.listdir(cut / 'checkpoints')) == (
      [20] if stopped > 20 else []) + [stopped]

  (_, err), _ = run_processes(cut, image_folder, *SCALE_OVERRIDES)
  assert f'Starting at step {stopped} of 40' in err
  assert_same_params(two_process_run, cut)
  assert _logged_steps(cut) == list(range(1, 41))
