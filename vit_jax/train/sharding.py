"""Device mesh from the config, and how arrays are laid out on it.

`config.mesh` lists (axis name, size) pairs, e.g. (('data', -1), ('fsdp', 1));
one size may be -1 (all remaining devices). The batch is split over every
axis (each device sees its own examples). Parameters and optimizer state are
sharded over 'fsdp' in big_vision's FSDP style: each array is split along its
largest dimension that the axis size divides, and replicated otherwise; with
fsdp=1 that is plain data parallelism.
"""
import collections
from typing import Iterable, Iterator, Sequence, Tuple

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P


def mesh_shape(mesh_config: Sequence[Tuple[str, int]],
               num_devices: int) -> Tuple[Tuple[str, ...], Tuple[int, ...]]:
  """Resolves the -1 entry; a clear error when sizes don't fit the devices."""
  names = tuple(name for name, _ in mesh_config)
  sizes = [int(size) for _, size in mesh_config]
  if sizes.count(-1) > 1 or any(s == 0 or s < -1 for s in sizes):
    raise ValueError(f'config.mesh={tuple(mesh_config)}: give positive sizes '
                     'and at most one -1.')
  known = int(np.prod([s for s in sizes if s != -1]))
  if -1 in sizes:
    if num_devices % known:
      raise ValueError(f'config.mesh={tuple(mesh_config)} does not divide '
                       f'the {num_devices} devices.')
    sizes[sizes.index(-1)] = num_devices // known
  if int(np.prod(sizes)) != num_devices:
    raise ValueError(f'config.mesh={tuple(mesh_config)} needs '
                     f'{int(np.prod(sizes))} devices, but there are '
                     f'{num_devices}.')
  return names, tuple(sizes)


def check_split(config, num_devices, num_processes):
  """The config's batches, accumulation micro-batches and mesh split over
  `num_devices`; a ValueError that says what to change where they do not."""
  for name in ('batch_size', 'eval_batch_size'):
    value = config[name]
    if value % num_devices or value % num_processes:
      raise ValueError(
          f'config.{name}={value} does not split evenly over {num_devices} '
          f'devices in {num_processes} process(es); use a multiple of '
          f'{num_devices}.')
  micro, accum = divmod(config.batch_size, config.accum_steps)
  if accum or micro % num_devices:
    raise ValueError(
        f'config.batch_size={config.batch_size} with accum_steps='
        f'{config.accum_steps} gives micro-batches that do not split over '
        f'{num_devices} devices; batch_size must be a multiple of accum_steps'
        f' x {num_devices}.')
  mesh_shape(config.mesh, num_devices)


def make_mesh(mesh_config, devices=None) -> Mesh:
  devices = jax.devices() if devices is None else devices
  names, sizes = mesh_shape(mesh_config, len(devices))
  return Mesh(np.asarray(devices).reshape(sizes), names)


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (batch) dimension split over all mesh axes."""
  return NamedSharding(mesh, P(mesh.axis_names))


# The trainer's (and its benchmark's) train batches put on the devices ahead
# of the step that uses them.
DEVICE_PREFETCH = 2


def on_mesh(mesh: Mesh, batches: Iterable, global_batch: int,
            ahead: int = 0) -> Iterator:
  """Puts each process-local batch on the mesh as one global array.

  With `ahead` > 0 the transfers of that many further batches are started
  before a batch is handed out, so on an accelerator they overlap the
  running step instead of waiting for it.
  """
  sh = batch_sharding(mesh)
  queue = collections.deque()
  for batch in batches:
    queue.append(jax.tree.map(
        lambda x: jax.make_array_from_process_local_data(
            sh, x, (global_batch,) + x.shape[1:]), batch))
    if len(queue) > ahead:
      yield queue.popleft()
  yield from queue


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def fsdp_spec(shape: Sequence[int], fsdp_size: int) -> P:
  """Shards the largest dimension divisible by `fsdp_size` over 'fsdp'."""
  if fsdp_size <= 1:
    return P()
  for dim in sorted(range(len(shape)), key=lambda d: -shape[d]):
    if shape[dim] % fsdp_size == 0:
      spec = [None] * len(shape)
      spec[dim] = 'fsdp'
      return P(*spec)
  return P()


def state_shardings(mesh: Mesh, abstract_state):
  """A NamedSharding for every leaf of a (shape-only) train state."""
  fsdp = dict(zip(mesh.axis_names, mesh.devices.shape)).get('fsdp', 1)
  return jax.tree.map(
      lambda x: NamedSharding(mesh, fsdp_spec(x.shape, fsdp)), abstract_state)
