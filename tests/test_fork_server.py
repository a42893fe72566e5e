"""The suite's fork server (tests/fork_server.py): a forked program behaves
as the same program started in a fresh interpreter, as the tests that use
it assume."""
import json
import os
import resource
import signal
import subprocess
import time

import pytest

from tests.conftest import main_env, python_command

pytestmark = pytest.mark.skipif(
    os.environ.get('VIT_JAX_TEST_FRESH_PROCESSES') == '1',
    reason='the fork server is off')

_REPORT = ('import json, os, resource, sys\n'
           'print(json.dumps(dict(argv=sys.argv, cwd=os.getcwd(),\n'
           "    xla=os.environ.get('XLA_FLAGS'), forked='jax' in sys.modules,\n"
           '    fsize=resource.getrlimit(resource.RLIMIT_FSIZE))))\n'
           'sys.exit(int(sys.argv[1]))\n')


def _report(tmp_path, *args, env=None, **kwargs):
  proc = subprocess.run(python_command('-c', _REPORT, *args), cwd=tmp_path,
                        env=env or main_env(3), capture_output=True,
                        text=True, timeout=60, **kwargs)
  return proc, json.loads(proc.stdout)


def test_argv_environment_directory_limits_and_exit_code(tmp_path):
  def cap_file_size():
    resource.setrlimit(resource.RLIMIT_FSIZE, (123_456, 123_456))
  proc, report = _report(tmp_path, '7', 'a b', preexec_fn=cap_file_size)
  assert proc.returncode == 7, proc.stderr
  assert report['forked'], 'not served by the fork server'
  assert report['argv'] == ['-c', '7', 'a b']
  assert report['cwd'] == str(tmp_path)
  assert '--xla_force_host_platform_device_count=3' in report['xla']
  assert report['fsize'] == [123_456, 123_456]


def test_an_environment_the_imports_did_not_see_gets_a_fresh_interpreter(
    tmp_path):
  proc, report = _report(tmp_path, '0',
                         env=dict(main_env(), TF_CPP_MIN_LOG_LEVEL='0'))
  assert proc.returncode == 0, proc.stderr
  assert not report['forked']


_SLEEPER = ('import os, signal, sys, time\n'
            "if sys.argv[1] == 'handle':\n"
            '  signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))\n'
            'print(os.getpid(), flush=True)\n'
            'time.sleep(60)\n')


def _start_sleeper(mode):
  proc = subprocess.Popen(python_command('-c', _SLEEPER, mode),
                          env=main_env(), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
  return proc, int(proc.stdout.readline())


@pytest.mark.parametrize('mode, returncode', [('handle', 143),
                                              ('default', -signal.SIGTERM)])
def test_signals_reach_the_program_and_its_end_is_the_clients(mode,
                                                              returncode):
  proc, pid = _start_sleeper(mode)
  assert pid != proc.pid  # Forked: the program is not the client process.
  proc.send_signal(signal.SIGTERM)
  proc.communicate(timeout=60)
  assert proc.returncode == returncode


def test_kill_9_of_the_client_kills_the_program():
  proc, pid = _start_sleeper('default')
  proc.kill()
  proc.communicate(timeout=60)  # Its pipes close when the program is gone.
  assert proc.returncode == -signal.SIGKILL
  deadline = time.time() + 30
  while True:  # Reaped by the server.
    try:
      os.kill(pid, 0)
    except ProcessLookupError:
      break
    assert time.time() < deadline, f'pid {pid} outlived its client'
    time.sleep(0.01)
