"""Unreachable remote paths: one `error:` line, in seconds, from every tool."""
import subprocess
import time

import pytest
import tensorflow as tf

from tests.conftest import ROOT, main_command, main_env, python_command
from vit_jax import remote

# A bucket name nobody owns; offline, storage is not reached at all.
_MISSING = 'gs://vit-jax-tests-no-such-bucket-7f3a/run'


def _one_error_line(proc, path):
  errors = [l for l in proc.stderr.splitlines() if l.startswith('error:')]
  assert proc.returncode == 1, proc.stderr[-3000:]
  assert len(errors) == 1 and path in errors[0], proc.stderr[-3000:]
  assert 'Traceback' not in proc.stderr + proc.stdout
  return errors[0]


@pytest.mark.parametrize('args', [
    ('-m', 'vit_jax.evaluate', f'--workdir={_MISSING}'),
    ('-m', 'vit_jax.predict', f'--workdir={_MISSING}', 'image.png'),
    ('-m', 'vit_jax.predict', '--model=ViT-B_16',
     f'--checkpoint={_MISSING}/ViT-B_16.npz', 'image.png'),
])
def test_tools_fail_in_one_line(args):
  start = time.time()
  proc = subprocess.run(python_command(*args), cwd=ROOT, capture_output=True, text=True,
                        timeout=120, check=False)
  elapsed = time.time() - start
  line = _one_error_line(proc, _MISSING)
  # Offline: "cannot reach storage.googleapis.com"; online: "no such bucket".
  assert 'cannot reach' in line or 'no such bucket' in line
  assert elapsed < 60, f'{elapsed:.0f} s'


def test_main_pretrained_path(tmp_path, image_folder):
  path = f'{_MISSING}/ViT-B_16.npz'
  proc = subprocess.run(
      main_command(tmp_path, image_folder, f'--config.pretrained_path={path}'),
      env=main_env(), capture_output=True, text=True, timeout=300,
      check=False)
  line = _one_error_line(proc, path)
  assert line.startswith(f'error: config.pretrained_path={path}: ')


def test_proxy_that_does_not_answer(monkeypatch):
  """The reachability probe goes through the HTTPS proxy, as libcurl would."""
  monkeypatch.setenv('https_proxy', 'http://127.0.0.1:9')  # Nothing listens.
  with pytest.raises(remote.RemotePathError,
                     match=r'^--workdir=gs://b/x: cannot reach the proxy '
                     r'127\.0\.0\.1:9 \(.*\); no network connection\?'):
    remote.check('gs://b/x', '--workdir')


def test_no_answer_is_bounded(monkeypatch):
  monkeypatch.setattr(remote, 'TIMEOUT_S', 0.2)
  start = time.time()
  with pytest.raises(remote.RemotePathError,
                     match=r'^x: no answer within 0.2 s'):
    remote._bounded(lambda: time.sleep(5), 'x')  # pylint: disable=protected-access
  assert time.time() - start < 2


@pytest.mark.parametrize('error, cause', [
    (tf.errors.PermissionDeniedError, 'access denied: no credentials'),
    (tf.errors.UnauthenticatedError, 'access denied: no credentials'),
    (tf.errors.NotFoundError, 'no such bucket or object'),
    (tf.errors.UnimplementedError, 'URL scheme is not supported'),
])
def test_causes(error, cause):
  message = remote.describe(error(None, None, 'line one\n  line two'))
  assert cause in message and message.endswith('(line one line two)')


def test_local_paths_are_not_checked(tmp_path):
  remote.check(str(tmp_path / 'nothing here'), '--workdir')
