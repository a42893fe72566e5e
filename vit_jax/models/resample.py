"""Resizing a ViT at call time: position embeddings to any patch grid, the
patch-embedding kernel to any patch size (FlexiViT), and which blocks a
caller takes features from.

Both resizes are pure JAX with static shapes, so they run inside `jax.jit`
(the model calls them in its forward pass).

* Position embeddings (`resample_posemb`): the patch tokens' embeddings laid
  out on their grid and resized with `jax.image.resize`; prefix (class token)
  embeddings are kept apart. `'bicubic'` with antialias is timm's
  `resample_abs_pos_embed` (torch's `F.interpolate(mode='bicubic',
  antialias=True)`: the same Keys cubic, a = -0.5, and the same widened
  kernel when a side shrinks); `'bilinear'` is big_vision's FlexiViT
  (`jax.image.resize(..., 'linear')`, antialias on, jax's default).
* Patch kernels (`resize_patch_embedding`): FlexiViT's PI-resize (Beyer et
  al. 2023, arXiv 2212.08013): the kernel w' that minimises
  ||<x, w> - <resize(x), w'>|| over patches x, i.e. pinv(B^T) w with B the
  resize matrix. A 2-D resize is separable, B = B_h (x) B_w, and
  pinv(A (x) C) = pinv(A) (x) pinv(C) exactly, so it is computed per axis
  (matrices of the patch side, not of its square).
"""
import warnings
from typing import Optional, Sequence, Tuple, Union

import jax
import jax.numpy as jnp
import numpy as np

# name -> (jax.image.resize method, antialias). Where each is used: see the
# module docstring.
POSEMB_RESIZES = {'bicubic': ('cubic', True), 'bilinear': ('linear', True)}
# resize_patch_embedding's `interpolation` -> jax.image.resize method.
_KERNEL_METHODS = {'bilinear': 'linear', 'bicubic': 'cubic'}


def square_grid(num_tokens: int, what: str) -> Tuple[int, int]:
  side = int(round(num_tokens ** 0.5))
  if side * side != num_tokens:
    raise ValueError(
        f'{what} hold {num_tokens} patch positions, not a square grid: give '
        'the grid they were trained at as model.posemb_grid (rows, cols).')
  return side, side


def resample_posemb(posemb: jnp.ndarray, new_grid: Sequence[int], *,
                    num_prefix_tokens: int,
                    old_grid: Optional[Sequence[int]] = None,
                    method: str = 'bicubic') -> jnp.ndarray:
  """[1, prefix + h*w, D] position embeddings -> [1, prefix + H*W, D].

  `old_grid` (h, w) defaults to square; `method` is a key of POSEMB_RESIZES.
  The prefix rows are not resized. Same grid: returned as it is. Computed in
  float32 (as timm), returned in the input's dtype.
  """
  if method not in POSEMB_RESIZES:
    raise ValueError(f'posemb_resize={method!r}: use one of '
                     f'{", ".join(map(repr, POSEMB_RESIZES))}.')
  prefix, grid = posemb[:, :num_prefix_tokens], posemb[:, num_prefix_tokens:]
  old_grid = tuple(old_grid or square_grid(grid.shape[1],
                                           'The position embeddings'))
  if old_grid[0] * old_grid[1] != grid.shape[1]:
    raise ValueError(f'posemb_grid={old_grid} does not hold the '
                     f'{grid.shape[1]} patch position embeddings.')
  new_grid = tuple(new_grid)
  if old_grid == new_grid:
    return posemb
  resize, antialias = POSEMB_RESIZES[method]
  d = grid.shape[-1]
  grid = jax.image.resize(
      grid.reshape(old_grid + (d,)).astype(jnp.float32), new_grid + (d,),
      resize, antialias=antialias)
  grid = grid.reshape(1, -1, d).astype(posemb.dtype)
  return jnp.concatenate([prefix, grid], axis=1)


def _torch_cubic_matrix(old: int, new: int) -> np.ndarray:
  """torch's `F.interpolate(mode='bicubic', antialias=False,
  align_corners=False)` as a [new, old] matrix: Keys' cubic with a = -0.75
  (jax's 'cubic' is a = -0.5, torch's antialiased one), taps clamped to the
  border, no widening when shrinking."""
  a = -0.75

  def weight(t):
    t = abs(t)
    if t <= 1:
      return ((a + 2) * t - (a + 3)) * t * t + 1
    return (((t - 5) * t + 8) * t - 4) * a if t < 2 else 0.

  out = np.zeros((new, old), np.float32)
  for i in range(new):
    x = (i + 0.5) * old / new - 0.5
    base = int(np.floor(x))
    for k in range(base - 1, base + 3):
      out[i, min(max(k, 0), old - 1)] += weight(x - k)
  return out


def _pinv_resize_matrix(old: int, new: int, method: str,
                        antialias: bool) -> jnp.ndarray:
  """pinv(B^T) [new, old] of the 1-D resize B [new, old] (column j: the
  resize of the j-th basis vector), in float32 as both libraries."""
  if method == 'cubic' and not antialias:
    b = jnp.asarray(_torch_cubic_matrix(old, new))
  else:
    basis = jnp.eye(old, dtype=jnp.float32)
    b = jax.image.resize(basis, (new, old), method, antialias=antialias)
  return jnp.linalg.pinv(b.T)


def resize_patch_embedding(kernel: jnp.ndarray, new_size: Union[int, Sequence[int]],
                           interpolation: str = 'bilinear',
                           antialias: bool = False) -> jnp.ndarray:
  """FlexiViT's PI-resize of an HWIO patch kernel [h, w, in, out] to
  [H, W, in, out]: on patches resized from h x w to H x W, the new kernel
  gives the tokens the old one gave on the originals (exactly when growing,
  in the least-squares sense when shrinking).

  The defaults are big_vision's `resample_patchemb` (tf.image.resize
  bilinear, no antialias); `interpolation='bicubic', antialias=True` is
  timm's `resample_patch_embed` defaults (torch's antialiased bicubic: jax's
  'cubic' with antialias), `antialias=False` with bicubic torch's plain one
  (another cubic, a = -0.75, built here). They differ by 0.1-0.3 on the
  shared case (reference/README.md). jit-able; the same size returns
  `kernel` as it is.

  Mixed resizes (one side shrinking, the other growing, e.g. 8 -> 6x10): the
  full (H*W) x (h*w) resize matrix is rank-deficient there. big_vision
  pseudo-inverts it with NumPy's 1e-15 cutoff in float32 and returns ~1e9
  (float noise amplified by the reciprocals of its "zero" singular values);
  the exact pseudo-inverse computed here per axis is finite (of the kernel's
  size) and equals timm 1.0.31's (torch.linalg.pinv's default cutoff) within
  5e-6; it agrees with both on every pure grow or shrink. A warning says so.
  """
  if interpolation not in _KERNEL_METHODS:
    raise ValueError(f'interpolation={interpolation!r}: use one of '
                     f'{", ".join(map(repr, _KERNEL_METHODS))}.')
  if kernel.ndim != 4:
    raise ValueError(f'resize_patch_embedding takes an HWIO kernel [h, w, '
                     f'in, out]; got shape {tuple(kernel.shape)}.')
  new_size = ((new_size, new_size) if isinstance(new_size, int)
              else tuple(int(s) for s in new_size))
  if len(new_size) != 2 or min(new_size) < 1:
    raise ValueError(f'new_size={new_size}: give (height, width) >= 1.')
  old_size = tuple(kernel.shape[:2])
  if old_size == new_size:
    return kernel
  if (new_size[0] - old_size[0]) * (new_size[1] - old_size[1]) < 0:
    warnings.warn(
        f'PI-resize {old_size} -> {new_size} shrinks one side and grows the '
        'other: here the exact pseudo-inverse (finite values, as timm); '
        "big_vision's resample_patchemb gives ~1e8-1e9 for such resizes.",
        stacklevel=2)
  method = _KERNEL_METHODS[interpolation]
  ph = _pinv_resize_matrix(old_size[0], new_size[0], method, antialias)
  pw = _pinv_resize_matrix(old_size[1], new_size[1], method, antialias)
  out = jnp.einsum('Hh,Ww,hwio->HWio', ph, pw,
                   kernel.astype(jnp.float32),
                   precision=jax.lax.Precision.HIGHEST)
  return out.astype(kernel.dtype)


def take_indices(num_blocks: int, indices: Union[None, int, Sequence[int]]
                 ) -> Tuple[int, ...]:
  """The 0-based blocks `indices` selects, in the order given, as timm's
  `feature_take_indices`: None all, an int n the last n, a sequence those
  blocks (negative ones counting from the end)."""
  if indices is None:
    indices = num_blocks
  if isinstance(indices, int):
    if not 0 < indices <= num_blocks:
      raise ValueError(f'indices={indices}: the last n blocks needs n in 1..'
                       f'{num_blocks} (the model has {num_blocks} blocks).')
    return tuple(range(num_blocks - indices, num_blocks))
  out = []
  for i in indices:
    j = num_blocks + i if i < 0 else i
    if not 0 <= j < num_blocks:
      raise ValueError(f'indices: block {i} is out of range for a model of '
                       f'{num_blocks} blocks (0..{num_blocks - 1}, or '
                       f'-{num_blocks}..-1 from the end).')
    out.append(int(j))
  if not out:
    raise ValueError('indices is empty: name at least one block.')
  return tuple(out)
