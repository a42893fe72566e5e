"""Mixup and CutMix of a global train batch, inside the jitted train step.

`config.mixup.p` and `config.cutmix.p` (0: off) are the concentration of
the Beta(p, p) that draws the mixing ratio (big_vision's `mixup.p`; the
plain-ViT baseline uses mixup p=0.2, CutMix is usually p=1.0). Each step
draws one ratio for the whole global batch from rng = fold_in(key, step),
and mixes example i with example i - 1 (the batch rolled by one):
- Mixup: image = r * image + (1 - r) * partner's image.
- CutMix: a box of area ~(1 - r) of the image (its centre uniform, clipped
  at the borders) is pasted from the partner; r is then recomputed as the
  share of pixels the image kept.
The labels, as distributions [B, num_classes], mix with the same r. With
both on, each step does one of them, each with probability 1/2.

Why in the step and not in the input pipeline: the step sees the global
batch (sharded over devices and processes; the roll is a collective
permute), so the result is a function of (seed, step) and the global batch
alone, the same for any number of devices or processes, and a resumed run
mixes exactly as an uninterrupted one. (big_vision mixes within each
device's share instead.)
"""
import math

import jax
import jax.numpy as jnp


def check(config) -> None:
  """Raises a ValueError for a bad `mixup.p` or `cutmix.p`."""
  for name in ('mixup', 'cutmix'):
    p = _concentration(config, name)
    if not (isinstance(p, (int, float)) and math.isfinite(p) and p >= 0):
      raise ValueError(
          f'config.{name}.p={p!r} must be a number >= 0: the Beta(p, p) '
          f'concentration of the mixing ratio (0 turns {name} off; e.g. '
          f'--config.{name}.p=0.2).')


def _concentration(config, name: str):
  return (config.get(name) or {}).get('p', 0.0)


def enabled(config) -> bool:
  return bool(_concentration(config, 'mixup') or
              _concentration(config, 'cutmix'))


def mixup(rng, images, targets, p: float):
  """Mixup with partner = the batch rolled by one; returns both mixed."""
  ratio = jax.random.beta(rng, p, p)
  return _mix(images, targets, ratio, ratio)


def _mix(images, targets, image_ratio, target_ratio):
  partner_images = jnp.roll(images, 1, axis=0)
  partner_targets = jnp.roll(targets, 1, axis=0)
  images = image_ratio * images + (1 - image_ratio) * partner_images
  targets = target_ratio * targets + (1 - target_ratio) * partner_targets
  return images, targets


def cutmix_box(rng, height: int, width: int, p: float):
  """bool [H, W]: the box to paste, and the share of pixels outside it."""
  rng_ratio, rng_y, rng_x = jax.random.split(rng, 3)
  side = jnp.sqrt(1 - jax.random.beta(rng_ratio, p, p))
  half_h = (side * height / 2).astype(jnp.int32)
  half_w = (side * width / 2).astype(jnp.int32)
  y = jax.random.randint(rng_y, (), 0, height)
  x = jax.random.randint(rng_x, (), 0, width)
  rows, cols = jnp.arange(height), jnp.arange(width)
  box = (((rows >= y - half_h) & (rows < y + half_h))[:, None] &
         ((cols >= x - half_w) & (cols < x + half_w))[None, :])
  return box, 1 - box.mean()


def cutmix(rng, images, targets, p: float):
  """CutMix with partner = the batch rolled by one; returns both mixed."""
  box, kept = cutmix_box(rng, images.shape[1], images.shape[2], p)
  keep = (~box)[None, :, :, None].astype(images.dtype)
  return _mix(images, targets, keep, kept)


def mix_batch(config, rng, images, targets):
  """The config's Mixup / CutMix of one global batch (see the docstring)."""
  p_mixup = _concentration(config, 'mixup')
  p_cutmix = _concentration(config, 'cutmix')
  rng_choice, rng = jax.random.split(rng)
  if not p_cutmix:
    return mixup(rng, images, targets, p_mixup)
  if not p_mixup:
    return cutmix(rng, images, targets, p_cutmix)
  return jax.lax.cond(jax.random.bernoulli(rng_choice),
                      lambda: cutmix(rng, images, targets, p_cutmix),
                      lambda: mixup(rng, images, targets, p_mixup))
