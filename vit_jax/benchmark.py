r"""Speed, FLOPs and memory of the trainer's real train step (or inference).

  python -m vit_jax.benchmark --model=ViT-B_16 --batch_size=64 \
      --image_size=224 --mode=train --steps=20 [--dtype=bfloat16] [--remat]
      [--scan] [--cpu_devices=N]
  python -m vit_jax.benchmark --config=configs/default.py[:ARG] \
      [--config.batch_size=256] [--num_classes=10] [--mode=train] [--steps=20]

Train mode times exactly what the classifier task (`train/task_classify.py`)
runs in the loop: the config is `common.base_config()` with the preset as `config.model`, the
model, optimizer (AdamW + clipping) and state come from `train/steps.py` and
`train/optim.py`, and the step is `steps.make_train_step` jitted with the same
shardings over `sharding.make_mesh(config.mesh)` and the same buffer donation.
With `--config` the whole experiment config comes from that file (model, batch
and image size, dtype, remat, scan, mesh, CPU split; `--config.FIELD=VALUE`
overrides a field), so any experiment, the default job included, is timed as
`main.py` would run it; the preset flags are then not to be given. Infer mode
times a jitted `model.apply(..., train=False)`. The batch is synthetic and
already on the devices, so the input pipeline is not part of the figure. On a
CPU the process is split into one JAX device per core, as `main.py` does
(`--cpu_devices`, `vit_jax/train/cpu_devices.py`), unless XLA_FLAGS sets a
device count.

Each timed step is waited for (`block_until_ready`), and `step_time_ms` is the
median over the timed steps: the median, not the mean, because on a shared
machine a few steps are slowed by other processes.

`--input` (with `--config`) also times the train input pipeline alone, built as
`train/task_classify.py` builds it (`input_pipeline.train_iterator` for the
config's dataset, put on the devices by `sharding.on_mesh`): the record then has
`input_images_per_sec` next to the step's `images_per_sec`, the `data_threads`
used, `input_images_per_cpu_sec` (images per CPU-second of the whole process:
what one core feeds, robust to other load), and `bottleneck`: 'input' when the
pipeline feeds fewer images per second than the step consumes, else 'step'. The
two are timed one after the other, so on a CPU-only host, where they would share
the cores in training, each figure is what it achieves alone.

Progress goes to stderr; the last stdout line is one JSON object with
`images_per_sec`, `step_time_ms`, `compile_s`, `gflops_per_image`,
`achieved_tflops`, `mfu` (null where the device's peak is not in
`_PEAK_TFLOPS`, e.g. on CPU), `peak_memory_bytes`, `device`, the settings,
and the environment variables that change CPU timings (`env`).
`gflops_per_image` is analytic (see `forward_flops`); a train step counts as
3x the forward (forward, plus two matmuls per matmul in the backward pass),
also when `--remat` recomputes the forward, as is usual for MFU.
"""
import json
import math
import os
import statistics
import sys
import time
from typing import Optional

from absl import app
from absl import flags
import jax
import jax.numpy as jnp

from vit_jax import command_line
from vit_jax import models
from vit_jax import progress
from vit_jax.configs import common
from vit_jax.configs import models as models_config
from vit_jax.train import cpu_devices as cpu_split
from vit_jax.train import optim
from vit_jax.train import sharding
from vit_jax.train import steps

_CONFIG = command_line.define_config(
    None, 'Experiment config file, optionally with `:ARG` (e.g. '
    'configs/default.py): time its train step instead of a preset\'s.')
_MODEL = flags.DEFINE_string('model', 'ViT-B_16',
                             'Preset name from vit_jax/configs/models.py.')
_BATCH_SIZE = flags.DEFINE_integer('batch_size', 32,
                                   'Global batch size (over all devices).')
_IMAGE_SIZE = flags.DEFINE_integer('image_size', 224, 'Image side in pixels.')
_MODE = flags.DEFINE_enum('mode', 'train', ['train', 'infer'],
                          'Time the train step or a forward pass.')
_STEPS = flags.DEFINE_integer('steps', 10, 'Timed steps.')
_WARMUP = flags.DEFINE_integer('warmup', 2,
                               'Untimed steps after compiling.')
_DTYPE = flags.DEFINE_enum('dtype', 'float32', ['float32', 'bfloat16'],
                           'Compute dtype (params stay float32).')
_REMAT = flags.DEFINE_bool('remat', False,
                           'Recompute block activations in the backward pass.')
_SCAN = flags.DEFINE_bool('scan', False,
                          'Run the blocks as one scan over stacked params.')
_NUM_CLASSES = flags.DEFINE_integer('num_classes', 1000, 'Classifier width.')
_INPUT = flags.DEFINE_bool(
    'input', False, 'With --config: also time the train input pipeline on '
    'the config\'s dataset, to see whether input or step is the bottleneck.')
_INPUT_BATCHES = flags.DEFINE_integer(
    'input_batches', 30, 'Timed input batches (--input), after --warmup.')
_CPU_DEVICES = flags.DEFINE_integer(
    'cpu_devices', 0, 'JAX devices on a CPU: 0 = one per core where the batch '
    'splits over them, N = exactly N (config.cpu_devices).')

# Flags that `--config` replaces by the config's own fields.
_PRESET_FLAGS = ('model', 'batch_size', 'image_size', 'dtype', 'remat', 'scan',
                 'cpu_devices')

# Process settings that change the timings; recorded with the figures (see
# benchmarks/README.md for the allocator setting on CPU).
_ENV_VARS = ('XLA_FLAGS', 'GLIBC_TUNABLES')

# Dense peak TFLOP/s per device, by a substring of `device_kind` (first match
# wins, so more specific names come first). 'float32' is what XLA runs a
# float32 matmul at by default: TF32 tensor cores on A100/H100, and a single
# bfloat16 pass on TPU (jax's default matmul precision), hence those values.
_PEAK_TFLOPS = (
    ('H100 PCIe', {'bfloat16': 756.0, 'float32': 378.0}),
    ('H100', {'bfloat16': 989.0, 'float32': 494.7}),  # SXM.
    ('H200', {'bfloat16': 989.0, 'float32': 494.7}),
    ('A100', {'bfloat16': 312.0, 'float32': 156.0}),
    ('V100', {'float32': 15.7}),  # No bfloat16 tensor cores.
    ('TPU v4', {'bfloat16': 275.0, 'float32': 275.0}),
    ('TPU v5 lite', {'bfloat16': 197.0, 'float32': 197.0}),  # v5e.
    ('TPU v5e', {'bfloat16': 197.0, 'float32': 197.0}),
)


def peak_tflops(device_kind: str, dtype: str) -> Optional[float]:
  """Peak TFLOP/s of one device of `device_kind`; None when not in the table."""
  for name, peaks in _PEAK_TFLOPS:
    if name in device_kind:
      return peaks.get(dtype)
  return None


def _resnet_macs(resnet, image_size):
  """(MACs, output channels) of the hybrid stem (models_resnet.resnet_stem).

  A conv costs out_h * out_w * k_h * k_w * c_in * c_out; padding is SAME, so
  a stride-2 layer gives ceil(size / 2).
  """
  half = lambda n: math.ceil(n / 2)
  width = int(64 * resnet['width_factor'])
  h = w = half(image_size)
  macs = h * w * 7 * 7 * 3 * width  # conv_root, stride 2.
  h, w = half(h), half(w)  # Max-pool.
  c_in = width
  for i, block_size in enumerate(resnet['num_layers']):
    features = width * 2**i
    for unit in range(block_size):
      h_in, w_in = h, w
      if i > 0 and unit == 0:
        h, w = half(h), half(w)
      macs += h_in * w_in * c_in * features  # conv1, 1x1.
      macs += h * w * 3 * 3 * features * features  # conv2, strided.
      macs += h * w * features * 4 * features  # conv3, 1x1.
      if c_in != 4 * features or (h, w) != (h_in, w_in):
        macs += h * w * c_in * 4 * features  # conv_proj, strided.
      c_in = 4 * features
  return macs, c_in


def _mixer_flops(model_config, image_size: int, num_classes: int) -> int:
  """Analytic FLOPs of one image through an MLP-Mixer, counted as for ViT.

  With g patches of ph x pw pixels, C input channels, hidden size D, token
  MLP width S, channel MLP width Dc, L blocks and K classes:
    stem        g * ph * pw * C * D
    per block   2 * D * g * S      token mixing (two Dense over the tokens)
              + 2 * g * D * Dc     channel mixing
    head        D * K
  """
  rows, cols = models.token_grid(model_config, image_size)
  size = model_config['patches']['size']
  ph, pw = (size, size) if isinstance(size, int) else tuple(size)
  g, d = rows * cols, model_config['hidden_dim']
  macs = g * ph * pw * 3 * d + d * num_classes
  macs += model_config['num_blocks'] * (
      2 * d * g * model_config['tokens_mlp_dim'] +
      2 * g * d * model_config['channels_mlp_dim'])
  return 2 * macs


def forward_flops(model_config, image_size: int, num_classes: int) -> int:
  """Analytic FLOPs (2 x multiply-adds) of one image's forward pass.

  With g patches of ph x pw pixels (`models.token_grid`), N tokens (g, plus 1
  with a class token), hidden size D, MLP width M, L layers, C input channels
  and K classes, the multiply-adds are
    patch embedding  g * ph * pw * C * D
    per layer        4 * N * D^2      query, key, value and out projections
                   + 2 * N^2 * D      scores q.k and the weighted sum of v
                   + 2 * N * D * M    MLP
    head             D * K, or D * R + R * K with a pre-logits layer of R.
  Hybrids add every convolution of the ResNet stem, and C is then the
  stem's output width. Norms, softmax, GELU, biases and position embeddings
  are left out (a few percent at most), as is usual. Mixers: `_mixer_flops`.
  """
  if models.model_class(model_config) is models.MlpMixer:
    return _mixer_flops(model_config, image_size, num_classes)
  macs, channels = 0, 3
  resnet = model_config.get('resnet')
  if resnet is not None:
    macs, channels = _resnet_macs(resnet, image_size)
  rows, cols = models.token_grid(model_config, image_size)
  size = model_config['patches']['size']
  ph, pw = (size, size) if isinstance(size, int) else tuple(size)
  d = model_config['hidden_size']
  t = model_config['transformer']
  tokens = rows * cols + models.num_prefix_tokens(model_config)
  macs += rows * cols * ph * pw * channels * d
  macs += t['num_layers'] * (4 * tokens * d * d + 2 * tokens * tokens * d +
                             2 * tokens * d * t['mlp_dim'])
  representation = model_config.get('representation_size')
  if representation:
    macs += d * representation
  macs += (representation or d) * num_classes
  return 2 * macs


def make_config(model: str, *, batch_size: int, image_size: int,
                dtype: str = 'float32', remat: bool = False,
                scan: bool = False, cpu_devices: int = 0):
  """The trainer's default config (`common.base_config()`) for `model`."""
  config = common.base_config()
  config.model = models_config.get_model_config(model)
  config.batch_size = batch_size
  config.image_size = image_size
  config.dtype = dtype
  config.remat = remat
  config.scan = scan
  config.cpu_devices = cpu_devices
  return config


def _synthetic_batch(config, num_classes, batch_sh):
  """Images in [-1, 1] and labels, created directly on the devices."""

  def make(key):
    image_key, label_key = jax.random.split(key)
    shape = (config.batch_size, config.image_size, config.image_size, 3)
    return {'image': jax.random.uniform(image_key, shape, jnp.float32, -1, 1),
            'label': jax.random.randint(label_key, (config.batch_size,), 0,
                                        num_classes)}

  return jax.jit(make, out_shardings=batch_sh)(jax.random.PRNGKey(1))


def _lowered_step(config, mode, num_classes, mesh):
  """(lowered step, its first arguments) for `mode`, as the trainer builds it.

  The train step returns the state it was given (donated) as its first
  output; the infer step only ever reads its arguments.
  """
  model = steps.create_model(config, num_classes)
  batch_sh = sharding.batch_sharding(mesh)
  batch = _synthetic_batch(config, num_classes, batch_sh)
  init_key, dropout_key = jax.random.split(jax.random.PRNGKey(config.seed))
  if mode == 'train':
    tx = optim.make_optimizer(config)
    # The trainer's own init, so state and shardings are exactly its own.
    state, state_sh = steps.init_state(config, model, tx, init_key, mesh)
    step = jax.jit(
        steps.make_train_step(config, model, tx, dropout_key),
        in_shardings=(state_sh, batch_sh),
        out_shardings=(state_sh, sharding.replicated(mesh)), donate_argnums=0)
    args = (state, batch)
  else:
    dummy = jnp.zeros((1, config.image_size, config.image_size, 3))
    init = lambda key: model.init(key, dummy, train=False)['params']
    params_sh = sharding.state_shardings(mesh, jax.eval_shape(init, init_key))
    params = jax.jit(init, out_shardings=params_sh)(init_key)
    step = jax.jit(
        lambda params, batch: model.apply({'params': params}, batch['image'],
                                          train=False),
        in_shardings=(params_sh, batch_sh))
    args = (params, batch)
  return step.lower(*args), args


def _peak_memory(compiled):
  """(bytes, source): the allocator's peak, else XLA's static estimate."""
  stats = jax.local_devices()[0].memory_stats()
  if stats and 'peak_bytes_in_use' in stats:
    return int(stats['peak_bytes_in_use']), 'memory_stats'
  analysis = compiled.memory_analysis()
  return int(analysis.temp_size_in_bytes + analysis.argument_size_in_bytes +
             analysis.output_size_in_bytes), 'memory_analysis'


def run(model: str, *, batch_size: int, image_size: int, mode: str,
        steps: int, warmup: int = 2, dtype: str = 'float32',
        remat: bool = False, scan: bool = False, num_classes: int = 1000,
        cpu_devices: Optional[int] = None, log=print) -> dict:
  """Compiles and times `steps` steps of preset `model`; the JSON record.

  `cpu_devices` (`config.cpu_devices`) splits the CPU before JAX starts its
  backends; None leaves the devices as they are (JAX already running).
  """
  config = make_config(model, batch_size=batch_size, image_size=image_size,
                       dtype=dtype, remat=remat, scan=scan,
                       cpu_devices=cpu_devices or 0)
  return run_config(config, mode=mode, steps=steps, warmup=warmup,
                    num_classes=num_classes,
                    split_cpu=cpu_devices is not None, log=log, model=model)


def run_config(config, *, mode: str, steps: int, warmup: int = 2,
               num_classes: int = 1000, split_cpu: bool = True, log=print,
               model: Optional[str] = None) -> dict:
  """Compiles and times `steps` steps of an experiment config's step.

  `split_cpu` sets the CPU device count from `config.cpu_devices`, as
  main.py does (call it before JAX's first op); `model` names the record's
  model (default: the config's `model.model_name`).
  """
  model = model or config.model.get('model_name', 'unnamed')
  batch_size, image_size = config.batch_size, config.image_size
  dtype, remat, scan = config.dtype, config.remat, config.scan
  if split_cpu:
    cpu_split.configure(config)
  mesh = sharding.make_mesh(config.mesh)
  if batch_size % mesh.size:
    raise ValueError(f'--batch_size={batch_size} does not split over the '
                     f'{mesh.size} devices; use a multiple of {mesh.size}.')
  log(f'{model} {mode} batch {batch_size} at {image_size} px, {dtype}, on '
      f'{mesh.size} x {jax.devices()[0].device_kind}: compiling')
  lowered, args = _lowered_step(config, mode, num_classes, mesh)
  start = time.perf_counter()
  with progress.waiting('Compiling'):  # The time so far, on a terminal.
    compiled = lowered.compile()
  compile_s = time.perf_counter() - start
  log(f'compiled in {compile_s:.1f}s')

  times = []
  for i in range(warmup + steps):
    start = time.perf_counter()
    out = compiled(*args)
    jax.block_until_ready(out)
    if i >= warmup:
      times.append(time.perf_counter() - start)
      log(f'step {i - warmup + 1}/{steps}: {times[-1] * 1e3:.1f} ms')
    if mode == 'train':
      args = (out[0],) + args[1:]

  step_s = statistics.median(times)
  images_per_sec = batch_size / step_s
  gflops = forward_flops(config.model, image_size, num_classes) / 1e9
  achieved = gflops * (3 if mode == 'train' else 1) * images_per_sec / 1e3
  kind = jax.devices()[0].device_kind
  per_device = peak_tflops(kind, dtype)
  peak = per_device * mesh.size if per_device else None
  memory, memory_source = _peak_memory(compiled)
  return {
      'model': model, 'mode': mode, 'batch_size': batch_size,
      'image_size': image_size, 'dtype': dtype, 'remat': remat,
      'scan': scan,
      'steps': steps, 'images_per_sec': images_per_sec,
      'step_time_ms': step_s * 1e3, 'step_time_ms_min': min(times) * 1e3,
      'compile_s': compile_s, 'gflops_per_image': gflops,
      'achieved_tflops': achieved, 'peak_tflops': peak,
      'mfu': achieved / peak if peak else None,
      'peak_memory_bytes': memory, 'peak_memory_source': memory_source,
      'device': kind, 'num_devices': mesh.size,
      'env': {name: os.environ[name] for name in _ENV_VARS
              if name in os.environ},
  }


def run_input(config, *, batches: int, warmup: int = 2, log=print) -> dict:
  """Times `batches` global batches of the train input pipeline.

  The pipeline is the trainer's own: this process's slice of each batch from
  `input_pipeline.train_iterator`, made one global array on the mesh by
  `sharding.on_mesh` with the trainer's transfer-ahead depth; each batch is
  waited for on the devices. JAX must already be configured (as main.py
  does: `cpu_devices.configure`).
  """
  # Imported here: without --input the benchmark runs where TensorFlow is not
  # installed (an accelerator host that only times steps).
  from vit_jax.data import input_pipeline  # pylint: disable=g-import-not-at-top
  input_pipeline.check_config(config)
  mesh = sharding.make_mesh(config.mesh)
  threads = input_pipeline.data_threads(config)
  log(f'input pipeline: {config.dataset} at {config.image_size} px, '
      f'pp.train={config.pp.train}, batch {config.batch_size}, '
      f'{threads} data thread(s)')
  iterator = sharding.on_mesh(mesh, input_pipeline.train_iterator(
      config, start_step=0, process_index=jax.process_index(),
      process_count=jax.process_count()), config.batch_size,
                              ahead=sharding.DEVICE_PREFETCH)
  for _ in range(warmup):
    jax.block_until_ready(next(iterator))
  start, cpu_start = time.perf_counter(), time.process_time()
  for _ in progress.bar(range(batches), desc='Input batches', unit='batch'):
    jax.block_until_ready(next(iterator))
  elapsed = time.perf_counter() - start
  images = batches * config.batch_size
  return {'input_images_per_sec': images / elapsed,
          'input_images_per_cpu_sec': images / (time.process_time() -
                                                cpu_start),
          'input_batches': batches, 'data_threads': threads}


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  for flag in (_BATCH_SIZE, _IMAGE_SIZE, _STEPS, _INPUT_BATCHES):
    if flag.value <= 0:
      raise app.UsageError(f'--{flag.name} must be positive.')
  log = lambda line: print(line, file=sys.stderr, flush=True)
  if _CONFIG.value is not None:
    given = [f'--{name}' for name in _PRESET_FLAGS if flags.FLAGS[name].present]
    if given:
      raise app.UsageError(
          f'{", ".join(given)} with --config: the config sets these; '
          'override its fields as --config.FIELD=VALUE instead.')
  if _INPUT.value and (_CONFIG.value is None or _MODE.value != 'train'):
    raise app.UsageError('--input needs --config (the dataset and its '
                         'preprocessing) and --mode=train.')
  try:
    if _CONFIG.value is not None:
      config, measured = _CONFIG.value, {}
      if _INPUT.value:  # First: its errors come before a long compile.
        cpu_split.configure(config)
        measured = run_input(config, batches=_INPUT_BATCHES.value,
                             warmup=_WARMUP.value, log=log)
      record = run_config(config, mode=_MODE.value, steps=_STEPS.value,
                          warmup=_WARMUP.value, num_classes=_NUM_CLASSES.value,
                          split_cpu=not _INPUT.value, log=log)
      if _INPUT.value:
        record.update(measured, bottleneck=(
            'input' if measured['input_images_per_sec'] <
            record['images_per_sec'] else 'step'))
        log(f'input pipeline {record["input_images_per_sec"]:.0f} images/s, '
            f'train step {record["images_per_sec"]:.0f} images/s: the '
            f'bottleneck is the {record["bottleneck"]}')
    else:
      record = run(_MODEL.value, batch_size=_BATCH_SIZE.value,
                   image_size=_IMAGE_SIZE.value, mode=_MODE.value,
                   steps=_STEPS.value, warmup=_WARMUP.value,
                   dtype=_DTYPE.value, remat=_REMAT.value, scan=_SCAN.value,
                   num_classes=_NUM_CLASSES.value,
                   cpu_devices=_CPU_DEVICES.value, log=log)
  except ValueError as e:  # Unknown preset, sizes that do not fit.
    print(f'error: {e}', file=sys.stderr)
    sys.exit(1)
  print(json.dumps(record))


if __name__ == '__main__':
  app.run(main, flags_parser=command_line.parse_flags)
