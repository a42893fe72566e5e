"""The train step every task shares (`make_step`), and the classifier's
model, loss, state and step: what `task_classify` gives the training loop,
`benchmark` times and `compile_report` compiles.

A task brings its loss, `loss(params, batch, rng) -> (loss, aux metrics)`;
`make_step` owns what every task's step does around it: the step's random
stream, gradient accumulation, frozen params, the optimizer update, the EMA
and the metrics. (The non-finite guard is the loop's, gradient clipping the
optimizer's: `optim.make_optimizer`; dtype, remat and scan are the model's,
built by its task.)

Kept apart from the training loop so that these need neither the input
pipeline (TensorFlow) nor the metric writers and checkpoint manager: the
benchmark runs where only jax, flax and optax are installed.
"""
import functools
from typing import Any, Callable, Dict, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from vit_jax import checkpoint
from vit_jax import models
from vit_jax.data import mixup
from vit_jax.models import flexi
from vit_jax.train import ema
from vit_jax.train import optim
from vit_jax.train import sharding

Batch = Dict[str, Any]
# (params, batch or micro-batch, rng) -> (scalar loss, {metric name: value}).
Loss = Callable[[Any, Batch, jax.Array], Tuple[jax.Array, Dict[str, Any]]]


def _behind_stop_gradient(loss_fn: Loss, frozen) -> Loss:
  """`loss_fn` with the params `frozen` marks (a tree of bools) constant."""

  def loss(params, batch, rng):
    params = jax.tree.map(lambda p, f: jax.lax.stop_gradient(p) if f else p,
                          params, frozen)
    return loss_fn(params, batch, rng)

  return loss


def make_step(config, loss_fn: Loss, tx: optax.GradientTransformation,
              key: jax.Array, *,
              prepare: Optional[Callable[[Batch, jax.Array], Batch]] = None,
              frozen: Any = None):
  """(state, global batch) -> (state, metrics): one step of any task.

  - `prepare(batch, step)`, if given, turns the global batch into what the
    loss reads, before it is split (the classifier's one-hot labels and
    Mixup, LiT's caption tokens): what must see the whole batch.
  - The loss's rng is fold_in(key, step), so it depends neither on the
    device count nor on where a run was resumed.
  - With `accum_steps` > 1 the batch is split into micro-batches of examples
    {i, i + accum, i + 2*accum, ...}, so each device holds its share of every
    micro-batch; micro-batch i's rng is fold_in(rng, i), and the losses,
    gradients and aux metrics are averaged. (A task whose loss compares the
    examples of a batch with each other refuses accum_steps > 1.)
  - `frozen` (a tree of bools like the params, or None): those params sit
    behind stop_gradient; the optimizer must leave them alone too
    (`optim.make_optimizer(config, frozen)`).
  - With an `ema_params` entry in the state, the EMA follows the params
    (`ema.py`, decay `config.ema_decay`).
  - Metrics: train/loss, train/grad_norm, train/lr (the step's) and the
    loss's aux metrics.
  """
  accum = config.get('accum_steps', 1)
  schedule = optim.lr_schedule(config)
  if frozen is not None:
    loss_fn = _behind_stop_gradient(loss_fn, frozen)
  grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

  def train_step(state, batch):
    params, step = state['params'], state['step']
    rng = jax.random.fold_in(key, step)
    if prepare is not None:
      batch = prepare(batch, step)
    if accum == 1:
      (loss, aux), grads = grad_fn(params, batch, rng)
    else:
      micro = jax.tree.map(
          lambda x: x.reshape((-1, accum) + x.shape[1:]).swapaxes(0, 1),
          batch)

      def accumulate(carry, xs):
        i, micro_batch = xs
        (loss, aux), grads = grad_fn(params, micro_batch,
                                     jax.random.fold_in(rng, i))
        return jax.tree.map(jnp.add, carry, (loss, grads)), aux

      zeros = (jnp.zeros(()), jax.tree.map(jnp.zeros_like, params))
      (loss, grads), aux = jax.lax.scan(accumulate, zeros,
                                        (jnp.arange(accum), micro))
      loss, grads = jax.tree.map(lambda x: x / accum, (loss, grads))
      aux = jax.tree.map(lambda x: x.mean(0), aux)

    updates, opt_state = tx.update(grads, state['opt_state'], params)
    new = {'step': step + 1, 'params': optax.apply_updates(params, updates),
           'opt_state': opt_state}
    if 'ema_params' in state:
      new['ema_params'] = ema.update(state['ema_params'], new['params'],
                                     config.ema_decay)
    metrics = {'train/loss': loss, 'train/grad_norm': optax.tree.norm(grads),
               'train/lr': schedule(step), **aux}
    return new, metrics

  return train_step


def create_model(config, num_classes: int):
  """The model of `config.model` (ViT or Mixer: `models.create`) with the
  config's compute settings."""
  return models.create(
      config.model, num_classes,
      dtype=jnp.dtype(config.get('dtype', 'float32')),
      remat=config.get('remat', False), scan=config.get('scan', False))


def classifier_loss(config, model) -> Loss:
  """Softmax cross-entropy of the logits against the batch's 'target'
  distributions, smoothed by `label_smoothing`; with `flexi_patch_sizes`
  the model runs at a patch size drawn from them by the step's rng."""
  smoothing = config.get('label_smoothing', 0.0)
  flexi_sizes = config.get('flexi_patch_sizes')

  def loss(params, batch, rng):
    if flexi_sizes:  # FlexiViT: a patch size per step (models/flexi.py).
      logits = flexi.apply_at_random_patch_size(
          model, {'params': params}, batch['image'], patch_sizes=flexi_sizes,
          rng=rng, train=True, rngs={'dropout': rng})
    else:
      logits = model.apply({'params': params}, batch['image'], train=True,
                           rngs={'dropout': rng})
    targets = optax.smooth_labels(batch['target'], smoothing)
    return optax.softmax_cross_entropy(logits, targets).mean(), {}

  return loss


def make_train_step(config, model, tx, dropout_key):
  """The classifier's step: `make_step` of `classifier_loss`.

  The labels become distributions over the whole global batch before it is
  split into micro-batches: one-hot, or mixed by `mixup.mix_batch` with
  rng = fold_in(key', step) when the config turns Mixup / CutMix on (key' a
  stream apart from dropout's), then label smoothing applies to them in the
  loss.
  """
  mixing = mixup.enabled(config)
  mix_key = jax.random.fold_in(dropout_key, 0x6D6978)  # 'mix'

  def prepare(batch, step):
    images = batch['image']
    targets = jax.nn.one_hot(batch['label'], model.num_classes)
    if mixing:
      images, targets = mixup.mix_batch(
          config, jax.random.fold_in(mix_key, step), images, targets)
    return {'image': images, 'target': targets}

  return make_step(config, classifier_loss(config, model), tx, dropout_key,
                   prepare=prepare)


def fresh_state(step, params, tx, with_ema: bool):
  """The train state at `step` for `params`: fresh optimizer moments and,
  `with_ema`, an EMA that starts at the params (vit_jax/train/ema.py)."""
  state = {'step': step, 'params': params, 'opt_state': tx.init(params)}
  if with_ema:
    state['ema_params'] = ema.init(params)
  return state


def _state_initializer(model, tx, image_size: int, with_ema: bool = False):
  """key -> a fresh train state (step 0) for `image_size` inputs."""
  dummy = jnp.zeros((1, image_size, image_size, 3), jnp.float32)

  def init(key):
    params = model.init(key, dummy, train=False)['params']
    return fresh_state(jnp.zeros((), jnp.int32), params, tx, with_ema)

  return init


def init_state(config, model, tx, init_key, mesh):
  """Initialises (or fine-tunes from `pretrained_path`) directly sharded
  over `mesh` (`sharding.state_shardings`); returns (state, its shardings)."""
  size = config.image_size
  with_ema = bool(config.get('ema_decay'))
  init = _state_initializer(model, tx, size, with_ema)
  abstract = jax.eval_shape(init, init_key)
  state_sh = sharding.state_shardings(mesh, abstract)
  state = jax.jit(init, out_shardings=state_sh)(init_key)
  if config.get('pretrained_path'):
    params = checkpoint.load_pretrained(
        pretrained_path=config.pretrained_path,
        init_params=jax.device_get(state['params']), model_config=config.model,
        grid_size=models.token_grid(config.model, size))
    params = jax.device_put(params, state_sh['params'])
    state = jax.jit(functools.partial(fresh_state, tx=tx, with_ema=with_ema),
                    out_shardings=state_sh)(state['step'], params)
  return state, state_sh


def compile_report(config, num_classes: int, compile_step: bool = True):
  """Compiles (without running) the train step of `config` on this host.

  Returns the train state's total bytes, its bytes per device under the
  config's mesh (from the shardings), and the compiled step's argument bytes
  per device (from XLA's memory analysis) — the FSDP arithmetic, checked.
  `compile_step=False`: the first two only, without compiling (seconds, not
  minutes, for a large unrolled model).
  """
  mesh = sharding.make_mesh(config.mesh)
  model = create_model(config, num_classes)
  tx = optim.make_optimizer(config)
  size = config.image_size
  abstract = jax.eval_shape(_state_initializer(
      model, tx, size, bool(config.get('ema_decay'))),
                            jax.random.PRNGKey(0))
  shardings = sharding.state_shardings(mesh, abstract)
  leaves = list(zip(jax.tree.leaves(abstract), jax.tree.leaves(shardings)))
  total = sum(x.size * x.dtype.itemsize for x, _ in leaves)
  per_device = sum(int(np.prod(s.shard_shape(x.shape))) * x.dtype.itemsize
                   for x, s in leaves)
  report = {'state_bytes': total, 'state_bytes_per_device': per_device}
  if not compile_step:
    return report
  batch_sh = sharding.batch_sharding(mesh)
  batch = {'image': jax.ShapeDtypeStruct((config.batch_size, size, size, 3),
                                         jnp.float32, sharding=batch_sh),
           'label': jax.ShapeDtypeStruct((config.batch_size,), jnp.int32,
                                         sharding=batch_sh)}
  step = jax.jit(make_train_step(config, model, tx, jax.random.PRNGKey(0)),
                 in_shardings=(shardings, batch_sh),
                 out_shardings=(shardings, sharding.replicated(mesh)),
                 donate_argnums=0)
  abstract = jax.tree.map(
      lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
      abstract, shardings)
  compiled = step.lower(abstract, batch).compile()
  report['compiled_argument_bytes'] = (
      compiled.memory_analysis().argument_size_in_bytes)
  return report
