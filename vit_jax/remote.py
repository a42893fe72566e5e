"""Remote paths (gs://...): checked up front, failing in seconds with one line.

TensorFlow's file system reads `gs://` paths for the trainer, orbax (through
etils) and tfds. When the storage cannot be reached, its error surfaces deep
in a load as a multi-line traceback, and (network that drops packets, a
metadata server that does not answer) only after its retries and timeouts.
`check` asks first, within `TIMEOUT_S` seconds for each question: can the
storage host be reached at all (a TCP connection, through the HTTPS proxy
where one is set), then does the bucket and object exist. Its error names the
path and the likely cause: no network, no credentials or permission, no such
bucket or object.
"""
import os
import socket
import threading
from typing import Callable, TypeVar
import urllib.parse

TIMEOUT_S = 10.0

# The hosts TensorFlow's GCS file system talks to, by scheme.
_HOSTS = {'gs': ('storage.googleapis.com', 443)}

T = TypeVar('T')


class RemotePathError(ValueError):
  """A remote path cannot be used; the message says why, in one line."""


def is_remote(path) -> bool:
  return '://' in str(path)


def _bounded(fn: Callable[[], T], what: str) -> T:
  """`fn()`, or RemotePathError when it has not returned in TIMEOUT_S.

  It runs in a daemon thread, so a call stuck in TensorFlow's retries does not
  keep the process from exiting.
  """
  result = {}

  def run():
    try:
      result['value'] = fn()
    except Exception as e:  # pylint: disable=broad-except  (re-raised below)
      result['error'] = e

  thread = threading.Thread(target=run, daemon=True)
  thread.start()
  thread.join(TIMEOUT_S)
  if thread.is_alive():
    raise RemotePathError(f'{what}: no answer within {TIMEOUT_S:g} s '
                          '(no network, or a firewall?).')
  if 'error' in result:
    raise result['error']
  return result['value']


def _proxy():
  """(host, port) of the HTTPS proxy that libcurl would use, or None."""
  url = os.environ.get('https_proxy') or os.environ.get('HTTPS_PROXY')
  if not url:
    return None
  parsed = urllib.parse.urlsplit(url if '://' in url else f'http://{url}')
  return parsed.hostname, parsed.port or 3128


def _probe(host: str, port: int, what: str) -> None:
  """Raises RemotePathError unless a TCP connection to host:port opens."""
  via = _proxy()
  target = via or (host, port)
  try:
    _bounded(lambda: socket.create_connection(target, TIMEOUT_S).close(),
             what)
  except OSError as e:
    where = f'the proxy {target[0]}:{target[1]}' if via else f'{host}'
    raise RemotePathError(
        f'{what}: cannot reach {where} ({e.strerror or e}); no network '
        'connection? This machine may be offline.') from None


def describe(error: Exception) -> str:
  """The likely cause of a TensorFlow file-system error, in one line."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  first = ' '.join(str(error).split())[:300]
  if isinstance(error, (tf.errors.PermissionDeniedError,
                        tf.errors.UnauthenticatedError)):
    return ('access denied: no credentials, or no permission on it (run '
            '`gcloud auth application-default login`, or set '
            f'GOOGLE_APPLICATION_CREDENTIALS) ({first})')
  if isinstance(error, tf.errors.NotFoundError):
    return f'no such bucket or object ({first})'
  if isinstance(error, tf.errors.UnimplementedError):
    return f'this URL scheme is not supported here ({first})'
  if 'resolve' in first.lower() or 'connect' in first.lower():
    return f'no network connection? ({first})'
  return first


def check(path: str, what: str, *, must_exist: bool = True) -> None:
  """Raises RemotePathError (one line) if remote `path` cannot be used.

  Local paths pass unchecked. With `must_exist` the object (or directory)
  must exist; otherwise (an output directory) its bucket must.
  """
  if not is_remote(path):
    return
  what = f'{what}={path}'
  scheme, rest = path.split('://', 1)
  if scheme in _HOSTS:
    _probe(*_HOSTS[scheme], what)
  import tensorflow as tf  # pylint: disable=g-import-not-at-top  (slow)
  bucket = f'{scheme}://{rest.split("/", 1)[0]}'
  try:
    if not _bounded(lambda: tf.io.gfile.exists(bucket), what):
      raise RemotePathError(f'{what}: no such bucket {bucket}.')
    if must_exist and not _bounded(lambda: tf.io.gfile.exists(path), what):
      raise RemotePathError(f'{what}: no such object in {bucket}.')
  except tf.errors.OpError as e:
    raise RemotePathError(f'{what}: {describe(e)}') from None
