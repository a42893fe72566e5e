"""Exact evaluation: accuracy and loss over every example of a split once.

The input pipeline pads the last batch and marks padding with mask=False;
sums (not means) are reduced on device and divided on the host at the end, so
the figures are exact whatever the batch size or device count. The trainer
runs `evaluate_split` (as a `SplitEvaluator`); so does `python -m
vit_jax.evaluate` on a run.
"""
from typing import Callable, Dict, Iterable, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from vit_jax import progress
from vit_jax.train import sharding


def masked_sums(logits, batch) -> Dict[str, jnp.ndarray]:
  """Sums of correct predictions, loss and examples over a batch's real
  (mask=True) examples: what `evaluate` adds up and divides."""
  mask = batch['mask'].astype(jnp.float32)
  loss = optax.softmax_cross_entropy_with_integer_labels(logits,
                                                         batch['label'])
  correct = jnp.argmax(logits, -1) == batch['label']
  return {'correct': jnp.sum(correct * mask), 'loss': jnp.sum(loss * mask),
          'count': jnp.sum(mask)}


def make_eval_step(model, average_flips: bool = False) -> Callable:
  """(params, batch) -> `masked_sums` of the model's logits.

  `average_flips` (`config.eval_average_flips`): the logits are the mean of
  those of each image and of its mirror image (test-time augmentation).
  """

  def logits(params, images):
    return model.apply({'params': params}, images, train=False)

  def eval_step(params, batch):
    out = logits(params, batch['image'])
    if average_flips:
      out = (out + logits(params, batch['image'][:, :, ::-1])) / 2
    return masked_sums(out, batch)

  return eval_step


def evaluate(eval_step: Callable, params, batches: Iterable,
             total: Optional[int] = None) -> Dict[str, float]:
  """Runs `eval_step` over global `batches` (already on the mesh).

  On a terminal, process 0 shows a bar over the `total` batches
  (`vit_jax.progress`); it counts batches computed, not dispatched: each
  batch is waited for once the next one is on its way.
  """
  totals = None
  for batch in progress.bar(batches, total=total, desc='Evaluating',
                            unit='batch', active=jax.process_index() == 0):
    sums = eval_step(params, batch)
    done = totals
    totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
    jax.block_until_ready(done)
  if totals is None:
    raise ValueError('The eval split yielded no batches.')
  totals = jax.tree.map(lambda x: float(np.asarray(x)), totals)
  count = totals['count']
  return {'eval/accuracy': totals['correct'] / count,
          'eval/loss': totals['loss'] / count,
          'eval/num_examples': int(count)}


def evaluate_split(config, eval_step: Callable, params, mesh
                   ) -> Dict[str, float]:
  """The trainer's evaluation: every example of `config.eval_split` once.

  Each process reads its slice of the padded global batches; they are put on
  `mesh` and evaluated with `eval_step` (jitted `make_eval_step`) and
  `params` (placed as the trainer places them).
  """
  # Imported here: the rest of this module (used by the notebook) does not
  # need TensorFlow.
  from vit_jax.data import input_pipeline  # pylint: disable=g-import-not-at-top
  source = input_pipeline.eval_source(config)
  batches = input_pipeline.eval_iterator(
      config, process_index=jax.process_index(),
      process_count=jax.process_count(), source=source)
  return evaluate(eval_step, params,
                  sharding.on_mesh(mesh, batches, config.eval_batch_size),
                  total=-(-source.num_examples // config.eval_batch_size))


class SplitEvaluator:
  """`evaluate_split` of `model` on `config.eval_split`, as an evaluator
  (vit_jax/evaluators/__init__.py)."""

  def __init__(self, config, model):
    self.config = config
    self._eval_step = jax.jit(make_eval_step(
        model, config.get('eval_average_flips', False)))

  def __call__(self, params, mesh) -> Dict[str, float]:
    return evaluate_split(self.config, self._eval_step, params, mesh)
