"""Random access to the records of TFRecord files, by record index.

A TFRecord file is a run of records, each [uint64 length][uint32 CRC of the
length][data][uint32 CRC of the data], with no index: reading record i means
reading the headers of records 0..i-1 first. This module scans a file's
headers once (a seek and a 12-byte read per record, the data is skipped),
keeps the (offset, length) of every record's data, and caches that index on
disk keyed by the file's path, size and modification time, so that later
runs start at once. A read is then one seek and one read per record, and
memory holds the index (16 bytes a record) and the records asked for, never
the files.

Files are opened with `tf.io.gfile`, so GCS and other TF file systems work.
"""
import hashlib
import os
import sys
import time
from typing import Callable, List, Optional, Sequence

import numpy as np
import tensorflow as tf

from vit_jax import progress

_HEADER_BYTES = 12  # uint64 length, uint32 masked CRC32C of the length.
_FOOTER_BYTES = 4  # uint32 masked CRC32C of the data.


def default_cache_dir() -> str:
  """$XDG_CACHE_HOME/vit_jax/tfrecord_index (default ~/.cache/...)."""
  base = os.environ.get('XDG_CACHE_HOME') or os.path.expanduser('~/.cache')
  return os.path.join(base, 'vit_jax', 'tfrecord_index')


def scan_offsets(path: str) -> np.ndarray:
  """int64[n, 2]: (offset, length) of the data of each record of `path`.

  Raises:
    ValueError: if the file ends inside a record (a truncated file).
  """
  size = tf.io.gfile.stat(path).length
  rows = []
  with tf.io.gfile.GFile(path, 'rb') as f:
    offset = 0
    while offset < size:
      f.seek(offset)
      header = f.read(_HEADER_BYTES)
      if len(header) < _HEADER_BYTES:
        break
      length = int.from_bytes(header[:8], 'little')
      rows.append((offset + _HEADER_BYTES, length))
      offset += _HEADER_BYTES + length + _FOOTER_BYTES
  if offset != size:
    raise ValueError(f'{path} is not a complete TFRecord file: a record '
                     f'header points to byte {offset} of {size}. Prepare '
                     'the dataset again.')
  return np.array(rows, np.int64).reshape(-1, 2)


def record_offsets(path: str, cache_dir: Optional[str] = None) -> np.ndarray:
  """`scan_offsets(path)`, cached in `cache_dir` (`default_cache_dir()`).

  The cache file is named by a hash of the path, size and modification
  time, so a rewritten file is scanned again; it is written to a temporary
  name and renamed, so a cache file is never half-written.
  """
  stat = tf.io.gfile.stat(path)
  key = f'{path}|{stat.length}|{stat.mtime_nsec}'.encode()
  cache_dir = cache_dir or default_cache_dir()
  cached = os.path.join(cache_dir, hashlib.sha256(key).hexdigest() + '.npy')
  if os.path.exists(cached):
    return np.load(cached)
  offsets = scan_offsets(path)
  os.makedirs(cache_dir, exist_ok=True)
  temporary = f'{cached}.tmp{os.getpid()}'
  with open(temporary, 'wb') as f:
    np.save(f, offsets)
  os.replace(temporary, cached)
  return offsets


class RecordReader:
  """Records [0, num_records) of a sequence of (file, skip, take) slices.

  Record i is the i-th record of the concatenation of the slices, in order:
  the order in which `tf.data.TFRecordDataset` would read them, which is how
  TFDS numbers the examples of a (sub)split.
  """

  def __init__(self, slices: Sequence[tuple], cache_dir: Optional[str] = None,
               log: Callable[[str], None] = lambda line: print(
                   line, file=sys.stderr, flush=True)):
    """`slices`: (path, skip, take) each; take -1 means to the end."""
    self._paths, self._offsets = [], []
    start = time.perf_counter()
    # Only a first scan of many files is slow: a bar then, on a terminal.
    for path, skip, take in progress.bar(slices, desc='Indexing TFRecord files',
                                         unit='file'):
      offsets = record_offsets(path, cache_dir)[skip:]
      offsets = offsets if take < 0 else offsets[:take]
      if take >= 0 and len(offsets) != take:
        raise ValueError(f'{path} holds {skip + len(offsets)} records; the '
                         f'dataset info expects at least {skip + take}.')
      self._paths.append(path)
      self._offsets.append(offsets)
    seconds = time.perf_counter() - start
    if seconds > 10:
      log(f'Indexed {len(slices)} TFRecord files in {seconds:.0f} s; the '
          f'index is cached in {cache_dir or default_cache_dir()}.')
    self._ends = np.cumsum([len(o) for o in self._offsets])

  @property
  def num_records(self) -> int:
    return int(self._ends[-1]) if len(self._ends) else 0

  def read(self, indices: Sequence[int]) -> List[bytes]:
    """The data of records `indices`, in that order; each file opened once."""
    indices = np.asarray(indices, np.int64)
    if len(indices) and not (0 <= indices.min() and
                             indices.max() < self.num_records):
      raise IndexError(f'Record indices must be in [0, {self.num_records}).')
    files = np.searchsorted(self._ends, indices, side='right')
    local = indices - np.concatenate([[0], self._ends])[files]
    records = [b''] * len(indices)
    for file in np.unique(files):
      where = np.flatnonzero(files == file)
      with tf.io.gfile.GFile(self._paths[file], 'rb') as f:
        for i in where[np.argsort(local[where], kind='stable')]:
          offset, length = self._offsets[file][local[i]]
          f.seek(int(offset))
          records[i] = f.read(int(length))
    return records
