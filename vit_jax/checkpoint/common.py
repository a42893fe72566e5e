"""What every checkpoint layout shares: files, the mismatch error, blocks.

`open_file` opens a checkpoint (or the config.json beside it) on a local
disk or at a URL (gs://, through tf.io.gfile).

A model built with `scan=True` keeps its blocks as one scanned subtree whose
leaves have a leading layer axis (`Transformer/encoderblocks/block`, Mixer:
`MixerBlocks/block`); every file layout (the published .npz, timm and
transformers state dicts) stores them per block (`encoderblock_N`,
`MixerBlock_N`). `stack_blocks` and `unstack_blocks` convert between the two.
"""
import os
import re
from typing import Any, Dict, Tuple

import jax
import numpy as np

from vit_jax.models import mixer
from vit_jax.models import vit

Params = Dict[str, Any]


class CheckpointMismatchError(ValueError):
  """A checkpoint's keys or shapes do not fit the model."""


def open_file(path: str, mode: str):
  """Local files with `open`; URLs such as gs:// through tf.io.gfile."""
  if '://' in os.fspath(path):
    import tensorflow as tf  # pylint: disable=g-import-not-at-top  (slow)
    return tf.io.gfile.GFile(path, mode)
  return open(path, mode)


# Where each model family keeps its blocks: (the module holding them, the
# name of block N without N, the scanned subtree `<scan>/<block>`).
_BLOCK_STACKS = (
    (('Transformer',), 'encoderblock_', vit.SCANNED_BLOCKS),
    ((), 'MixerBlock_', mixer.SCANNED_BLOCKS),
)


def subtree(params: Params, path: Tuple[str, ...]) -> Params:
  """The subtree at `path`, or {} where there is none."""
  for name in path:
    params = params.get(name, {})
  return params


def _with_subtree(params: Params, path: Tuple[str, ...], new) -> Params:
  if not path:
    return new
  return {**params, path[0]: _with_subtree(params[path[0]], path[1:], new)}


def has_stacked_blocks(params: Params) -> bool:
  """Whether `params` are those of a `scan=True` model (see stack_blocks)."""
  return any(scan in subtree(params, parent)
             for parent, _, (scan, _) in _BLOCK_STACKS)


def stack_blocks(params: Params) -> Params:
  """Per-block `Transformer/encoderblock_N` (`MixerBlock_N`) -> the stacked
  tree of a `scan` model (each leaf gains a leading layer axis, block 0
  first)."""
  for parent, prefix, (scan, block) in _BLOCK_STACKS:
    holder = dict(subtree(params, parent))
    num_layers = sum(1 for name in holder
                     if re.fullmatch(re.escape(prefix) + r'\d+', name))
    if num_layers:
      blocks = [holder.pop(f'{prefix}{i}') for i in range(num_layers)]
      holder[scan] = {block: jax.tree.map(lambda *leaves: np.stack(leaves),
                                          *blocks)}
      return _with_subtree(params, parent, holder)
  return params


def unstack_blocks(params: Params) -> Params:
  """The inverse of `stack_blocks`; other trees are returned unchanged."""
  for parent, prefix, (scan, block) in _BLOCK_STACKS:
    holder = dict(subtree(params, parent))
    if scan in holder:
      stacked = holder.pop(scan)[block]
      num_layers = len(jax.tree.leaves(stacked)[0])
      holder.update({f'{prefix}{i}': jax.tree.map(lambda x, i=i: x[i],
                                                  stacked)
                     for i in range(num_layers)})
      return _with_subtree(params, parent, holder)
  return params
