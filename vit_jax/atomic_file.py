"""`write(path, data)`: the one way this package writes a file whole.

A kill, a full disk or a lost machine never leaves a half-written file under
the final name: the data goes to a temporary file beside it, is flushed to
the storage (fsync, local paths), and only then renamed over the target, an
atomic step on a local or NFS file system. Remote paths (gs://, s3://; any
path etils.epath reads) take the same route through epath, where the rename
is the object store's copy-and-delete: readers see the old or the new
object, never a partial one.
"""
import os
from typing import Union
import uuid

from etils import epath


def write(path: Union[str, os.PathLike], data: Union[str, bytes]) -> None:
  """Writes `data` (text as UTF-8, or bytes) to `path` atomically."""
  path = epath.Path(path)
  # A name of its own, so that two writers never share a temporary file.
  tmp = path.parent / f'.{path.name}.tmp-{uuid.uuid4().hex}'
  raw = data.encode() if isinstance(data, str) else data
  try:
    if '://' in os.fspath(path):
      tmp.write_bytes(raw)
    else:
      with open(tmp, 'wb') as f:
        f.write(raw)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)
  except BaseException:
    if tmp.exists():
      tmp.unlink()
    raise
  if '://' not in os.fspath(path):
    _sync_directory(path.parent)


def _sync_directory(directory: epath.Path) -> None:
  """Makes the rename itself durable (POSIX; a no-op where unsupported)."""
  try:
    fd = os.open(directory, os.O_RDONLY)
  except OSError:
    return
  try:
    os.fsync(fd)
  except OSError:
    pass
  finally:
    os.close(fd)
