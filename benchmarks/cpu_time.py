"""CPU seconds of a process tree, for the input pipeline benchmarks.

A loader's images per CPU-second, counted over the process and every worker
process it started, is its per-core rate: unlike images/s it hardly moves
when other jobs share the machine. Linux only (/proc); standard library
only, so the scripts import it in any environment (torch's, vit_jax's).
"""
import os
import time


def _stat_fields(pid: int):
  """The fields of /proc/PID/stat after the command name, or None if the
  process is gone."""
  try:
    with open(f'/proc/{pid}/stat') as f:
      return f.read().rsplit(')', 1)[1].split()
  except OSError:
    return None


def tree_cpu_seconds(pid: int = 0) -> float:
  """User + system CPU seconds so far of `pid` (default: this process) and
  all its live descendants (threads included: /proc counts them in their
  process)."""
  root = pid or os.getpid()
  children = {}
  for entry in os.listdir('/proc'):
    if entry.isdigit():
      fields = _stat_fields(int(entry))
      if fields:
        children.setdefault(int(fields[1]), []).append(int(entry))  # ppid.
  ticks, todo = 0, [root]
  while todo:
    current = todo.pop()
    fields = _stat_fields(current)
    if fields:
      ticks += int(fields[11]) + int(fields[12])  # utime, stime.
    todo += children.get(current, [])
  return ticks / os.sysconf('SC_CLK_TCK')


def report(name: str, images: int, seconds: float, cpu_seconds: float) -> str:
  """The line every loader benchmark prints."""
  return (f'{name}: {images / seconds:.1f} images/s, '
          f'{images / cpu_seconds:.1f} images per CPU-second')


def time_batches(name: str, batches, count: int, batch_size: int,
                 warmup: int = 2) -> str:
  """`report` of `count` batches of `batches` after `warmup` untimed ones:
  the one measurement every loader benchmark makes."""
  for _ in range(warmup):
    next(batches)
  start, cpu_start = time.perf_counter(), tree_cpu_seconds()
  for _ in range(count):
    next(batches)
  elapsed = time.perf_counter() - start
  return report(name, count * batch_size, elapsed,
                tree_cpu_seconds() - cpu_start)
