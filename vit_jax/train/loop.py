"""`train_and_evaluate(task, workdir)`: the one training loop.

Every way to train (`tasks.py`: supervised classification, LiT contrastive
tuning, ...) is this loop given a task (`Task` below): what differs between
them is the task's (its model, loss, data and evaluators); what every run
needs is here, or in the step every task shares (`steps.make_step`): the
checks shared by all runs (every config field one the task reads), the
workdir lock, the graceful stop on SIGTERM/SIGINT,
config.json, the mesh and the sharded state, orbax checkpoints (resume by
re-running), the jitted step, device prefetch, the log/eval/save cadence,
the non-finite loss stop or skip, the all-gather of the params across
processes and params.npz at the end.

One batch, end to end: the task's iterator yields this process's slice of
global batch `step` (a function of seed and step) ->
`jax.make_array_from_process_local_data` places it on the mesh, two batches
ahead of the step -> the jitted task step (its random stream is
fold_in(step key, step), so it depends neither on the device count nor on
where a run was resumed) -> metrics to metrics.jsonl, TensorBoard and stderr
-> an orbax checkpoint every `checkpoint_every` steps -> `params.npz` at the
end. The file names are `workdir/layout.py`'s.
"""
import json
import time
from typing import Any, Callable, Dict, Iterator, Protocol, Sequence, Tuple

from clu import metric_writers
import jax
from jax.experimental import multihost_utils
import jax.numpy as jnp
import ml_collections
import numpy as np

from vit_jax import atomic_file
from vit_jax import checkpoint
from vit_jax import evaluators
from vit_jax.train import console
from vit_jax.train import ema
from vit_jax.train import preemption
from vit_jax.train import sharding
from vit_jax.train import validate
from vit_jax.workdir import checkpoints
from vit_jax.workdir import layout
from vit_jax.workdir import lock
from vit_jax.workdir import metrics as metrics_file

State = Dict[str, Any]  # {'step', 'params', 'opt_state', ...}: orbax saves it.
Step = Callable[[State, Dict[str, Any]], Tuple[State, Dict[str, Any]]]


class NonFiniteLossError(RuntimeError):
  """Training produced a NaN/Inf loss (the last good checkpoint is kept)."""


class Task(Protocol):
  """What a kind of training brings to the loop, called in this order.

  `config` is the run's config (`total_steps`, `batch_size`, `seed`,
  `mesh`, the cadence fields, `nonfinite`, ...: configs/common.py, whose
  `TASK_FIELDS` says which fields the task `name` reads).
  """
  name: str  # Its key in tasks.TASKS, the value of config.task.
  config: ml_collections.ConfigDict

  def check(self, workdir: str) -> None:
    """The task's own bad-input checks (ValueError/OSError with a message
    for the user), after `validate.check_run`; writes nothing."""

  def prepare(self, workdir: str) -> None:
    """With the workdir locked, before the state: the task's extra files
    (process 0 writes them; e.g. LiT's vocab.txt)."""

  def init_state(self, mesh, key) -> Tuple[State, Any]:
    """A fresh train state (step 0) on `mesh` and its shardings."""

  def train_step(self, key) -> Step:
    """(state, global batch) -> (state, metrics with 'train/loss' and
    'train/lr'): `steps.make_step` of the task's loss; the loop jits it.
    `key` is the run's step key."""

  def train_batches(self, start_step: int) -> Iterator[Dict[str, Any]]:
    """This process's slices of the global batches after `start_step`."""

  # Built by `prepare`: what each eval runs (vit_jax/evaluators).
  evaluators: Sequence[evaluators.Evaluator]

  def describe(self) -> Tuple[str, str]:
    """(model name, data) for the run's first console line."""


def train_and_evaluate(task: Task, workdir: str) -> Dict[str, float]:
  """Trains `task` in `workdir`, resuming from its latest checkpoint.

  Returns the final eval metrics.

  Raises:
    ValueError / OSError: bad input (before anything is written).
    workdir_lock.WorkdirInUse: another run holds `workdir`.
    NonFiniteLossError: a NaN/Inf loss with `nonfinite='stop'`.
    preemption.Stopped: a signal stopped the run (a checkpoint is saved).
  """
  validate.check_fields(task.config, task.name)
  validate.check_run(task.config, workdir=workdir,
                     num_devices=jax.device_count(),
                     num_processes=jax.process_count())
  task.check(workdir)
  validate.check_workdir(workdir)
  with lock.hold(workdir), preemption.StopRequests(
      jax.process_count()) as stop_requests:
    return _train(task, workdir, stop_requests)


class _Outputs:
  """metrics.jsonl + clu writers (TensorBoard) + the stderr progress lines.

  Only process 0 writes files; every process keeps quiet otherwise.
  """

  def __init__(self, workdir, total_steps, start_step, active):
    self.active = active
    self.path = layout.path(workdir, layout.METRICS)
    self.writer = metric_writers.create_default_writer(
        workdir, just_logging=not active, asynchronous=False)
    if active and self.path.exists():
      # Steps after the restored checkpoint are re-run: drop their records.
      keep = [json.dumps(r) + '\n' for r in metrics_file.read(self.path)
              if r['step'] <= start_step]
      atomic_file.write(self.path, ''.join(keep))
    self.console = console.Progress(total_steps, start_step, active)

  def write(self, step, metrics):
    self.writer.write_scalars(step, metrics)
    if self.active:
      with self.path.open('a') as f:
        f.write(json.dumps({'step': step, **metrics}) + '\n')

  def close(self):
    self.writer.flush()
    self.writer.close()


def _skipping_nonfinite(train_step: Step) -> Step:
  """`train_step`, except that a step with a NaN/Inf loss keeps the old
  state (params, optimizer moments, ...) and only counts the step."""

  def step(state, batch):
    new, metrics = train_step(state, batch)
    ok = jnp.isfinite(metrics['train/loss'])
    return {k: v if k == 'step' else jax.tree.map(
        lambda a, b: jnp.where(ok, a, b), v, state[k])
            for k, v in new.items()}, metrics

  return step


def _train_record(values, seconds, batch_size) -> Dict[str, float]:
  """The log record of the steps since the last one: means, except the
  learning rate (the logged step's) and the throughput."""
  record = {k: float(np.mean([m[k] for m in values])) for k in values[0]}
  record['train/lr'] = float(values[-1]['train/lr'])
  record['train/images_per_sec'] = len(values) * batch_size / seconds
  return record


def _check_finite(values, step, manager) -> None:
  """NonFiniteLossError (after closing `manager`) if a loss of `values`,
  the steps up to `step`, is NaN/Inf."""
  finite = np.isfinite([m['train/loss'] for m in values])
  if finite.all():
    return
  bad = step - len(values) + 1 + int(np.argmin(finite))
  manager.close()
  raise NonFiniteLossError(
      f'Non-finite training loss at step {bad}; the last good checkpoint is '
      f'kept in {manager.directory}. Lower the learning rate, or set '
      '--config.nonfinite=skip to skip such steps.')


def _start_line(task, workdir, start, params, mesh) -> str:
  config = task.config
  count = sum(x.size for x in jax.tree.leaves(params))
  model, data = task.describe()
  return (f'Starting at step {start} of {config.total_steps}: {model} '
          f'({count / 1e6:.3g}M params) on {jax.device_count()} devices '
          f'({jax.default_backend()}) in {jax.process_count()} '
          'process(es), mesh ' + ' '.join(f'{k}={v}' for k, v in
                                          mesh.shape.items()) +
          f', data {data}, workdir {workdir}')


def _save_params(workdir, state) -> None:
  """WORKDIR/params.npz (and params_ema.npz with an EMA) by process 0, the
  params gathered from every process first (with `fsdp` each holds only its
  shards)."""
  for key, name in (('params', layout.PARAMS),
                    ('ema_params', layout.PARAMS_EMA)):
    if key not in state:
      continue
    params = state[key]
    if jax.process_count() > 1:
      params = multihost_utils.process_allgather(params, tiled=True)
    if jax.process_index() == 0:
      checkpoint.save_npz(str(layout.path(workdir, name)),
                          jax.device_get(params))


def _evaluate(task, state, mesh) -> Dict[str, float]:
  """The task's eval metrics of the params, and of their EMA if the state
  has one (`eval_ema/...`, vit_jax/train/ema.py)."""
  run = lambda params: evaluators.run_all(task.evaluators, params, mesh)
  metrics = run(state['params'])
  metrics.update(ema.eval_metrics(run, state))
  return metrics


def _train(task, workdir, stop_requests):
  """The body of `train_and_evaluate`, with the workdir locked."""
  config = task.config
  is_main = jax.process_index() == 0
  if is_main:
    atomic_file.write(layout.path(workdir, layout.CONFIG),
                      config.to_json_best_effort(indent=2))
  task.prepare(workdir)
  mesh = sharding.make_mesh(config.mesh)
  init_key, step_key = jax.random.split(jax.random.PRNGKey(config.seed))
  manager = checkpoints.Manager(workdir, config)
  state, state_sh = task.init_state(mesh, init_key)
  state = manager.restore_latest(state) or state
  start = int(state['step'])

  step_fn = task.train_step(step_key)
  if config.get('nonfinite', 'stop') == 'skip':
    step_fn = _skipping_nonfinite(step_fn)
  train_step = jax.jit(
      step_fn, in_shardings=(state_sh, sharding.batch_sharding(mesh)),
      out_shardings=(state_sh, sharding.replicated(mesh)), donate_argnums=0)

  out = _Outputs(workdir, config.total_steps, start, is_main)
  out.console.line(_start_line(task, workdir, start, state['params'], mesh))
  batches = sharding.on_mesh(mesh, task.train_batches(start),
                             config.batch_size,
                             ahead=sharding.DEVICE_PREFETCH)
  pending, t_log, eval_metrics = [], time.time(), None
  for step in range(start + 1, config.total_steps + 1):
    state, metrics = train_step(state, next(batches))
    pending.append(metrics)
    out.console.tick(step)
    at_end = step == config.total_steps
    stop = stop_requests.should_stop(step)  # Each step, on every process.
    save = at_end or step % config.checkpoint_every == 0 or stop
    if step % config.log_every == 0 or save:
      # Fetching the losses also checks them before anything is saved.
      values = jax.device_get(pending)
      if config.get('nonfinite', 'stop') == 'stop':
        _check_finite(values, step, manager)
      if step % config.log_every == 0:
        now = time.time()
        record = _train_record(values, now - t_log, config.batch_size)
        out.write(step, record)
        out.console.step(step, record)
        pending, t_log = [], now
    if save:
      manager.save(step, state)
    if stop and not at_end:
      batches.close()
      manager.close()  # Waits for the save.
      out.close()
      raise stop_requests.stopped(step, manager.directory)
    if at_end or step % config.eval_every == 0:
      t_eval = time.time()
      eval_metrics = _evaluate(task, state, mesh)
      out.write(step, eval_metrics)
      out.console.eval(step, eval_metrics)
      t_log += time.time() - t_eval  # Throughput counts training time only.

  # Ends the input stream (tf.data threads) now, not at interpreter exit:
  # short runs then took 4-5 s to exit after params.npz, 1.3 s with this.
  # (Runs also stalled here for 24-40 s now and then, until tf.data's
  # autotuning was turned off: data/input_pipeline.py.)
  batches.close()
  if eval_metrics is None:  # Resumed after the last step: just report.
    eval_metrics = _evaluate(task, state, mesh)
  manager.close()
  _save_params(workdir, state)
  out.close()
  return eval_metrics
