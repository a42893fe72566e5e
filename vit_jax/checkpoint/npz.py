"""Published ViT checkpoints (.npz) <-> Flax params, and fine-tuning init.

The published files (original ViT release, AugReg, hybrids, MLP-Mixer) store
a flat mapping from `/`-joined parameter paths to arrays. Three conversions
separate that layout from the module tree of `models_vit.py` (Mixer files,
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
import collections
import io
import os
import re
import zipfile
from typing import Any, Dict, List, Optional, Sequence, Tuple

import flax.traverse_util
import numpy as np
import scipy.ndimage

from vit_jax import atomic_file
from vit_jax import checkpoint_bigvision
from vit_jax import checkpoint_common
from vit_jax import checkpoint_torch
from vit_jax import checkpoint_torch_mixer
from vit_jax import hub
from vit_jax import models_vit
from vit_jax.checkpoint_common import CheckpointMismatchError
from vit_jax.checkpoint_common import has_stacked_blocks
from vit_jax.checkpoint_common import stack_blocks
from vit_jax.checkpoint_common import unstack_blocks

Params = Dict[str, Any]

# Published (position-numbered) name -> module (per-type numbered) name.
_BLOCK_CHILDREN = {
    'LayerNorm_0': 'LayerNorm_0',
    'MultiHeadDotProductAttention_1': 'MultiHeadDotProductAttention_0',
    'LayerNorm_2': 'LayerNorm_1',
    'MlpBlock_3': 'MlpBlock_0',
}
_open = checkpoint_common.open_file  # Local paths or URLs.
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
  (`checkpoint_bigvision`); `checkpoint_bigvision.model_config` gives the
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
  if checkpoint_bigvision.is_big_vision(flat):
    flat = checkpoint_bigvision.to_vit_jax(flat)
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


# A Mixer's first token-mixing kernel: [tokens, tokens_mlp_dim].
_MIXER_TOKENS = ('MixerBlock_0', 'token_mixing', 'Dense_0', 'kernel')


def mixer_tokens(params: Params) -> Optional[int]:
  """The token count a Mixer's params are made for; None if not a Mixer.

  Leaves may be arrays, shape structs or shapes (`npz_shapes`).
  """
  kernel = checkpoint_common.subtree(params, _MIXER_TOKENS[:-1]).get(
      _MIXER_TOKENS[-1])
  return None if kernel is None else tuple(getattr(kernel, 'shape',
                                                   kernel))[-2]


def check_token_count(checkpoint_params: Params, model_params: Params,
                      path: str, model_config=None) -> None:
  """Refuses a Mixer checkpoint made for another number of tokens.

  A Mixer's token-mixing weights are [tokens, tokens_mlp_dim]: unlike ViT
  position embeddings they cannot be resized to another token count (the
  original does not try either), so fine-tuning must keep the image size.
  Not a Mixer (or an unrolled model against a scanned one): no check.
  """
  old, new = mixer_tokens(checkpoint_params), mixer_tokens(model_params)
  if old is None or new is None or old == new:
    return
  hint = ''
  side = int(round(np.sqrt(old)))
  if model_config is not None and side * side == old:
    ph, pw = models_vit._size(model_config['patches'])  # pylint: disable=protected-access
    hint = f' ({side * ph}x{side * pw} px with {ph}x{pw} patches)'
  raise CheckpointMismatchError(
      f'Checkpoint {path!r} is a Mixer for {old} tokens (patches per image), '
      f'but the model has {new} tokens at this image size. Mixer '
      'token-mixing weights are tied to the token count and cannot be '
      'resized: fine-tune at the image size the checkpoint was trained '
      f'at{hint}.')


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


# timm / transformers ViTs: checkpoint_torch.py holds the key tables; timm's
# Mixers: checkpoint_torch_mixer.py. A file's keys say which it is.


def _torch_module(path: str):
  shapes = checkpoint_torch.read_shapes(path)
  return (checkpoint_torch_mixer if checkpoint_torch_mixer.is_mixer(shapes)
          else checkpoint_torch), shapes


def load_safetensors(path: str, model_config=None) -> Params:
  """Params of a timm or transformers ViT (or a timm Mixer) `.safetensors`
  file for `models.create(model_config, N)`; without model_config, that of
  `safetensors_model_config(path)`."""
  module, _ = _torch_module(path)
  if module is checkpoint_torch_mixer:
    return module.load(path, checkpoint_torch.read_tensors(path), model_config)
  return module.load(path, model_config)


def safetensors_model_config(path: str):
  """The model config a `.safetensors` file describes (its shapes and the
  library's config.json beside it)."""
  module, shapes = _torch_module(path)
  if module is checkpoint_torch_mixer:
    return module.model_config(path, shapes)
  return module.model_config(path)


def check_safetensors(path: str, model_config) -> None:
  """Raises the key and architecture errors `load_safetensors(path,
  model_config)` would, from the file's header (the weights are not read)."""
  module, shapes = _torch_module(path)
  if module is checkpoint_torch_mixer:
    return module.check(path, shapes, model_config)
  return module.check(path, model_config)


def save_safetensors(path: str, params: Params, model_config,
                     layout: str = 'timm') -> None:
  """Writes params as a timm (`layout='timm'`) or transformers
  (`'transformers'`) state dict, with that library's config.json beside."""
  if 'num_blocks' in model_config:
    if layout != 'timm':
      raise ValueError("Mixers have a timm layout only: layout='timm'.")
    return checkpoint_torch_mixer.save(path, params, model_config)
  return checkpoint_torch.save(path, params, model_config, layout)


def is_safetensors(path: str) -> bool:
  """Whether `path` (or hub name: its default file is model.safetensors)
  names a .safetensors file."""
  if hub.is_hub_name(path):
    return hub.is_safetensors(path)
  return path.endswith('.safetensors')


def load_params(path: str, model_config=None) -> Params:
  """Params from a published .npz, or a timm / transformers .safetensors
  (checked against `model_config`), by the file's extension; `path` may be
  a hub name (hf-hub:ORG/NAME[@REVISION][/FILE])."""
  if is_safetensors(path):
    return load_safetensors(path, model_config)
  return load_npz(hub.resolve(path))


def _square_grid(num_tokens: int, what: str) -> Tuple[int, int]:
  side = int(round(np.sqrt(num_tokens)))
  if side * side != num_tokens:
    raise ValueError(f'{what} has {num_tokens} patch tokens, not a square '
                     'grid; pass its grid size (rows, cols) explicitly.')
  return side, side


def interpolate_posemb(posemb: np.ndarray, num_tokens: int, *,
                       num_prefix_tokens: int,
                       old_grid: Optional[Sequence[int]] = None,
                       new_grid: Optional[Sequence[int]] = None) -> np.ndarray:
  """Resizes [1, prefix + rows*cols, D] position embeddings to `num_tokens`.

  The prefix (class token) embeddings are kept apart; the patch embeddings are
  laid out on their 2-D grid and resized bilinearly (scipy.ndimage.zoom,
  order=1, as the original implementation). Grids default to square.
  """
  posemb = np.asarray(posemb)
  prefix, grid = posemb[:, :num_prefix_tokens], posemb[0, num_prefix_tokens:]
  old_grid = tuple(old_grid or _square_grid(len(grid), 'The checkpoint'))
  new_grid = tuple(new_grid or _square_grid(num_tokens - num_prefix_tokens,
                                            'The model'))
  if old_grid[0] * old_grid[1] != len(grid):
    raise ValueError(f'old_grid={old_grid} does not hold {len(grid)} tokens.')
  if new_grid[0] * new_grid[1] != num_tokens - num_prefix_tokens:
    raise ValueError(f'new_grid={new_grid} does not hold '
                     f'{num_tokens - num_prefix_tokens} tokens.')
  grid = grid.reshape(old_grid[0], old_grid[1], -1)
  zoom = (new_grid[0] / old_grid[0], new_grid[1] / old_grid[1], 1)
  grid = scipy.ndimage.zoom(grid, zoom, order=1)
  return np.concatenate([prefix, grid.reshape(1, -1, grid.shape[-1])], axis=1)


_MAX_PROBLEMS = 20  # Lines of a mismatch report.


def _grouped(what: str, keys) -> List[str]:
  """One line per module (first two path parts), so a missing block is one."""
  groups = collections.defaultdict(list)
  for key in keys:
    groups['/'.join(key[:2])].append('/'.join(key))
  natural = lambda s: [int(t) if t.isdigit() else t
                       for t in re.split(r'(\d+)', s)]
  return [f'  {what}: {names[0]}' if len(names) == 1 else
          f'  {what}: {group}/... ({len(names)} arrays)'
          for group, names in sorted(groups.items(),
                                     key=lambda g: natural(g[0]))]


def fit_params(params: Params, expected: Params, path: str,
               model_name: Optional[str] = None) -> Params:
  """`params` with the keys, shapes and dtypes of `expected` (or an error).

  Shapes that differ only by singleton dimensions are reshaped. Anything else
  raises CheckpointMismatchError listing the missing, unexpected and
  differently shaped keys (a whole missing block as one line).
  """
  got = flax.traverse_util.flatten_dict(dict(params))
  want = flax.traverse_util.flatten_dict(dict(expected))
  problems = _grouped('missing from the checkpoint',
                      [k for k in want if k not in got])
  problems += _grouped('not in the model', [k for k in got if k not in want])
  out = {}
  for k in [k for k in want if k in got]:
    old, new = np.asarray(got[k]), want[k]
    if old.shape != new.shape:
      if _squeezed(old.shape) != _squeezed(new.shape):
        problems.append(f'  shape mismatch: {"/".join(k)} checkpoint '
                        f'{old.shape} vs model {tuple(new.shape)}')
        continue
      old = old.reshape(new.shape)
    out[k] = old.astype(new.dtype)
  if problems:
    if len(problems) > _MAX_PROBLEMS:
      problems[_MAX_PROBLEMS:] = [
          f'  ... and {len(problems) - _MAX_PROBLEMS} more']
    raise CheckpointMismatchError(
        f'Checkpoint {path!r} does not fit the model '
        f'({model_name or "custom config"}):\n' + '\n'.join(problems) +
        '\nCheck that the model name/config matches the checkpoint.')
  return flax.traverse_util.unflatten_dict(out)


def load_pretrained(*, pretrained_path: str, init_params: Params,
                    model_config, grid_size: Optional[Sequence[int]] = None,
                    pretrained_grid_size: Optional[Sequence[int]] = None
                    ) -> Params:
  """Initialises fine-tuning from a published checkpoint.

  Args:
    pretrained_path: the .npz (or timm / transformers .safetensors, or hub
      name hf-hub:ORG/NAME[@REVISION][/FILE]) to read.
    init_params: freshly initialised params of the fine-tuning model; they
      give the head (new class count) and the expected keys and shapes.
    model_config: the fine-tuning model's config (`classifier`,
      `representation_size`).
    grid_size: the model's patch grid (rows, cols) when it is not square
      (`models.token_grid` computes it).
    pretrained_grid_size: the checkpoint's grid, when it is not square.

  Returns:
    Params shaped like `init_params`: the pre-logits layer is dropped when the
    new config has none, the head is `init_params`'s, and the position
    embeddings are resized in 2-D when the token grid changed.

  Raises:
    CheckpointMismatchError: for a Mixer made for another token count
      (`check_token_count`), or listing every missing, unexpected or
      differently shaped key that remains after those adaptations.
  """
  stacked = has_stacked_blocks(init_params)
  init_params = unstack_blocks(dict(init_params))
  loaded = load_params(pretrained_path, model_config)
  check_token_count(loaded, init_params, pretrained_path, model_config)
  restored = flax.traverse_util.flatten_dict(loaded)
  expected = flax.traverse_util.flatten_dict(dict(init_params))

  if model_config.get('representation_size') is None:
    restored = {k: v for k, v in restored.items() if k[0] != 'pre_logits'}
  restored = {k: v for k, v in restored.items() if k[0] != 'head'}
  restored.update({k: v for k, v in expected.items() if k[0] == 'head'})

  key = ('Transformer', 'posembed_input', 'pos_embedding')
  if key in restored and key in expected:
    old, new = restored[key], expected[key]
    if old.shape != new.shape and old.shape[2:] == new.shape[2:]:
      restored[key] = interpolate_posemb(
          old, new.shape[1],
          num_prefix_tokens=int(model_config.get('classifier') == 'token'),
          old_grid=pretrained_grid_size, new_grid=grid_size)

  params = fit_params(flax.traverse_util.unflatten_dict(restored),
                      init_params, pretrained_path,
                      model_config.get('model_name'))
  return stack_blocks(params) if stacked else params
