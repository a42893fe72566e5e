"""Optimizer and learning-rate schedule from a config, all from optax.

config.optimizer: name ('adam' | 'adamw' | 'sgd'), b1, b2, momentum,
  weight_decay, grad_clip_norm (global norm; None or 0 disables),
  accumulator_dtype (optional: SGD's momentum's, Adam's first moment's dtype,
  e.g. 'bfloat16' as the original release's fine-tuning; default the
  params'), and:
  - decoupled_weight_decay (default False): big_vision's weight decay.
    False: optax's AdamW (SGD: L2 added to the gradient), every param
    decayed by weight_decay * lr(t), base lr included. True: as big_vision's
    `optax.make`, update(t) = -m(t) * (base * step + weight_decay * param)
    with m(t) = lr(t) / base the schedule's multiplier: the decay is not
    scaled by the base lr, and only kernels (`.../kernel`) decay. So
    big_vision's wd=1e-4 at lr=1e-3 is AdamW's weight_decay=0.1.
  - layer_decay (default 0: off): layer-wise lr decay for fine-tuning
    (BEiT, Bao et al. 2021; as in BEiT's and MAE's code): with L blocks, the
    patch embedding, class token and position embeddings (a hybrid's ResNet
    stem too) have depth 0, block i depth i+1, everything after the last
    block (final LayerNorm, MAP head, pre-logits, head) depth L+1, and the
    update of a param at depth d is scaled by layer_decay^(L+1-d): the head
    learns at the full lr, the embedding at layer_decay^(L+1) of it. With
    decoupled_weight_decay the weight decay term is not scaled (big_vision's
    `lr_mults`); without it, the whole AdamW update is (a per-group lr).
config.lr: base, warmup_steps, decay ('cosine' | 'linear' | 'constant'),
  end (the final value, as a fraction of base).
"""
import re

import jax
import numpy as np
import optax

_SCHEDULES = {
    'cosine': lambda base, steps, end: optax.cosine_decay_schedule(
        base, steps, alpha=end),
    'linear': lambda base, steps, end: optax.linear_schedule(
        base, base * end, steps),
    'constant': lambda base, steps, end: optax.constant_schedule(base),
}


def _adam(c, lr):
  # The paper's "Adam with weight decay 0.1" is decoupled weight decay (AdamW).
  return optax.adamw(lr, b1=c.get('b1', 0.9), b2=c.get('b2', 0.999),
                     weight_decay=c.get('weight_decay', 0.0),
                     mu_dtype=c.get('accumulator_dtype'))


_OPTIMIZERS = {
    'adam': _adam,
    'adamw': _adam,
    'sgd': lambda c, lr: optax.chain(
        optax.add_decayed_weights(c.get('weight_decay', 0.0)),
        optax.sgd(lr, momentum=c.get('momentum', 0.9) or None,
                  accumulator_dtype=c.get('accumulator_dtype'))),
}


def lr_schedule(config, base=None) -> optax.Schedule:
  """Linear warmup from 0, then the configured decay to `lr.end * base`
  (`base`: lr.base unless given; 1 gives the schedule's multiplier)."""
  lr = config.lr
  base = lr.base if base is None else base
  if lr.decay not in _SCHEDULES:
    raise ValueError(f'Unknown lr.decay {lr.decay!r}; use one of '
                     f'{sorted(_SCHEDULES)}.')
  warmup = min(lr.warmup_steps, config.total_steps)
  decay = _SCHEDULES[lr.decay](base, max(config.total_steps - warmup, 1),
                               lr.get('end', 0.0))
  if not warmup:
    return decay
  return optax.join_schedules(
      [optax.linear_schedule(0.0, base, warmup), decay], [warmup])


# Layer-wise lr decay: where a param sits in depth (see the docstring).
_BLOCK = re.compile(r'(encoderblock|MixerBlock)_(\d+)')
_STACKED_BLOCKS = ('encoderblocks', 'MixerBlocks')
_EMBEDDING = re.compile(r'embedding|cls|stem|conv_root|gn_root|block\d+')


def _names(path):
  return [getattr(p, 'key', str(p)) for p in path]


def layer_decay_multipliers(params, decay: float):
  """The lr multiplier of every leaf of `params` (a float, or for the
  stacked blocks of a `scan` model an array over the leading layer axis)."""
  paths = jax.tree_util.tree_flatten_with_path(params)[0]
  depth = 0
  for path, leaf in paths:
    names = _names(path)
    for name in names:
      if m := _BLOCK.fullmatch(name):
        depth = max(depth, int(m[2]) + 1)
      elif name in _STACKED_BLOCKS:
        depth = max(depth, np.shape(leaf)[0])

  def multiplier(path, leaf):
    names = _names(path)
    for name in names:
      if m := _BLOCK.fullmatch(name):
        return np.float32(decay ** (depth - int(m[2])))
      if name in _STACKED_BLOCKS:
        per_layer = decay ** (depth - np.arange(depth, dtype=np.float64))
        return per_layer.astype(np.float32).reshape(
            (depth,) + (1,) * (np.ndim(leaf) - 1))
    if _EMBEDDING.fullmatch(names[0]) or 'posembed_input' in names:
      return np.float32(decay ** (depth + 1))
    return np.float32(1.0)

  return jax.tree_util.tree_map_with_path(multiplier, params)


def scale_by_layer_decay(decay: float) -> optax.GradientTransformation:
  """Scales each update by its `layer_decay_multipliers` (stateless)."""

  def update(updates, state, params=None):
    del params
    mults = layer_decay_multipliers(updates, decay)
    return jax.tree.map(lambda u, m: u * m, updates, mults), state

  return optax.GradientTransformation(lambda _: optax.EmptyState(), update)


def _kernels(params):
  """big_vision's default weight-decay mask: `.*/kernel$`."""
  return jax.tree_util.tree_map_with_path(
      lambda path, _: _names(path)[-1] == 'kernel', params)


def _direction(c) -> optax.GradientTransformation:
  """The optimizer's update before any lr: Adam's, or SGD's momentum."""
  if c.name in ('adam', 'adamw'):
    return optax.scale_by_adam(b1=c.get('b1', 0.9), b2=c.get('b2', 0.999),
                               mu_dtype=c.get('accumulator_dtype'))
  momentum = c.get('momentum', 0.9)
  return (optax.trace(decay=momentum,
                      accumulator_dtype=c.get('accumulator_dtype'))
          if momentum else optax.identity())


def _big_vision_style(config, layer_decay) -> optax.GradientTransformation:
  """big_vision's chain: step, *base lr, *lr mults, + wd * kernel,
  *schedule multiplier, negated."""
  c = config.optimizer
  return optax.chain(
      _direction(c), optax.scale(config.lr.base),
      *([scale_by_layer_decay(layer_decay)] if layer_decay else []),
      optax.add_decayed_weights(c.get('weight_decay', 0.0), mask=_kernels),
      optax.scale_by_schedule(lr_schedule(config, base=1.0)),
      optax.scale(-1.0))


def check(config) -> None:
  """ValueError for an optimizer config `make_optimizer` cannot build."""
  c = config.optimizer
  if c.name not in _OPTIMIZERS:
    raise ValueError(f'Unknown optimizer {c.name!r}; use one of '
                     f'{sorted(_OPTIMIZERS)}.')
  if config.lr.decay not in _SCHEDULES:
    raise ValueError(f'Unknown lr.decay {config.lr.decay!r}; use one of '
                     f'{sorted(_SCHEDULES)}.')
  decay = c.get('layer_decay') or 0.0
  if not 0 <= decay <= 1:
    raise ValueError(f'config.optimizer.layer_decay={decay} must be in '
                     '(0, 1] (0: off), e.g. 0.75 for fine-tuning.')
  ema = config.get('ema_decay') or 0.0
  if not 0 <= ema < 1:
    raise ValueError(f'config.ema_decay={ema} must be in [0, 1) (0: no EMA),'
                     ' e.g. 0.9999.')


def make_optimizer(config, frozen=None) -> optax.GradientTransformation:
  """Gradient clipping + the named optimizer on `lr_schedule(config)`, with
  the layer decay and weight decay style of the config (docstring).

  `frozen` (a tree of bools like the params): those params get no updates
  and no optimizer state (LiT's locked image tower); the others are
  optimized (and clipped) as if they were all the params.
  """
  if frozen is not None:
    labels = jax.tree.map(lambda f: 'frozen' if f else 'train', frozen)
    return optax.multi_transform({'train': make_optimizer(config),
                                  'frozen': optax.set_to_zero()}, labels)
  check(config)
  c = config.optimizer
  layer_decay = c.get('layer_decay') or 0.0
  layer_decay = 0.0 if layer_decay == 1 else layer_decay
  if c.get('decoupled_weight_decay'):
    tx = _big_vision_style(config, layer_decay)
  else:
    tx = _OPTIMIZERS[c.name](c, lr_schedule(config))
    if layer_decay:
      tx = optax.chain(tx, scale_by_layer_decay(layer_decay))
  if c.get('grad_clip_norm'):
    tx = optax.chain(optax.clip_by_global_norm(c.grad_clip_norm), tx)
  return tx
