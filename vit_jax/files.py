"""Reading and writing files, local or remote (gs://, s3://, ...).

`write_atomically` is the one way the package writes a file that must never
be seen half-written (checkpoints, config.json, metrics.jsonl rewrites): a
local file is written beside its target, flushed to disk and renamed into
place, so a kill or a crash leaves the old file or the new one, never a torn
one. Object stores have no rename; there a single upload is already atomic.
"""
import os
from typing import Union

PathLike = Union[str, os.PathLike]


def open_file(path: PathLike, mode: str):
  """Local files with `open`; URLs such as gs:// through tf.io.gfile."""
  path = os.fspath(path)
  if '://' in path:
    import tensorflow as tf  # pylint: disable=g-import-not-at-top  (slow)
    return tf.io.gfile.GFile(path, mode)
  return open(path, mode)


def write_atomically(path: PathLike, data: Union[bytes, str]) -> None:
  """Writes `data` (bytes, or text as UTF-8) so that `path` is never torn."""
  path = os.fspath(path)
  if isinstance(data, str):
    data = data.encode('utf-8')
  if '://' in path:
    with open_file(path, 'wb') as f:
      f.write(data)
    return
  tmp = f'{path}.tmp-{os.getpid()}'
  with open(tmp, 'wb') as f:
    f.write(data)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)
