"""Trains a ViT: `python main.py --workdir=DIR [--config=configs/X.py[:ARG]]`.

Any config field can be overridden: `--config.total_steps=100`. Without
`--config` the offline default job (configs/default.py) runs. Re-running the
same command resumes from the newest checkpoint in DIR; one run at a time
holds DIR (DIR/run.lock, vit_jax/workdir/lock.py).

On SIGTERM or Ctrl-C (SIGINT) the run finishes its step, saves a checkpoint
there and exits (vit_jax/train/preemption.py); a second Ctrl-C aborts at once.
Exit codes: 0 done; 1 bad input, a workdir in use, a non-finite loss or an
I/O error (one `error:` line); 2 a bad flag or config field; 128 + signal
when stopped by one (143 SIGTERM, 130 SIGINT): re-run to resume.

The console shows our own lines only; `--verbose` adds the libraries' logs.
"""
import os
import signal
import sys

from absl import app
from absl import flags
from absl import logging
import jax

from vit_jax import command_line
from vit_jax import quiet_tf

_HERE = os.path.dirname(os.path.abspath(__file__))


# Its --config.X overrides of the default config are applied here.
command_line.define_config(
    os.path.join(_HERE, 'configs', 'default.py'),
    'Experiment config file, optionally with `:ARG`.')
_WORKDIR = flags.DEFINE_string('workdir', None, 'Output directory.',
                               required=True)
_COORDINATOR = flags.DEFINE_string(
    'coordinator_address', None, 'host:port of process 0, for multi-process '
    'runs (jax.distributed).')
_NUM_PROCESSES = flags.DEFINE_integer('num_processes', None,
                                      'Number of processes.')
_PROCESS_ID = flags.DEFINE_integer('process_id', None,
                                   'Index of this process.')
_TRACEBACK = flags.DEFINE_bool('traceback', False,
                               'Show tracebacks for input errors too.')
_VERBOSE = flags.DEFINE_bool('verbose', False,
                             'Show the INFO logs and start-up output of '
                             'TensorFlow, JAX, absl, clu and orbax.')


def _explicit_distributed() -> bool:
  return any(f is not None for f in (_COORDINATOR.value, _NUM_PROCESSES.value,
                                     _PROCESS_ID.value))


def _auto_distributed() -> bool:
  """A multi-process run that jax.distributed detects (TPU pod, SLURM)."""
  return int(os.environ.get('SLURM_NTASKS', '1')) > 1 or ',' in os.environ.get(
      'TPU_WORKER_HOSTNAMES', '')


def _init_distributed():
  """jax.distributed from flags, or auto-detected on TPU pods and SLURM."""
  explicit = _explicit_distributed()
  if not (explicit or _auto_distributed()):
    return
  # Cross-process collectives on CPU (several local processes in tests).
  jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  if explicit:
    jax.distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value,
                               _PROCESS_ID.value)
  else:
    jax.distributed.initialize()
  logging.info('Process %d of %d, %d local of %d devices.',
               jax.process_index(), jax.process_count(),
               jax.local_device_count(), jax.device_count())


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  # Imported here so that `--help` and flag errors stay fast.
  # pylint: disable=g-import-not-at-top
  from vit_jax.train import console
  if _VERBOSE.value:  # The libraries' lines, TensorFlow's start-up too.
    quiet_tf.uninstall()
    if not flags.FLAGS['verbosity'].present:
      logging.set_verbosity(logging.INFO)
  else:
    console.quiet()  # Before anything imports TensorFlow.
  from vit_jax.train import cpu_devices
  from vit_jax.train import loop
  from vit_jax.train import preemption
  from vit_jax.train import tasks
  # pylint: enable=g-import-not-at-top
  try:
    cpu_devices.configure(flags.FLAGS.config, multi_process=(
        _explicit_distributed() or _auto_distributed()))
    _init_distributed()
    # config.task picks the task (vit_jax/train/tasks.py).
    metrics = tasks.train_and_evaluate(flags.FLAGS.config, _WORKDIR.value)
  except (ValueError, OSError, loop.NonFiniteLossError) as e:
    if _TRACEBACK.value:
      raise
    print(f'error: {e}', file=sys.stderr)
    sys.exit(1)
  except preemption.Stopped as e:
    print(e, file=sys.stderr)
    sys.exit(e.exit_code)
  except KeyboardInterrupt:  # Ctrl-C outside the training loop.
    sys.exit(128 + signal.SIGINT)
  if jax.process_index() == 0:
    print(' '.join(f'{k}={v:.4f}' if isinstance(v, float) else f'{k}={v}'
                   for k, v in metrics.items()))


if __name__ == '__main__':
  app.run(main, flags_parser=command_line.parse_flags)
