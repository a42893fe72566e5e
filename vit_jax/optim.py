"""Optimizer and learning-rate schedule from a config, all from optax.

config.optimizer: name ('adam' | 'adamw' | 'sgd'), b1, b2, momentum,
  weight_decay, grad_clip_norm (global norm; None or 0 disables).
config.lr: base, warmup_steps, decay ('cosine' | 'linear' | 'constant'),
  end (the final value, as a fraction of base).
"""
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
                     weight_decay=c.get('weight_decay', 0.0))


_OPTIMIZERS = {
    'adam': _adam,
    'adamw': _adam,
    'sgd': lambda c, lr: optax.chain(
        optax.add_decayed_weights(c.get('weight_decay', 0.0)),
        optax.sgd(lr, momentum=c.get('momentum', 0.9) or None)),
}


def lr_schedule(config) -> optax.Schedule:
  """Linear warmup from 0, then the configured decay to `lr.end * base`."""
  lr = config.lr
  if lr.decay not in _SCHEDULES:
    raise ValueError(f'Unknown lr.decay {lr.decay!r}; use one of '
                     f'{sorted(_SCHEDULES)}.')
  warmup = min(lr.warmup_steps, config.total_steps)
  decay = _SCHEDULES[lr.decay](lr.base, max(config.total_steps - warmup, 1),
                               lr.get('end', 0.0))
  if not warmup:
    return decay
  return optax.join_schedules(
      [optax.linear_schedule(0.0, lr.base, warmup), decay], [warmup])


def make_optimizer(config) -> optax.GradientTransformation:
  """Gradient clipping + the named optimizer on `lr_schedule(config)`."""
  c = config.optimizer
  if c.name not in _OPTIMIZERS:
    raise ValueError(f'Unknown optimizer {c.name!r}; use one of '
                     f'{sorted(_OPTIMIZERS)}.')
  tx = _OPTIMIZERS[c.name](c, lr_schedule(config))
  if c.get('grad_clip_norm'):
    tx = optax.chain(optax.clip_by_global_norm(c.grad_clip_norm), tx)
  return tx
