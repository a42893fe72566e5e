"""How many JAX devices the CPU is split into: by default one per core.

XLA:CPU runs one device's program mostly one op at a time, and the small ops
of a ViT step (norms, softmax, GELU, small matmuls) use one core each. Split
into one device per core, the trainer's data parallelism keeps every core
busy with its share of the batch; the results are those of one device up to
the order of float sums in the gradient all-reduce. Measured on the 2-core
development machine: the default job's first 2000 steps took 58-69 s instead
of 90 s, the ViT-Ti/16 benchmark's train step 1.55 s instead of 1.76 s; 4
devices on the 2 cores were no faster than 1 (benchmarks/README.md).

`config.cpu_devices`: 0 picks the most devices, up to the number of cores
this process may use, that the config's batches and mesh split over (in a
single-process run; each process of a multi-process run keeps one unless
told); N > 0 asks for exactly N. An explicit
`XLA_FLAGS=--xla_force_host_platform_device_count=N` is respected when
`cpu_devices` is 0. None of this affects GPU or TPU devices.
"""
import os
from typing import Optional

from absl import logging
import jax

from vit_jax.train import sharding

_XLA_FLAG = 'xla_force_host_platform_device_count'


def usable_cores() -> int:
  """Cores this process may run on: its affinity mask where the OS has one
  (Linux), else all of the machine's (macOS, Windows)."""
  if hasattr(os, 'sched_getaffinity'):
    return len(os.sched_getaffinity(0))
  return os.cpu_count() or 1


def fitting_count(config, cores: int) -> int:
  """The most devices <= `cores` that the batches and `config.mesh` split over.

  1 when none does (the trainer's checks then explain what to change).
  """
  for count in range(cores, 1, -1):
    try:
      sharding.check_split(config, count, num_processes=1)
    except ValueError:
      continue
    return count
  return 1


def configure(config, *, multi_process: bool = False) -> Optional[int]:
  """Sets JAX's CPU device count for `config`; call before JAX's first op.

  Returns the count set, or None where it is left to XLA_FLAGS (or, in a
  multi-process run, to JAX's default of one).
  """
  requested = config.get('cpu_devices', 0)
  if requested < 0:
    raise ValueError(f'config.cpu_devices={requested}: use 0 (one per core) '
                     'or a positive device count.')
  if not requested and (multi_process or
                        _XLA_FLAG in os.environ.get('XLA_FLAGS', '')):
    return None
  count = requested or fitting_count(config, usable_cores())
  # Overrides an XLA_FLAGS device count; must run before JAX starts a backend.
  jax.config.update('jax_num_cpu_devices', count)
  logging.info('CPU split into %d JAX device(s) (config.cpu_devices=%d).',
               count, requested)
  return count
