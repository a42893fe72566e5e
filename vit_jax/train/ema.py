"""An exponential moving average (EMA) of the params, trained beside them.

With `config.ema_decay` = d > 0 the train state holds `ema_params`, which
start as the initial (or pre-trained) params and after every step become
d * ema + (1 - d) * params (`optax.incremental_update`). Being part of the
train state, they are checkpointed and restored with it, so a resumed run
stays bit-identical. At each evaluation they are evaluated too (metrics
`eval_ema/...` beside `eval/...`), and at the end written beside
`params.npz` as `params_ema.npz` (the same published layout).
"""
from typing import Callable, Dict

import jax
import optax

def init(params):
  """The EMA's start: a copy of the params."""
  return jax.tree.map(lambda x: x.copy(), params)


def update(ema_params, params, decay: float):
  """decay * ema_params + (1 - decay) * params."""
  return optax.incremental_update(params, ema_params, step_size=1.0 - decay)


def eval_metrics(evaluate: Callable[..., Dict[str, float]], state
                 ) -> Dict[str, float]:
  """`evaluate(params)`'s metrics for the EMA params under `eval_ema/`
  (`eval/accuracy` -> `eval_ema/accuracy`); {} without an EMA."""
  if 'ema_params' not in state:
    return {}
  return {'eval_ema/' + name.removeprefix('eval/'): value
          for name, value in evaluate(state['ema_params']).items()}
