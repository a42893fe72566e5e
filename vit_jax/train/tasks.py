"""The training tasks by name: `config.task` picks one, the only dispatch.

A task (`loop.Task`) is what one way of training brings to the one loop: its
model, its loss (`loss(params, batch, rng) -> (loss, aux)`, given to the
step every task shares, `steps.make_step`), its data and its evaluators.
The config fields it reads are its entry of `configs.common.TASK_FIELDS`,
beyond those every task reads; a run refuses any other field, by name.

Adding a task: a model (`models/`), a loss and a task class (`train/`,
`task_NAME.py`), its evaluators (`evaluators/`), its fields
(`configs.common.TASK_FIELDS`), an entry here, and a config file.
"""
from typing import Dict

import ml_collections

from vit_jax.train import loop
from vit_jax.train import task_classify
from vit_jax.train import task_lit
from vit_jax.train import task_siglip

TASKS = {
    'classify': task_classify.ClassifyTask,
    'lit': task_lit.LitTask,
    'siglip': task_siglip.SiglipTask,
}


def create(config: ml_collections.ConfigDict) -> loop.Task:
  """The task `config.task` names ('classify' without the field), built
  for `config`; nothing is checked or loaded yet (the loop does that)."""
  name = config.get('task', 'classify')
  if name not in TASKS:
    raise ValueError(f'Unknown config.task={name!r}; use one of '
                     f'{", ".join(sorted(TASKS))}.')
  return TASKS[name](config)


def train_and_evaluate(config: ml_collections.ConfigDict,
                       workdir: str) -> Dict[str, float]:
  """Trains `config`'s task in `workdir` (resuming from its latest
  checkpoint); the final eval metrics. Raises as `loop.train_and_evaluate`.
  """
  return loop.train_and_evaluate(create(config), workdir)
