"""Locked-image tuning: `train_and_evaluate(config, workdir)`, configs/lit.py.

The entry point `main.py` calls for LiT configs (`config.trainer='lit'`): the
training loop (`loop.py`) given the LiT task (`task_lit.py`, which holds the
model, loss and evaluation; their names stay importable from here).
"""
from typing import Dict

import ml_collections

from vit_jax.train import loop
from vit_jax.train import task_lit
# pylint: disable=unused-import  (the names this module had before task_lit)
from vit_jax.train.task_lit import build_vocab
from vit_jax.train.task_lit import contrastive_loss
from vit_jax.train.task_lit import frozen_mask
from vit_jax.train.task_lit import make_optimizer
from vit_jax.train.task_lit import make_train_step
from vit_jax.train.task_lit import RANDOM_IMAGE_TOWER
# pylint: enable=unused-import


def train_and_evaluate(config: ml_collections.ConfigDict,
                       workdir: str) -> Dict[str, float]:
  """Tunes `config` in `workdir`, resuming from its latest checkpoint.

  Returns the final eval metrics (zero-shot and/or retrieval; see
  `data/captions.py`). Raises as `loop.train_and_evaluate`.
  """
  return loop.train_and_evaluate(task_lit.LitTask(config), workdir)
