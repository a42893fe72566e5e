"""The original's `train` (and `utils`, `inference_time`): its pmapped update
step, learning-rate schedule and `train_and_evaluate`, over this package's
loss, optimizer schedule and trainer.

The original splits a batch over the local devices with `jax.pmap` and keeps
one copy of the params per device (`flax.jax_utils.replicate`); both still
work on the pinned jax, and `make_update_fn` is such a step. This package's
trainer writes the same step with `jit` on a device mesh instead
(`train/steps.py`, `train/sharding.py`): the params and optimizer state are
placed once with `NamedSharding`s (replicated, or sharded with `fsdp`), the
batch is one global array sharded over the 'data' axis of the mesh, and the
step is `jax.jit(train_step, in_shardings=..., out_shardings=...,
donate_argnums=0)`; XLA inserts the gradient all-reduce that `pmean` spells
out here.
"""
import functools
import os
import time
from typing import Any, Callable, NamedTuple

from absl import logging
from clu import metric_writers
from flax.training import checkpoints as flax_checkpoints
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from vit_jax import checkpoint
from vit_jax import models
from vit_jax.original import translate
from vit_jax.train import optim
from vit_jax.train import steps
from vit_jax.train import tasks
from vit_jax.workdir import layout


class _Applied(NamedTuple):
  """What `steps.make_train_step` reads of a model: `apply`, `num_classes`."""
  apply: Callable[..., Any]
  num_classes: int


def _synced(tx: optax.GradientTransformation) -> optax.GradientTransformation:
  """`tx` on the gradients averaged over the pmapped 'batch' axis (its state
  is `tx`'s own, so `tx.init(params)` initialises it)."""
  def update(grads, state, params=None):
    return tx.update(jax.lax.pmean(grads, 'batch'), state, params)
  return optax.GradientTransformation(tx.init, update)


def make_update_fn(*, apply_fn, accum_steps: int,
                   tx: optax.GradientTransformation):
  """The original's pmapped step
  `(params, opt_state, batch, rng) -> (params, opt_state, loss, rng)`.

  Every argument has a leading local-device axis (`replicate`d params and
  state, batches from `input_pipeline` with one-hot labels). Each device runs
  this package's step (`steps.make_train_step`: softmax cross-entropy,
  `accum_steps` micro-batches) on its share, its dropout rng folded with its
  device index; the gradients are averaged over the devices before `tx`.
  The labels must be one-hot, as the original's pipeline gives them (this
  step takes their argmax). The module docstring says how the same step is
  written with `jit` on a mesh.
  """
  config = ml_collections.ConfigDict(dict(
      accum_steps=max(accum_steps or 1, 1), total_steps=1,
      lr=dict(base=0.0, warmup_steps=0, decay='constant')))  # lr: unused.
  synced = _synced(tx)

  def update_fn(params, opt_state, batch, rng):
    _, new_rng = jax.random.split(rng)
    dropout_rng = jax.random.fold_in(rng, jax.lax.axis_index('batch'))
    model = _Applied(apply_fn, batch['label'].shape[-1])
    step = steps.make_train_step(config, model, synced, dropout_rng)
    state, metrics = step(
        {'params': params, 'opt_state': opt_state, 'step': 0},
        {'image': batch['image'], 'label': jnp.argmax(batch['label'], -1)})
    loss = jax.lax.pmean(metrics['train/loss'], 'batch')
    return state['params'], state['opt_state'], loss, new_rng

  return jax.pmap(update_fn, axis_name='batch', donate_argnums=(0,))


def create_learning_rate_schedule(total_steps: int, base: float,
                                  decay_type: str, warmup_steps: int,
                                  linear_end: float = 1e-5):
  """step -> lr: linear warmup to `base`, then 'cosine' decay to 0 or
  'linear' decay to `linear_end` (this package's `optim.lr_schedule`)."""
  if decay_type not in ('cosine', 'linear'):
    raise ValueError(f"Unknown lr type {decay_type!r}: 'cosine' or 'linear'.")
  return optim.lr_schedule(ml_collections.ConfigDict(dict(
      total_steps=total_steps,
      lr=dict(base=base, warmup_steps=warmup_steps, decay=decay_type,
              end=0.0 if decay_type == 'cosine' else linear_end / base))))


def _train(config: ml_collections.ConfigDict, workdir: str):
  """This package's trainer: the one place the adapters call it."""
  return tasks.train_and_evaluate(config, workdir)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str):
  """Trains `config`, an original config (`configs.common.get_config()`) or
  one of this package's, in `workdir`.

  An original config is translated (`translate.to_project_config`), trained
  by this package's trainer, and, as the original, leaves
  `workdir/checkpoint_N` (flax's checkpoint of (params, {}, N) at the last
  step N: the optimizer state is in workdir/checkpoints/, for resuming) and
  returns the final params. This package's config returns the final eval
  metrics, as `train/tasks.py`'s. `config.trainer='inference_time'`
  (`configs/inference_time.py`) runs `inference_time` instead.
  """
  if config.get('trainer') == 'inference_time':
    return inference_time(config, workdir)
  if not translate.is_original(config):
    return _train(config, workdir)
  ours = translate.to_project_config(config)
  _train(ours, workdir)
  params = checkpoint.load(str(layout.path(workdir, layout.PARAMS)))
  if jax.process_index() == 0:
    flax_checkpoints.save_checkpoint(
        os.path.abspath(workdir), (params, {}, ours.total_steps),
        ours.total_steps, overwrite=True)
  return params


def inference_time(config: ml_collections.ConfigDict, workdir: str):
  """Times the forward pass of preset `config.model_name` on `config.batch`
  images of `config.image_size` (`configs/inference_time.py`); writes
  img/s/core statistics to workdir's TensorBoard events, as the original.

  Jitted over the whole batch on the default device (the original pmapped
  it over the local devices: with a mesh, shard the batch as `prefetch`
  says)."""
  for field in ('batch', 'num_classes', 'image_size'):
    if not config.get(field):
      raise ValueError(f'config.{field}={config.get(field)} must be > 0.')
  model = models.get_model(config.model_name, num_classes=config.num_classes)
  images = jnp.ones([config.batch, config.image_size, config.image_size, 3])
  params = jax.jit(functools.partial(model.init, train=False))(
      jax.random.PRNGKey(0), images[:1])
  apply = jax.jit(functools.partial(model.apply, train=False))
  apply(params, images).block_until_ready()  # Compiles.
  for _ in range(config.initial_steps):
    apply(params, images).block_until_ready()
  times = []
  for _ in range(config.steps):
    start = time.perf_counter()
    apply(params, images).block_until_ready()
    times.append(time.perf_counter() - start)
  per_core = config.batch / jax.local_device_count() / np.array(times)
  stats = {f'imgs_sec_core_{k}': float(getattr(per_core, k)())
           for k in ('min', 'max', 'mean', 'std')}
  logging.info('inference time: %s', stats)
  writer = metric_writers.create_default_writer(workdir, asynchronous=False)
  writer.write_hparams(config.to_dict())
  writer.write_scalars(0, stats)
  writer.close()
  return stats
