"""Training: the loop, its tasks, the jitted steps, the optimizer and the
devices it runs on.

`from vit_jax import train` also gives the original release's
`train_and_evaluate(config, workdir)` (for its configs and this package's),
`make_update_fn` and `create_learning_rate_schedule`
(`vit_jax/original/train.py`), loaded when first used: the steps and the
optimizer do not need the input pipeline's TensorFlow.
"""
import importlib

_ORIGINAL = ('train_and_evaluate', 'make_update_fn',
             'create_learning_rate_schedule')


def __getattr__(name: str):
  if name in _ORIGINAL:
    return getattr(importlib.import_module('vit_jax.original.train'), name)
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
