r"""Evaluates a finished or checkpointed run exactly as the trainer does.

  python -m vit_jax.evaluate --workdir=DIR [--split=NAME] [--step=N]

The figures are those of `evaluators.classification.SplitEvaluator`, the
trainer's own evaluation.

It reads DIR/config.json and DIR/params.npz (or checkpoint N; see
`workdir/run.py`'s `load`), evaluates on the devices the trainer would use here,
and prints a line for people, then (last on stdout) a JSON object with
eval/accuracy, eval/loss and eval/num_examples. On the run's own eval split they
are the run's final eval figures. Bad input ends with one `error:` line
and exit status 1 (2 for a bad flag).
"""
import json
import sys

from absl import app
from absl import flags
import jax

from vit_jax import command_line
from vit_jax.evaluators import classification
from vit_jax.train import sharding
# The library half of this tool moved to `evaluators.classification`; its
# names stay importable from here.
from vit_jax.evaluators.classification import (  # pylint: disable=unused-import,g-importing-member
    evaluate, evaluate_split, make_eval_step, masked_sums)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  # pylint: disable=g-import-not-at-top  (TensorFlow: not for the library)
  from vit_jax import remote
  workdir = flags.FLAGS.workdir
  try:
    remote.check(workdir, '--workdir')  # Before importing TensorFlow.
    from vit_jax.train import cpu_devices
    from vit_jax.workdir import run as run_dir
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
    metrics = classification.SplitEvaluator(config, run.model)(params, mesh)
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
  app.run(main, flags_parser=command_line.parse_flags)
