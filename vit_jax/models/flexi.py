"""FlexiViT's training option (Beyer et al. 2023, arXiv 2212.08013): every
step runs the model at a patch size drawn from a list, so that one model
serves all of them (`VisionTransformer(..., patch_size=...)` at call time).

`config.flexi_patch_sizes` (e.g. (8, 10, 12, 15, 16, 20, 24, 30, 40, 48) at
240 px, as big_vision's FlexiViT configs; ints or (h, w) pairs) turns it on.
The draw is `jax.random` from the step's own key (the trainer's
fold_in(key, step), and a micro-batch's key under accumulation), so it is a
function of (seed, step): a resumed run draws what the uninterrupted one
drew, bit for bit. It happens inside the compiled step, as a `lax.switch`
over one branch per size: every size is compiled once, with the step, and
never again (big_vision instead recompiles per size on the host).
"""
import functools
from typing import Any, Sequence, Tuple

import jax

# Salt of the draw's key: a stream apart from dropout's.
_SALT = 0x666C6578  # 'flex'


def _pairs(sizes) -> Tuple[Tuple[int, int], ...]:
  return tuple((s, s) if isinstance(s, int) else tuple(int(v) for v in s)
               for s in sizes)


def check(config) -> None:
  """`config.flexi_patch_sizes` (if set) fits the model and image size."""
  sizes = config.get('flexi_patch_sizes')
  if not sizes:
    return
  if 'transformer' not in config.model or config.model.get('resnet'):
    raise ValueError('config.flexi_patch_sizes needs a plain ViT (a patch '
                     'embedding of its own); this model has none.')
  try:
    pairs = _pairs(sizes)
  except (TypeError, ValueError):
    pairs = ()
  bad = [p for p in pairs if len(p) != 2 or min(p) < 1 or
         config.image_size % p[0] or config.image_size % p[1]]
  if not pairs or bad:
    raise ValueError(
        f'config.flexi_patch_sizes={sizes!r}: give patch sizes (ints or '
        f'(h, w) pairs) that divide image_size={config.image_size}'
        + (f'; {bad} do not.' if bad else '.'))


def apply_at_random_patch_size(model, variables, images, *,
                               patch_sizes: Sequence[Any], rng, **kwargs):
  """`model.apply(variables, images, patch_size=S, **kwargs)` for S drawn
  uniformly from `patch_sizes` with `rng` (see the module docstring)."""
  pairs = _pairs(patch_sizes)
  index = jax.random.randint(jax.random.fold_in(rng, _SALT), (), 0,
                             len(pairs))

  def branch(size, variables, images):
    return model.apply(variables, images, patch_size=size, **kwargs)

  return jax.lax.switch(index, [functools.partial(branch, p) for p in pairs],
                        variables, images)
