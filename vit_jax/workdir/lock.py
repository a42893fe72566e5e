"""One run per workdir: WORKDIR/run.lock, held by process 0 of a run.

The lock file says who holds it (host, pid, start time, command). A second
run on the same workdir is refused before it writes anything. A lock whose
holder is gone (kill -9, a crash, a reboot: same host, and that pid no
longer runs or is another process now) is taken over with a one-line note.

Local and NFS workdirs: the lock is created atomically (hard link of a
complete file, which fails if the name exists), so of two runs started
together exactly one gets it. Remote workdirs (gs://, s3://): the check and
the write are two requests, so two runs started within that gap can both
pass; a lock left by a lost machine of another host cannot be judged stale
and is reported with the command to remove it.
"""
import contextlib
import datetime
import json
import os
import socket
import sys
import uuid

from absl import logging
from etils import epath
import jax
from jax.experimental import multihost_utils
import numpy as np

from vit_jax.workdir import layout

LOCK_NAME = layout.LOCK


class WorkdirInUse(ValueError):
  """Another live run holds the workdir."""


def _start_ticks(pid: int):
  """The process's start time since boot (Linux), which tells a live run
  from another process that was given the same pid later; None elsewhere."""
  try:
    with open(f'/proc/{pid}/stat') as f:
      return int(f.read().rsplit(')', 1)[1].split()[19])
  except (OSError, IndexError, ValueError):
    return None


def _boot_id():
  try:
    with open('/proc/sys/kernel/random/boot_id') as f:
      return f.read().strip()
  except OSError:
    return None


def _me() -> dict:
  pid = os.getpid()
  return dict(host=socket.gethostname(), pid=pid, boot_id=_boot_id(),
              start_ticks=_start_ticks(pid),
              started=datetime.datetime.now().astimezone().isoformat(
                  timespec='seconds'),
              command=' '.join(sys.argv))


def _alive(holder: dict) -> bool:
  """Whether the holder may still run: always True for another host."""
  if holder.get('host') != socket.gethostname():
    return True
  if holder.get('boot_id') and holder['boot_id'] != _boot_id():
    return False  # This host rebooted since.
  pid = holder.get('pid')
  if not isinstance(pid, int):
    return False
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    pass  # Another user's process: it exists.
  ticks = holder.get('start_ticks')
  return ticks is None or _start_ticks(pid) in (None, ticks)


def _describe(holder: dict) -> str:
  return (f"pid {holder.get('pid')} on host {holder.get('host')} (started "
          f"{holder.get('started')}: {holder.get('command')})")


def _read(path: epath.Path) -> dict:
  try:
    return json.loads(path.read_text())
  except (OSError, ValueError):
    return {}  # Unreadable: written by a run killed mid-write.


def _create(path: epath.Path, text: str) -> bool:
  """Writes `path` if it does not exist; False if it does."""
  if '://' in os.fspath(path):  # Remote: check, then write (not atomic).
    if path.exists():
      return False
    path.write_text(text)
    return True
  tmp = path.parent / f'.{path.name}.{uuid.uuid4().hex}'
  tmp.write_text(text)
  try:
    os.link(tmp, path)  # Fails if `path` exists, whatever its state.
    return True
  except FileExistsError:
    return False
  finally:
    tmp.unlink()


def acquire(workdir: str) -> dict:
  """Takes the workdir's lock; returns what it wrote.

  Raises:
    WorkdirInUse: a live run holds it.
  """
  path = epath.Path(workdir) / LOCK_NAME
  me = _me()
  text = json.dumps(me, indent=1)
  for _ in range(3):  # A stale lock moved aside, then create again.
    if _create(path, text):
      return me
    holder = _read(path)
    if holder and _alive(holder):
      raise WorkdirInUse(
          f'The workdir {workdir} is in use by {_describe(holder)}. Wait for '
          'that run, stop it, or pass another --workdir; if it is surely '
          f'gone (its machine lost), delete {path}.')
    # Moving the stale file aside is atomic: of two runs doing it at once,
    # one finds it gone and goes back to creating.
    stale = path.parent / f'.{LOCK_NAME}.stale-{uuid.uuid4().hex}'
    try:
      path.rename(stale)
    except OSError:  # Gone: another run moved it first.
      continue
    if _read(stale) != holder:  # Someone else's fresh lock: put it back.
      stale.rename(path)
      continue
    stale.unlink()
    note = (f'Taking over the lock of {_describe(holder)}, which no longer '
            'runs.' if holder else f'Taking over an unreadable lock {path}.')
    logging.warning(note)
  raise WorkdirInUse(f'Could not take the lock {path}: other runs are '
                     'starting in the same workdir.')


def release(workdir: str, mine: dict) -> None:
  """Removes the lock if it is still the one `acquire` wrote."""
  path = epath.Path(workdir) / LOCK_NAME
  if _read(path) == mine:
    path.unlink()


@contextlib.contextmanager
def hold(workdir: str):
  """The lock for the life of the block, taken by process 0; every process
  raises if process 0 could not take it (and none starts working)."""
  error, mine = None, None
  if jax.process_index() == 0:
    try:
      mine = acquire(workdir)
    except WorkdirInUse as e:
      error = e
  if jax.process_count() > 1:
    failed = multihost_utils.broadcast_one_to_all(np.int32(error is not None))
    if failed and error is None:
      error = WorkdirInUse(f'Process 0 found the workdir {workdir} in use '
                           '(its message says by whom).')
  if error is not None:
    raise error
  try:
    yield
  finally:
    if mine is not None:
      release(workdir, mine)
