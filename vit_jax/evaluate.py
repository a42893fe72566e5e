"""Exact evaluation: accuracy and loss over every example of a split once.

The input pipeline pads the last batch and marks padding with mask=False;
sums (not means) are reduced on device and divided on the host at the end, so
the figures are exact whatever the batch size or device count.
"""
from typing import Callable, Dict, Iterable

import jax
import jax.numpy as jnp
import numpy as np
import optax


def make_eval_step(model) -> Callable:
  """(params, batch) -> sums of correct predictions, loss and examples."""

  def eval_step(params, batch):
    logits = model.apply({'params': params}, batch['image'], train=False)
    mask = batch['mask'].astype(jnp.float32)
    loss = optax.softmax_cross_entropy_with_integer_labels(
        logits, batch['label'])
    correct = jnp.argmax(logits, -1) == batch['label']
    return {'correct': jnp.sum(correct * mask), 'loss': jnp.sum(loss * mask),
            'count': jnp.sum(mask)}

  return eval_step


def evaluate(eval_step: Callable, params, batches: Iterable) -> Dict[str, float]:
  """Runs `eval_step` over global `batches` (already on the mesh)."""
  totals = None
  for batch in batches:
    sums = eval_step(params, batch)
    totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
  if totals is None:
    raise ValueError('The eval split yielded no batches.')
  totals = jax.tree.map(lambda x: float(np.asarray(x)), totals)
  count = totals['count']
  return {'eval/accuracy': totals['correct'] / count,
          'eval/loss': totals['loss'] / count,
          'eval/num_examples': int(count)}
