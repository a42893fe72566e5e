"""`train_and_evaluate(config, workdir)`: the one training loop.

One batch, end to end: `input_pipeline.train_iterator` yields this process's
slice of global batch `step` (a function of seed and step) ->
`jax.make_array_from_process_local_data` places it on the mesh, two batches
ahead of the step -> the jitted `train_step` (dropout rng = fold_in(key,
step), so it does not depend on the device count) -> metrics to
metrics.jsonl, TensorBoard and stderr -> an orbax checkpoint every
`checkpoint_every` steps -> `params.npz` at the end.
"""
import json
import os
import time
from typing import Any, Dict

from clu import metric_writers
from etils import epath
import jax
from jax.experimental import multihost_utils
import ml_collections
import numpy as np

from vit_jax import augreg
from vit_jax import checkpoint
from vit_jax import console
from vit_jax import fewshot
from vit_jax import input_pipeline
from vit_jax import metrics_file
from vit_jax import optim
from vit_jax import preemption
from vit_jax import sharding
from vit_jax import steps
from vit_jax import train_checkpoints
from vit_jax import validate
from vit_jax.evaluators import classification
from vit_jax import workdir_lock

State = Dict[str, Any]

# Train batches put on the devices ahead of the step that uses them.
_DEVICE_PREFETCH = 2


class NonFiniteLossError(RuntimeError):
  """Training produced a NaN/Inf loss (the last good checkpoint is kept)."""


def _write_atomically(path: epath.Path, text: str) -> None:
  """Writes beside `path` and renames: a kill never leaves half a file."""
  tmp = path.parent / f'{path.name}.tmp'
  tmp.write_text(text)
  tmp.replace(path)


class _Outputs:
  """metrics.jsonl + clu writers (TensorBoard) + the stderr progress lines.

  Only process 0 writes files; every process keeps quiet otherwise.
  """

  def __init__(self, workdir, total_steps, start_step, active):
    self.active = active
    self.path = epath.Path(workdir) / 'metrics.jsonl'
    self.writer = metric_writers.create_default_writer(
        workdir, just_logging=not active, asynchronous=False)
    if active and self.path.exists():
      # Steps after the restored checkpoint are re-run: drop their records.
      keep = [json.dumps(r) + '\n' for r in metrics_file.read(self.path)
              if r['step'] <= start_step]
      _write_atomically(self.path, ''.join(keep))
    self.console = console.Progress(total_steps, start_step, active)

  def write(self, step, metrics):
    self.writer.write_scalars(step, metrics)
    if self.active:
      with self.path.open('a') as f:
        f.write(json.dumps({'step': step, **metrics}) + '\n')

  def close(self):
    self.writer.flush()
    self.writer.close()


def _split_arrays(config, split: str, limit: int):
  """The first `limit` examples of `split`, eval-preprocessed, as arrays."""
  config = ml_collections.ConfigDict(config.to_dict())
  config.eval_split = split
  images, labels, count = [], [], 0
  for batch in input_pipeline.eval_iterator(config):
    mask = batch['mask']
    images.append(batch['image'][mask])
    labels.append(batch['label'][mask])
    count += int(mask.sum())
    if count >= limit:
      break
  return np.concatenate(images)[:limit], np.concatenate(labels)[:limit]


def _fewshot_evaluator(config):
  """`config.fewshot` (shots, num_train, num_test) -> evaluator; None when
  `shots` is empty.

  The few-shot pool is the start of the train split, the test set the start
  of the eval split; both go through eval preprocessing.
  """
  c = config.get('fewshot')
  if not c or not c.shots:
    return None
  return fewshot.FewShotEvaluator(
      *_split_arrays(config, config.train_split, c.num_train),
      *_split_arrays(config, config.eval_split, c.num_test),
      shots=tuple(c.shots), seed=config.seed)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str):
  """Trains `config` in `workdir`, resuming from its latest checkpoint.

  Returns the final eval metrics.

  Raises:
    workdir_lock.WorkdirInUse: another run holds `workdir`.
    preemption.Stopped: a signal stopped the run (a checkpoint is saved).
  """
  config = augreg.resolve(config)  # An AugReg name -> pretrained_path.
  info = validate.validate(config, workdir=workdir,
                           num_devices=jax.device_count(),
                           num_processes=jax.process_count())
  with workdir_lock.hold(workdir), preemption.StopRequests(
      jax.process_count()) as stop_requests:
    return _train(config, workdir, info, stop_requests)


def _start_line(config, workdir, start, params, mesh) -> str:
  count = sum(x.size for x in jax.tree.leaves(params))
  data = config.dataset + (f' ({config.data_dir})' if config.data_dir else '')
  return (f"Starting at step {start} of {config.total_steps}: "
          f"{config.model.get('model_name', 'model')} "
          f'({count / 1e6:.3g}M params) on {jax.device_count()} devices '
          f'({jax.default_backend()}) in {jax.process_count()} '
          'process(es), mesh ' + ' '.join(f'{k}={v}' for k, v in
                                          mesh.shape.items()) +
          f', data {data}, workdir {workdir}')


def _train(config, workdir, info, stop_requests):
  """The body of `train_and_evaluate`, with the workdir locked."""
  is_main = jax.process_index() == 0
  mesh = sharding.make_mesh(config.mesh)
  model = steps.create_model(config, info.num_classes)
  tx = optim.make_optimizer(config)
  init_key, dropout_key = jax.random.split(jax.random.PRNGKey(config.seed))

  if is_main:
    _write_atomically(epath.Path(workdir) / 'config.json',
                      config.to_json_best_effort(indent=2))

  manager = train_checkpoints.Manager(workdir, config)
  state, state_sh = steps.init_state(config, model, tx, init_key, mesh)
  state = manager.restore_latest(state) or state
  start = int(state['step'])

  batch_sh = sharding.batch_sharding(mesh)
  train_step = jax.jit(
      steps.make_train_step(config, model, tx, dropout_key),
      in_shardings=(state_sh, batch_sh),
      out_shardings=(state_sh, sharding.replicated(mesh)), donate_argnums=0)
  eval_step = jax.jit(classification.make_eval_step(model))
  fewshot_evaluator = _fewshot_evaluator(config)

  def run_eval():
    metrics = classification.evaluate_split(config, eval_step,
                                            state['params'], mesh)
    if fewshot_evaluator is not None:
      metrics.update(fewshot_evaluator.run(fewshot.pre_logits_fn(model),
                                           state['params']))
    return metrics

  out = _Outputs(workdir, config.total_steps, start, is_main)
  out.console.line(_start_line(config, workdir, start, state['params'], mesh))
  batches = sharding.on_mesh(mesh, input_pipeline.train_iterator(
      config, start_step=start, process_index=jax.process_index(),
      process_count=jax.process_count()), config.batch_size,
                     ahead=_DEVICE_PREFETCH)
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
      losses = np.array([m['train/loss'] for m in values])
      if config.get('nonfinite', 'stop') == 'stop' and not np.all(
          np.isfinite(losses)):
        bad = step - len(values) + 1 + int(np.argmin(np.isfinite(losses)))
        manager.close()
        raise NonFiniteLossError(
            f'Non-finite training loss at step {bad}; the last good '
            f'checkpoint is kept in {manager.directory}. Lower the learning '
            "rate, or set --config.nonfinite=skip to skip such steps.")
      if step % config.log_every == 0:
        now = time.time()
        ips = len(values) * config.batch_size / (now - t_log)
        record = {k: float(np.mean([m[k] for m in values])) for k in values[0]}
        record['train/lr'] = float(values[-1]['train/lr'])
        record['train/images_per_sec'] = ips
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
      eval_metrics = run_eval()
      out.write(step, eval_metrics)
      out.console.eval(step, eval_metrics)
      t_log += time.time() - t_eval  # Throughput counts training time only.

  # Ends the input stream (tf.data threads) now, not at interpreter exit:
  # short runs then took 4-5 s to exit after params.npz, 1.3 s with this.
  # (Runs also stalled here for 24-40 s now and then, until tf.data's
  # autotuning was turned off: input_pipeline.py.)
  batches.close()
  if eval_metrics is None:  # Resumed after the last step: just report.
    eval_metrics = run_eval()
  manager.close()
  params = state['params']
  if jax.process_count() > 1:
    params = multihost_utils.process_allgather(params, tiled=True)
  if is_main:
    checkpoint.save_npz(os.path.join(workdir, 'params.npz'),
                        jax.device_get(params))
  out.close()
  return eval_metrics
