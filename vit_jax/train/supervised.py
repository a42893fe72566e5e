"""`train_and_evaluate(config, workdir)`: trains a classifier config.

The training loop (`loop.py`) given the classification task
(`task_classify.py`); `tasks.train_and_evaluate` trains a config of any
task.
"""
from typing import Dict

import ml_collections

from vit_jax.train import loop
from vit_jax.train import task_classify


def train_and_evaluate(config: ml_collections.ConfigDict,
                       workdir: str) -> Dict[str, float]:
  """Trains `config` in `workdir`, resuming from its latest checkpoint.

  Returns the final eval metrics. Raises as `loop.train_and_evaluate`.
  """
  return loop.train_and_evaluate(task_classify.ClassifyTask(config), workdir)
