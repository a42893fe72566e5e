r"""Exact evaluation: accuracy and loss over every example of a split once.

The input pipeline pads the last batch and marks padding with mask=False;
sums (not means) are reduced on device and divided on the host at the end, so
the figures are exact whatever the batch size or device count.

The trainer runs `evaluate_split`; so does the command line, on a finished or
checkpointed run:

  python -m vit_jax.evaluate --workdir=DIR [--split=NAME] [--step=N]

It reads DIR/config.json and DIR/params.npz (or checkpoint N; see
`run_dir.load`), evaluates on the devices the trainer would use here, and
prints a line for people, then (last on stdout) a JSON object with
eval/accuracy, eval/loss and eval/num_examples. On the run's own eval split
they are the run's final eval figures. Bad input ends with one `error:` line
and exit status 1.
"""
import json
import sys
from typing import Callable, Dict, Iterable

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np
import optax

from vit_jax import sharding


def masked_sums(logits, batch) -> Dict[str, jnp.ndarray]:
  """Sums of correct predictions, loss and examples over a batch's real
  (mask=True) examples: what `evaluate` adds up and divides."""
  mask = batch['mask'].astype(jnp.float32)
  loss = optax.softmax_cross_entropy_with_integer_labels(logits,
                                                         batch['label'])
  correct = jnp.argmax(logits, -1) == batch['label']
  return {'correct': jnp.sum(correct * mask), 'loss': jnp.sum(loss * mask),
          'count': jnp.sum(mask)}


def make_eval_step(model) -> Callable:
  """(params, batch) -> `masked_sums` of the model's logits."""

  def eval_step(params, batch):
    logits = model.apply({'params': params}, batch['image'], train=False)
    return masked_sums(logits, batch)

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


def evaluate_split(config, eval_step: Callable, params, mesh
                   ) -> Dict[str, float]:
  """The trainer's evaluation: every example of `config.eval_split` once.

  Each process reads its slice of the padded global batches; they are put on
  `mesh` and evaluated with `eval_step` (jitted `make_eval_step`) and
  `params` (placed as the trainer places them).
  """
  # Imported here: the rest of this module (used by the notebook) does not
  # need TensorFlow.
  from vit_jax import input_pipeline  # pylint: disable=g-import-not-at-top
  batches = input_pipeline.eval_iterator(
      config, process_index=jax.process_index(),
      process_count=jax.process_count())
  return evaluate(eval_step, params,
                  sharding.on_mesh(mesh, batches, config.eval_batch_size))


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  # pylint: disable=g-import-not-at-top  (TensorFlow: not for the library)
  from vit_jax import remote
  workdir = flags.FLAGS.workdir
  try:
    remote.check(workdir, '--workdir')  # Before importing TensorFlow.
    from vit_jax import cpu_devices
    from vit_jax import run_dir
    # pylint: enable=g-import-not-at-top
    config = run_dir.load_config(workdir)
    if flags.FLAGS.split:
      config.eval_split = flags.FLAGS.split
    cpu_devices.configure(config)  # The trainer's devices on this machine.
    sharding.check_split(config, jax.device_count(), jax.process_count())
    run = run_dir.load(workdir, flags.FLAGS.step, config)
    mesh = sharding.make_mesh(config.mesh)
    params = jax.device_put(run.params,
                            sharding.state_shardings(mesh, run.params))
    metrics = evaluate_split(config, jax.jit(make_eval_step(run.model)),
                             params, mesh)
  except (OSError, ValueError) as e:
    sys.exit(f'error: {e}')
  print(f'{run.source} on split {config.eval_split!r}: accuracy '
        f'{metrics["eval/accuracy"]:.2%} of {metrics["eval/num_examples"]} '
        f'examples, loss {metrics["eval/loss"]:.4f}')
  print(json.dumps(metrics))


if __name__ == '__main__':
  flags.DEFINE_string('workdir', None, 'The --workdir of a main.py run.',
                      required=True)
  flags.DEFINE_string('split', None, 'Split to evaluate; default: the '
                      "run's eval_split.")
  flags.DEFINE_integer('step', None, 'Evaluate checkpoint STEP instead of '
                       'params.npz.')
  app.run(main)
