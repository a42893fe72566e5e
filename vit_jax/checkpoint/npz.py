"""The published checkpoint layout (.npz) <-> Flax params.

The published files (original ViT release, AugReg, hybrids, MLP-Mixer) store
a flat mapping from `/`-joined parameter paths to arrays. Three conversions
separate that layout from the module tree of `models/vit.py` (Mixer files,
written by linen, need only 2 and 3), all made here:

1. Block children. The files were written by pre-linen Flax, which numbered
   the children of `Transformer/encoderblock_N` by their position in the block
   (`LayerNorm_0, MultiHeadDotProductAttention_1, LayerNorm_2, MlpBlock_3`);
   linen numbers them per type (`LayerNorm_0, MultiHeadDotProductAttention_0,
   LayerNorm_1, MlpBlock_0`). `_BLOCK_CHILDREN` is the one table of both
   names; files already in linen naming load as they are.
2. Squeezable shapes. Some files carry extra singleton dimensions (GroupNorm
   scale/bias as [1, 1, 1, C], for one) or lack the leading ones. Each leaf is
   brought to the rank its kind has (`_leaf_rank`) by dropping leading, then
   trailing, size-1 dimensions, or by adding leading ones.
3. Stacked blocks. A model built with `scan=True` keeps its blocks as one
   `Transformer/encoderblocks/block` (Mixer: `MixerBlocks/block`) subtree
   whose leaves have a leading layer axis; `to_published` (so `save_npz`)
   and `load_pretrained` convert between that and the per-block
   `encoderblock_N` (`MixerBlock_N`) of the files (`unstack_blocks`,
   `stack_blocks`).
4. Nothing else: kernels keep their layout ([in, out], [kh, kw, in, out],
   [hidden, heads, head_dim] for query/key/value, [heads, head_dim, hidden]
   for out).

LiT files (`img/...`, `txt/...`, `t`) load through the same `load_npz`: the
renaming applies to every `encoderblock_N` (image tower and text
transformer), and embedding tables and BERT's 2-D attention kernels keep
their rank.
"""
import io
import os
import re
import zipfile
from typing import Any, Dict, Tuple

import flax.traverse_util
import numpy as np

from vit_jax import atomic_file
from vit_jax.checkpoint import big_vision
from vit_jax.checkpoint import common
from vit_jax.checkpoint.common import CheckpointMismatchError
from vit_jax.checkpoint.common import unstack_blocks

Params = Dict[str, Any]

# Published (position-numbered) name -> module (per-type numbered) name.
_BLOCK_CHILDREN = {
    'LayerNorm_0': 'LayerNorm_0',
    'MultiHeadDotProductAttention_1': 'MultiHeadDotProductAttention_0',
    'LayerNorm_2': 'LayerNorm_1',
    'MlpBlock_3': 'MlpBlock_0',
}
_open = common.open_file  # Local paths or URLs.
_BLOCK_CHILDREN_PUBLISHED = {v: k for k, v in _BLOCK_CHILDREN.items()}
_BLOCK = re.compile(r'encoderblock_\d+$')
_CONV = re.compile(r'(embedding|stem|conv_root|conv\d+|conv_proj)$')


def _rename_block_children(path: Tuple[str, ...], table) -> Tuple[str, ...]:
  out = list(path)
  for i in range(1, len(path)):
    if _BLOCK.match(path[i - 1]):
      out[i] = table.get(path[i], path[i])
  return tuple(out)


def _leaf_rank(path: Tuple[str, ...]) -> int:
  """The rank a parameter has in the module, from its path alone."""
  leaf, parent = path[-1], path[-2] if len(path) > 1 else ''
  if leaf in ('cls', 'pos_embedding', 'probe'):
    return 3
  if leaf == 'embedding':  # Embedding tables (LiT text towers).
    return 2
  if 'attention_layer' in path:  # BERT (LiT): 2-D kernels, 1-D biases.
    return 2 if leaf == 'kernel' else 1
  if parent in ('query', 'key', 'value'):
    return 3 if leaf == 'kernel' else 2
  if parent == 'out':
    return 3 if leaf == 'kernel' else 1
  if leaf == 'kernel':
    return 4 if _CONV.match(parent) else 2
  return 1  # biases, LayerNorm/GroupNorm scales.


def _to_rank(array: np.ndarray, rank: int) -> np.ndarray:
  shape = list(array.shape)
  while len(shape) > rank and shape[0] == 1:
    shape.pop(0)
  while len(shape) > rank and shape[-1] == 1:
    shape.pop()
  if len(shape) > rank:
    raise CheckpointMismatchError(
        f'Array of shape {array.shape} cannot be brought to rank {rank}.')
  return array.reshape([1] * (rank - len(shape)) + shape)


def _squeezed(shape) -> Tuple[int, ...]:
  return tuple(d for d in shape if d != 1)


def _check_exists(path: str) -> None:
  if '://' not in path and not os.path.isfile(path):
    raise FileNotFoundError(f'Checkpoint file {path!r} does not exist.')


def _unreadable(path: str, e: Exception) -> ValueError:
  return ValueError(f'Checkpoint file {path!r} is not a readable .npz '
                    f'archive ({type(e).__name__}: {e}); it may be truncated'
                    ' or corrupt. Re-download or re-export it.')


def load_npz(path: str) -> Params:
  """Reads a published-layout .npz into a nested dict of numpy arrays.

  big_vision ViT files are converted to this layout on the way
  (`big_vision.py`); `big_vision.model_config` gives the
  model they fit.
  """
  _check_exists(path)
  try:
    with _open(path, 'rb') as f:
      with np.load(io.BytesIO(f.read()), allow_pickle=False) as npz:
        flat = {k: npz[k] for k in npz.files}
  except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
    raise _unreadable(path, e) from e
  if not flat:
    raise ValueError(f'Checkpoint file {path!r} holds no arrays.')
  if big_vision.is_big_vision(flat):
    flat = big_vision.to_vit_jax(flat)
  params = {}
  for key, value in flat.items():
    path_ = _rename_block_children(tuple(key.split('/')), _BLOCK_CHILDREN)
    params[path_] = _to_rank(value, _leaf_rank(path_))
  return flax.traverse_util.unflatten_dict(params)


# The original release called this `load`.
load = load_npz


def npz_shapes(path: str) -> Params:
  """The tree of shapes (as stored) `load_npz(path)` would return, read from
  the array headers alone.

  Reads the zip directory and each array's header, not the data: a cheap
  up-front check (before anything compiles) that a checkpoint, possibly
  remote and large, is there and readable, and of what it holds.
  """
  _check_exists(path)
  shapes = {}
  try:
    with _open(path, 'rb') as f, zipfile.ZipFile(f) as archive:
      for name in archive.namelist():
        with archive.open(name) as member:
          version = np.lib.format.read_magic(member)
          read_header = (np.lib.format.read_array_header_1_0
                         if version == (1, 0) else
                         np.lib.format.read_array_header_2_0)
          key = tuple(name.removesuffix('.npy').split('/'))
          shapes[_rename_block_children(key, _BLOCK_CHILDREN)] = tuple(
              read_header(member)[0])
  except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
    raise _unreadable(path, e) from e
  if not shapes:
    raise ValueError(f'Checkpoint file {path!r} holds no arrays.')
  return flax.traverse_util.unflatten_dict(shapes)


def to_published(params: Params) -> Dict[str, Any]:
  """Flat {published key: leaf} for a module params tree (leaves as given)."""
  flat = flax.traverse_util.flatten_dict(unstack_blocks(dict(params)))
  return {'/'.join(_rename_block_children(k, _BLOCK_CHILDREN_PUBLISHED)): v
          for k, v in flat.items()}


def save_npz(path: str, params: Params) -> None:
  """Writes params in the published layout (names and shapes).

  The file appears complete or not at all (`atomic_file.write`).
  """
  buf = io.BytesIO()
  np.savez(buf, **{k: np.asarray(v) for k, v in to_published(params).items()})
  atomic_file.write(path, buf.getvalue())
