"""One run per workdir: a live holder refuses others; a dead one is replaced."""
import json
import signal
import subprocess
import sys

from absl import logging
import pytest

from tests.conftest import ROOT, main_command, main_env, read_records, \
    run_main
from tests.test_preemption import _wait_for_step
from vit_jax.workdir import lock


def test_second_run_is_refused_while_the_first_finishes(tmp_path,
                                                       image_folder):
  args = ('--config.total_steps=100000', '--config.log_every=1',
          '--config.eval_every=100000', '--config.checkpoint_every=100000')
  workdir = tmp_path / 'w'
  # Fresh, not forked (conftest.python_command): the lock names its pid, and
  # SIGSTOP must stop the run itself.
  first = subprocess.Popen(main_command(workdir, image_folder, *args,
                                        fresh=True), env=main_env(), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
  _wait_for_step(workdir, [first], 2)
  config = (workdir / 'config.json').read_text()
  # Paused while the second starts (alive, it holds the lock; its steps
  # would only take the CPU from the second).
  first.send_signal(signal.SIGSTOP)
  try:
    second = run_main(workdir, image_folder, '--config.total_steps=7')
  finally:
    first.send_signal(signal.SIGCONT)
  assert second.returncode == 1, second.stderr[-3000:]
  assert 'Traceback' not in second.stderr
  assert f'is in use by pid {first.pid} on host' in second.stderr
  assert (workdir / 'config.json').read_text() == config  # Untouched.
  assert first.poll() is None
  first.send_signal(signal.SIGTERM)  # The first ends its way.
  _, err = first.communicate(timeout=300)
  assert first.returncode == 143, err[-3000:]
  steps = [r['step'] for r in read_records(workdir)]
  assert steps == list(range(1, max(steps) + 1))  # Each step once.
  assert not (workdir / lock.LOCK_NAME).exists()  # Released.


def test_lock_of_a_killed_run_is_taken_over(tmp_path):
  holder = subprocess.Popen(
      [sys.executable, '-c', 'import sys, time; sys.path.insert(0, sys.argv[1])'
       '; from vit_jax.workdir import lock as workdir_lock;'
       ' workdir_lock.acquire(sys.argv[2]);'
       ' print("locked", flush=True); time.sleep(600)', str(ROOT),
       str(tmp_path)], stdout=subprocess.PIPE, text=True)
  assert holder.stdout.readline().strip() == 'locked'
  with pytest.raises(lock.WorkdirInUse, match=f'pid {holder.pid} '):
    lock.acquire(str(tmp_path))
  holder.kill()  # kill -9: no chance to clean up.
  holder.wait()
  with pytest.MonkeyPatch.context() as mp:
    notes = []
    mp.setattr(logging, 'warning', notes.append)
    mine = lock.acquire(str(tmp_path))
  assert len(notes) == 1 and f'lock of pid {holder.pid} ' in notes[0]
  path = tmp_path / lock.LOCK_NAME
  assert json.loads(path.read_text()) == mine
  lock.release(str(tmp_path), mine)
  assert not path.exists()


def test_lock_of_another_host_is_kept(tmp_path):
  path = tmp_path / lock.LOCK_NAME
  path.write_text(json.dumps(dict(host='elsewhere', pid=1, started='09:00',
                                  command='main.py')))
  with pytest.raises(lock.WorkdirInUse,
                     match=f'pid 1 on host elsewhere.*delete {path}'):
    lock.acquire(str(tmp_path))

