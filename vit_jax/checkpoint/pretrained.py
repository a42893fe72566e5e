"""Params from any checkpoint file, fitted to a model for fine-tuning.

`load_params` reads a published .npz or a timm / transformers .safetensors;
`load_pretrained` fits a checkpoint to a model's freshly initialised params:
a new head, position embeddings resized in 2-D to the new resolution
(`interpolate_posemb`), stacked blocks for `scan` models, and every key and
shape checked (`fit_params`), with a report of what does not fit.
"""
import collections
import re
from typing import List, Optional, Sequence, Tuple

import flax.traverse_util
import numpy as np
import scipy.ndimage

from vit_jax.checkpoint import common
from vit_jax.checkpoint import hub
from vit_jax.checkpoint import npz
from vit_jax.checkpoint import torch_layouts as checkpoint_torch
from vit_jax.checkpoint import torch_mixer as checkpoint_torch_mixer
from vit_jax.checkpoint import torch_siglip as checkpoint_torch_siglip
from vit_jax.checkpoint.common import CheckpointMismatchError
from vit_jax.checkpoint.common import has_stacked_blocks
from vit_jax.checkpoint.common import stack_blocks
from vit_jax.checkpoint.common import unstack_blocks
from vit_jax.models import vit


# A Mixer's first token-mixing kernel: [tokens, tokens_mlp_dim].
_MIXER_TOKENS = ('MixerBlock_0', 'token_mixing', 'Dense_0', 'kernel')


def mixer_tokens(params: npz.Params) -> Optional[int]:
  """The token count a Mixer's params are made for; None if not a Mixer.

  Leaves may be arrays, shape structs or shapes (`npz_shapes`).
  """
  kernel = common.subtree(params, _MIXER_TOKENS[:-1]).get(
      _MIXER_TOKENS[-1])
  return None if kernel is None else tuple(getattr(kernel, 'shape',
                                                   kernel))[-2]


def check_token_count(checkpoint_params: npz.Params, model_params: npz.Params,
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
    ph, pw = vit._size(model_config['patches'])  # pylint: disable=protected-access
    hint = f' ({side * ph}x{side * pw} px with {ph}x{pw} patches)'
  raise CheckpointMismatchError(
      f'Checkpoint {path!r} is a Mixer for {old} tokens (patches per image), '
      f'but the model has {new} tokens at this image size. Mixer '
      'token-mixing weights are tied to the token count and cannot be '
      'resized: fine-tune at the image size the checkpoint was trained '
      f'at{hint}.')


# timm / transformers ViTs: torch_layouts.py holds the key tables; timm's
# Mixers: torch_mixer.py; transformers' SiglipModel (two towers):
# torch_siglip.py. A file's keys say which it is.


def _torch_module(path: str):
  shapes = checkpoint_torch.read_shapes(path)
  if checkpoint_torch_siglip.is_siglip(shapes):
    return checkpoint_torch_siglip, shapes
  return (checkpoint_torch_mixer if checkpoint_torch_mixer.is_mixer(shapes)
          else checkpoint_torch), shapes


def is_safetensors(path: str) -> bool:
  """Whether `path` (or hub name: its default file is model.safetensors)
  names a .safetensors file."""
  if hub.is_hub_name(path):
    return hub.is_safetensors(path)
  return path.endswith('.safetensors')


def load_safetensors(path: str, model_config=None) -> npz.Params:
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


def save_safetensors(path: str, params: npz.Params, model_config,
                     layout: str = 'timm') -> None:
  """Writes params as a timm (`layout='timm'`) or transformers
  (`'transformers'`) state dict, with that library's config.json beside
  (a two-tower SigLIP model: transformers' SiglipModel)."""
  if 'num_blocks' in model_config:
    if layout != 'timm':
      raise ValueError("Mixers have a timm layout only: layout='timm'.")
    return checkpoint_torch_mixer.save(path, params, model_config)
  if 'text_model' in model_config:
    if layout != 'transformers':
      raise ValueError('Two-tower (SigLIP) models have a transformers layout '
                       "only (SiglipModel): layout='transformers'.")
    return checkpoint_torch_siglip.save(path, params, model_config)
  return checkpoint_torch.save(path, params, model_config, layout)


def load_params(path: str, model_config=None) -> npz.Params:
  """Params from a published .npz, or a timm / transformers .safetensors
  (checked against `model_config`), by the file's extension; `path` may be
  a hub name (hf-hub:ORG/NAME[@REVISION][/FILE]). For an image model's
  config, a two-tower file (LiT, SigLIP) gives its image tower `img`."""
  image_model = model_config is not None and 'text_model' not in model_config
  if is_safetensors(path):
    module, _ = _torch_module(path)
    # A SigLIP file read for its image tower: the file's own config.
    tower = image_model and module is checkpoint_torch_siglip
    params = load_safetensors(path, None if tower else model_config)
  else:
    params = npz.load_npz(hub.resolve(path))
  if image_model and {'img', 'txt'} <= set(params):
    # A two-tower (LiT, SigLIP) checkpoint for an image model, such as a
    # classifier fine-tuned from it: its image tower.
    params = params['img']
  return params


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


def fit_params(params: npz.Params, expected: npz.Params, path: str,
               model_name: Optional[str] = None) -> npz.Params:
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
      if npz._squeezed(old.shape) != npz._squeezed(new.shape):
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


def load_pretrained(*, pretrained_path: str, init_params: npz.Params,
                    model_config, grid_size: Optional[Sequence[int]] = None,
                    pretrained_grid_size: Optional[Sequence[int]] = None
                    ) -> npz.Params:
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
