"""Input pipeline: random-access image sources -> deterministic tf.data batches.

The datasets and how they are read are in `sources`: every source is
read by example index, so data order is a function of (seed, step) alone. The
train stream is an endless run of epochs, epoch e in the order
`permutation(seed, e)`; the global batch at step s is stream positions
[s*B, (s+1)*B), and process p of P takes its L = B/P consecutive positions
from s*B + p*L. Augmentation draws its random numbers from (seed, position)
as well, so a global batch is the same whatever the process count, and
resuming at step k yields what an uninterrupted run yields at step k.

TensorFlow only runs here and in `sources`, on CPU: with one thread on
a CPU-only host so that it does not compete with JAX's step for cores, with
all cores but two on an accelerator host (`data_threads`). Config fields of
the data besides the dataset and splits (configs/common.py): `tfds_download`
(False: never download; see `sources`) and `data_threads` (0: sized to the
host).
"""
import atexit
import dataclasses
import functools
import math
import os
from typing import Callable, Iterator, Optional
import weakref

import jax
import numpy as np
import tensorflow as tf

from vit_jax.data import randaugment
from vit_jax.data import sources

Batch = sources.Batch

TRAIN_PREPROCESSING = ('inception_crop', 'random_crop', 'resize')
EVAL_PREPROCESSING = ('resize', 'resize_crop', 'central_crop')

_INCEPTION_ATTEMPTS = 10
# Random numbers per training example. Columns: 0 flip, 1-2 crop position
# (y, x), then (area, aspect ratio) for each inception crop attempt.
_NUM_UNIFORMS = 3 + 2 * _INCEPTION_ATTEMPTS
# RandAugment's numbers come from a stream of their own (seed ^ this), after
# those columns: turning it on leaves the crops and flips as they were.
_RANDAUG_STREAM = 0x52616E64417567  # 'RandAug'
_SPLITMIX64_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_PREFETCH_BATCHES = 2


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  """What the trainer needs to know before it builds the model and loop."""
  num_classes: int
  num_train: int
  num_eval: int


def check_config(config) -> None:
  """Raises a ValueError for preprocessing settings it does not know."""
  if config.pp.train not in TRAIN_PREPROCESSING:
    raise ValueError(f'config.pp.train={config.pp.train!r} is not one of '
                     f'{TRAIN_PREPROCESSING}.')
  if config.pp.eval not in EVAL_PREPROCESSING:
    raise ValueError(f'config.pp.eval={config.pp.eval!r} is not one of '
                     f'{EVAL_PREPROCESSING}.')
  if config.image_size <= 0:
    raise ValueError(f'config.image_size={config.image_size} must be > 0.')
  if not 0 < config.pp.get('crop_min_area', 0.08) <= 1:
    raise ValueError('config.pp.crop_min_area must be in (0, 1].')
  if config.pp.get('crop_padding', 4) < 0:
    raise ValueError('config.pp.crop_padding must be >= 0.')
  randaugment.check(config.pp.get('randaug'))
  if config.get('data_threads', 0) < 0:
    raise ValueError(f'config.data_threads={config.data_threads} must be >= 0 '
                     '(0: sized to the host).')


def _source(config, split: str) -> sources.Source:
  """The split's source, once the preprocessing config has been checked."""
  check_config(config)
  return sources.get_source(config, split)


def get_info(config) -> DatasetInfo:
  """Class and example counts; checks the dataset config and its files.

  Raises:
    ValueError: on an unknown dataset or preprocessing, a missing split or an
      unprepared TFDS dataset, or (image folders) an empty folder or a file
      that does not decode.
  """
  train = _source(config, config.train_split)
  evaluation = _source(config, config.eval_split)
  return DatasetInfo(train.num_classes, train.num_examples,
                     evaluation.num_examples)


# Preprocessing, on batches of same-size images [n, H, W, C] in [0, 255].


def _resize(images, size: int):
  if tuple(images.shape[1:3]) == (size, size):
    return images
  return tf.image.resize(images, (size, size),
                         antialias=_downscales(images.shape[1:3], size))


def _downscales(shape, size: int) -> bool:
  """Whether a resize to `size` shrinks a side of a [h, w] `shape`.

  Antialiasing only widens the kernel when a side shrinks; upscaled, the
  antialiased resize equals plain bilinear (to 1e-3 of 255 here) and costs
  7x the time (2.9 against 0.4 ms for 64 images 28 -> 32 px: on 2 cores the
  input pipeline competes with the train step). Unknown sizes: antialias.
  """
  return any(side is None or side > size for side in shape)


def _pad_crop(images, uniforms, size: int, pad: int):
  """Zero-pads by `pad` pixels, then crops size x size at a random offset."""
  images = tf.pad(images, [[0, 0], [pad, pad], [pad, pad], [0, 0]])
  offsets = tf.cast(uniforms * (2 * pad + 1), tf.int32)  # [n, 2] in [0, 2pad]
  window = tf.range(size)
  images = tf.gather(images, offsets[:, :1] + window, axis=1, batch_dims=1)
  return tf.gather(images, offsets[:, 1:] + window, axis=2, batch_dims=1)


def _inception_window(height, width, uniforms, min_area: float):
  """(top, left, crop_h, crop_w) in pixels, float32[n] each, of an image of
  `height` x `width` (float32 scalars): a random area and aspect ratio.

  As in Inception / `tf.image.sample_distorted_bounding_box`: area fraction
  uniform in [min_area, 1], aspect ratio log-uniform in [3/4, 4/3]; the first
  of `_INCEPTION_ATTEMPTS` candidates that fits in the image is taken, else
  the whole image.
  """
  area = (min_area + (1 - min_area) * uniforms[:, 3::2]) * height * width
  ratio = tf.exp(math.log(3 / 4) + math.log(16 / 9) * uniforms[:, 4::2])
  crop_h, crop_w = tf.sqrt(area / ratio), tf.sqrt(area * ratio)
  fits = (crop_h <= height) & (crop_w <= width)
  first = tf.argmax(tf.cast(fits, tf.int32), axis=1)  # The first True.
  found = tf.reduce_any(fits, axis=1)
  crop_h = tf.where(found, tf.gather(crop_h, first, batch_dims=1), height)
  crop_w = tf.where(found, tf.gather(crop_w, first, batch_dims=1), width)
  top = uniforms[:, 1] * (height - crop_h)
  left = uniforms[:, 2] * (width - crop_w)
  return top, left, crop_h, crop_w


def _crop_and_resize(images, top, left, crop_h, crop_w, size: int):
  """Bilinear samples of pixels [top, top + crop_h) x [left, left + crop_w)
  of each image (pixel coordinates of `images`, float32[n] each)."""
  hw = tf.cast(tf.shape(images)[1:3], tf.float32)
  # crop_and_resize maps a normalised coordinate c to pixel c * (n - 1), so a
  # crop of pixels [top, top + crop_h) spans pixel centres top .. + crop_h - 1.
  last_h, last_w = tf.maximum(hw[0] - 1, 1), tf.maximum(hw[1] - 1, 1)
  boxes = tf.stack([top / last_h, left / last_w, (top + crop_h - 1) / last_h,
                    (left + crop_w - 1) / last_w], axis=1)
  return tf.image.crop_and_resize(images, boxes, tf.range(tf.shape(images)[0]),
                                  (size, size))


def _inception_crop(images, uniforms, size: int, min_area: float):
  """Random-resized crop (`_inception_window`) of same-size images."""
  hw = tf.cast(tf.shape(images)[1:3], tf.float32)
  window = _inception_window(hw[0], hw[1], uniforms, min_area)
  return _crop_and_resize(images, *window, size)


def _decode_inception_crop(data, uniforms, size: int, min_area: float):
  """`_inception_crop` of one encoded image, [1, size, size, 3].

  A JPEG's window is drawn from the shape in its header and only the rows
  and columns that bilinear sampling reads are decoded
  (`decode_and_crop_jpeg`): at ImageNet sizes the crop is a fraction of the
  image, and decoding is most of the pipeline's time. Other formats are
  decoded whole. The window is the same either way, and so are the pixels
  up to JPEG's chroma upsampling at the cut edges.
  """
  is_jpeg = tf.io.is_jpeg(data)
  hw = tf.cond(is_jpeg, lambda: tf.image.extract_jpeg_shape(data)[:2],
               lambda: tf.zeros([2], tf.int32))
  height, width = tf.unstack(tf.cast(hw, tf.float32))
  top, left, crop_h, crop_w = _inception_window(height, width, uniforms[None],
                                                min_area)

  def fused():
    # The pixels that bilinear sampling of centres top .. top + crop_h - 1
    # reads: floor of the first to ceil of the last.
    # (A crop under a pixel wide spans top + crop_h - 1 .. top.)
    def pixels(start, extent, limit):
      first = tf.floor(start + tf.minimum(extent - 1, 0))
      last = tf.math.ceil(start + tf.maximum(extent - 1, 0))
      return (tf.maximum(tf.cast(first, tf.int32), 0),
              tf.minimum(tf.cast(last, tf.int32), limit - 1))

    y0, y1 = pixels(top[0], crop_h[0], hw[0])
    x0, x1 = pixels(left[0], crop_w[0], hw[1])
    image = tf.image.decode_and_crop_jpeg(
        data, tf.stack([y0, x0, y1 - y0 + 1, x1 - x0 + 1]), channels=3)
    return _crop_and_resize(image[None], top - tf.cast(y0, tf.float32),
                            left - tf.cast(x0, tf.float32), crop_h, crop_w,
                            size)

  def whole():
    image = tf.io.decode_image(data, channels=3, expand_animations=False)
    return _inception_crop(image[None], uniforms[None], size, min_area)

  return tf.cond(is_jpeg, fused, whole)


def _resize_crop(images, size: int):
  """Resizes the shorter side to size / 0.875, then takes the central crop."""
  hw = tf.cast(tf.shape(images)[1:3], tf.float32)
  scaled = tf.cast(
      tf.round(hw * round(size / 0.875) / tf.reduce_min(hw)), tf.int32)
  images = tf.image.resize(images, scaled, antialias=True)
  return tf.image.crop_to_bounding_box(images, (scaled[0] - size) // 2,
                                       (scaled[1] - size) // 2, size, size)


def _central_crop(images, size: int):
  """The central square of the shorter side, resized to size x size (the
  original release's LiT preprocessing with crop=True)."""
  hw = tf.shape(images)[1:3]
  side = tf.reduce_min(hw)
  images = tf.image.crop_to_bounding_box(images, (hw[0] - side) // 2,
                                         (hw[1] - side) // 2, side, side)
  return _resize(images, size)


def _flip(images, flip):
  """`images` [n, H, W, C] with image i mirrored left-right where flip[i].

  One example (the decoded-one-by-one path): a `tf.cond` around
  `tf.reverse`; a batch: one gather of each row's columns, reversed where
  flipped. The select `tf.where(flip, images[:, :, ::-1], images)` gave the
  same pixels at 5-10x the cost, 3 ms of an ImageNet-size example's ~4.5 ms
  (TF's CPU kernels for a broadcast select and a negative-stride slice are
  slow paths).
  """
  if images.shape[0] == 1:
    return tf.cond(flip[0], lambda: tf.reverse(images, [2]), lambda: images)
  width = tf.shape(images)[2]
  columns = tf.range(width)
  columns = tf.where(flip[:, None], width - 1 - columns, columns)
  return tf.gather(images, columns, axis=2, batch_dims=1)


def _train_images(images, uniforms, config, cropped: bool = False):
  """The train preprocessing; `cropped`: `_decode_inception_crop` did the
  inception crop while decoding."""
  pp, size = config.pp, config.image_size
  if pp.train == 'inception_crop':
    if not cropped:
      images = _inception_crop(images, uniforms, size,
                               pp.get('crop_min_area', 0.08))
  elif pp.train == 'random_crop':
    images = _pad_crop(_resize(images, size), uniforms[:, 1:3], size,
                       pp.get('crop_padding', 4))
  else:
    images = _resize(images, size)
  if pp.get('flip', False):
    images = _flip(images, uniforms[:, 0] < 0.5)
  if pp.get('randaug'):
    images = randaugment.randaugment(images, uniforms[:, _NUM_UNIFORMS:],
                                     *pp.randaug)
  return images


def _to_model_input(images):
  """float32 RGB in [-1, 1]."""
  images = tf.cast(images, tf.float32)
  if images.shape[-1] == 1:
    images = tf.tile(images, [1, 1, 1, 3])
  return images / 127.5 - 1


def splitmix64(x: np.ndarray) -> np.ndarray:
  """SplitMix64's output function, on uint64 arrays (a good 64-bit hash)."""
  x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
  x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
  return x ^ (x >> np.uint64(31))


def _uniforms(seed: int, positions: np.ndarray,
              count: int = _NUM_UNIFORMS) -> np.ndarray:
  """float32[len(positions), count] in [0, 1) from (seed, position).

  Number j of position p is output p * count + j of a SplitMix64
  stream. SplitMix64's i-th output is mix(state + i * gamma), so any output is
  computed directly: an example's numbers do not depend on the batch or the
  process it lands in, and a whole batch is computed at once in numpy (TF's
  stateless ops would need one op per example to achieve that).
  """
  state = splitmix64(np.array([seed], np.uint64))  # Arrays wrap silently.
  counters = (positions.astype(np.uint64)[:, None] * np.uint64(count) +
              np.arange(1, count + 1, dtype=np.uint64))
  bits = splitmix64(state + counters * _SPLITMIX64_GAMMA)
  return (bits >> np.uint64(40)).astype(np.float32) * np.float32(2**-24)


def _permutation(seed: int, num_examples: int, epoch: int) -> np.ndarray:
  return np.random.Generator(np.random.PCG64([seed, epoch])).permutation(
      num_examples)


def data_threads(config) -> int:
  """Threads that decode and preprocess: `config.data_threads` if set.

  Else, on a CPU-only host 1, since JAX's train step needs the cores (the
  default Fashion-MNIST job runs its step on every core); on an accelerator
  host all cores but two, left to JAX's dispatch and host-to-device copies.
  """
  threads = config.get('data_threads', 0)
  if threads:
    return threads
  if jax.default_backend() == 'cpu':
    return 1
  return max(1, len(os.sched_getaffinity(0)) - 2)


def _local_size(config, key: str, process_index: int,
                process_count: int) -> int:
  size = config[key]
  if size <= 0 or size % process_count:
    raise ValueError(f'config.{key}={size} must be a positive multiple of '
                     f'process_count={process_count}.')
  if not 0 <= process_index < process_count:
    raise ValueError(f'process_index={process_index} is not in '
                     f'[0, {process_count}).')
  return size // process_count


def _to_numpy_iterator(make_batch: Callable[[int], Batch], start: int,
                       stop: Optional[int], images_fn, threads: int,
                       decode_crop=None) -> Iterator[Batch]:
  """tf.data over `make_batch(i)` for i in [start, stop), then preprocessing.

  `images_fn(images, batch, cropped)` preprocesses a batch of same-size
  images, then `_to_model_input` scales them. Sources of same-size images are
  processed a whole batch per op (`cropped` False); files and encoded images
  are decoded and processed one by one, then rebatched: decoded whole, or,
  given `decode_crop(data, example)`, decoded by it into a [1, S, S, C]
  crop (`cropped` True).
  """
  first = make_batch(start)  # For the signature.
  keys = list(first)
  dtypes = [tf.string if first[k].dtype == object else first[k].dtype
            for k in keys]

  def load(i):
    values = tf.numpy_function(lambda i: [make_batch(int(i))[k] for k in keys],
                               [i], dtypes, stateful=False)
    for key, value in zip(keys, values):
      value.set_shape(first[key].shape)
    return dict(zip(keys, values))

  def preprocess(batch, cropped=False):
    images = _to_model_input(images_fn(batch['image'], batch, cropped))
    return dict({k: v for k, v in batch.items() if k != 'rand'}, image=images)

  def preprocess_one(example):
    data = (tf.io.read_file(example['path']) if 'path' in example
            else example['encoded'])
    if decode_crop:
      images = decode_crop(data, example)
    else:
      images = tf.io.decode_image(data, channels=3,
                                  expand_animations=False)[None]
    batch = {k: v[None] for k, v in example.items()
             if k not in ('path', 'encoded')}
    batch = preprocess(dict(batch, image=images), cropped=bool(decode_crop))
    return {k: v[0] for k, v in batch.items()}

  # Plain TF code, no Python control flow on tensors: traced as written
  # (autograph's conversion took ~0.5 s of every run's start).
  load, preprocess, preprocess_one = map(
      tf.autograph.experimental.do_not_convert,
      (load, preprocess, preprocess_one))
  ds = (tf.data.Dataset.counter(start) if stop is None else
        tf.data.Dataset.range(start, stop)).map(load)
  if 'image' in first:
    ds = ds.map(preprocess)
  else:
    ds = ds.unbatch().map(preprocess_one, num_parallel_calls=threads)
    ds = ds.batch(len(first[keys[0]]), drop_remainder=True)
  options = tf.data.Options()
  options.threading.private_threadpool_size = threads
  options.threading.max_intra_op_parallelism = 1
  # Parallelism and buffer sizes are set above, so autotuning has nothing to
  # tune; and its background thread made deleting the iterator wait (seen: 24
  # and 30 s at the end of a run, in ~OptimizeLoop's timed wait, under gdb).
  options.autotune.enabled = False
  # Fused into MapAndBatch, the per-example map sometimes hung deleting the
  # iterator at process exit (seen in ~MapAndBatchDataset's wait, py-spy).
  options.experimental_optimization.map_and_batch_fusion = False
  ds = ds.prefetch(_PREFETCH_BATCHES).with_options(options)
  return _closed_at_exit(ds.as_numpy_iterator())


# The iterators `_to_numpy_iterator` returned that are still open.
_OPEN_ITERATORS = weakref.WeakSet()


def _yield_from(iterator):
  yield from iterator


def _closed_at_exit(iterator):
  """`iterator` behind a generator that `_close_open_iterators` closes at
  exit, deleting the tf.data iterator if nothing else holds it."""
  generator = _yield_from(iterator)
  _OPEN_ITERATORS.add(generator)
  return generator


@atexit.register
def _close_open_iterators():
  """Deletes the tf.data iterators still open at exit while Python still
  runs. Deleted later, as the interpreter clears its modules, one whose
  background thread was running the source's fetch (a Python function)
  waited for that thread forever: the thread can no longer take the GIL
  (seen in 2 of 4 exits of a script holding an iterator in a global)."""
  for generator in list(_OPEN_ITERATORS):
    try:
      generator.close()
    except ValueError:  # Running in another thread: left as it is.
      pass


def train_iterator(config, *, start_step: int, process_index: int = 0,
                   process_count: int = 1,
                   source: Optional[sources.Source] = None,
                   extra: Optional[Callable[[np.ndarray, np.ndarray], Batch]]
                   = None) -> Iterator[Batch]:
  """This process's slice of every global train batch from `start_step` on.

  Yields {'image': float32[L, S, S, 3] in [-1, 1], 'label': int32[L]} forever,
  L = batch_size / process_count, S = image_size. See the module docstring
  for which examples, in which order; the result depends only on the config,
  the step and the process's slice. `source` replaces the config's train
  split (with its own keys: LiT's image-text pairs have no label), and
  `extra(indices, positions)` adds arrays to each batch (LiT: the tokens of
  the caption picked for each example).
  """
  local = _local_size(config, 'batch_size', process_index, process_count)
  source = source or _source(config, config.train_split)
  seed = config.seed % 2**64  # Seed sequences want non-negative seeds.
  permutation = functools.lru_cache(maxsize=2)(
      functools.partial(_permutation, seed, source.num_examples))
  randaug_count = randaugment.num_uniforms(config.pp.get('randaug'))

  def make_batch(step):
    positions = (step * config.batch_size + process_index * local +
                 np.arange(local, dtype=np.int64))
    epochs, offsets = np.divmod(positions, source.num_examples)
    indices = np.concatenate(  # `epochs` is sorted, as np.unique's result.
        [permutation(e)[offsets[epochs == e]] for e in np.unique(epochs)])
    rand = _uniforms(seed, positions)
    if randaug_count:
      rand = np.concatenate([rand, _uniforms(
          seed ^ _RANDAUG_STREAM, positions, randaug_count)], axis=1)
    batch = dict(source.fetch(indices), rand=rand)
    return dict(batch, **extra(indices, positions)) if extra else batch

  decode_crop = None
  if config.pp.train == 'inception_crop':
    decode_crop = lambda data, example: _decode_inception_crop(
        data, example['rand'], config.image_size,
        config.pp.get('crop_min_area', 0.08))
  return _to_numpy_iterator(
      make_batch, start_step, None,
      lambda images, batch, cropped: _train_images(images, batch['rand'],
                                                   config, cropped),
      data_threads(config), decode_crop)


def eval_iterator(config, *, process_index: int = 0, process_count: int = 1,
                  source: Optional[sources.Source] = None
                  ) -> Iterator[Batch]:
  """This process's slice of each global batch over the whole eval split.

  Global batch j is examples [j*E, (j+1)*E) in dataset order (E =
  eval_batch_size), padded past the end with example 0 and 'mask' False;
  every process yields ceil(num_eval / E) batches of {'image', 'label',
  'mask': bool[L]}, L = E / process_count. `source` replaces the config's
  eval split.
  """
  local = _local_size(config, 'eval_batch_size', process_index, process_count)
  source = source or _source(config, config.eval_split)

  def make_batch(j):
    positions = (j * config.eval_batch_size + process_index * local +
                 np.arange(local, dtype=np.int64))
    mask = positions < source.num_examples
    return dict(source.fetch(np.where(mask, positions, 0)), mask=mask)

  return _to_numpy_iterator(
      make_batch, 0, -(-source.num_examples // config.eval_batch_size),
      lambda images, *_: _eval_images(images, config), data_threads(config))


def eval_source(config) -> sources.Source:
  """The eval split's source (its `num_examples`), to give `eval_iterator`."""
  return _source(config, config.eval_split)


_EVAL_RESIZES = {'resize': _resize, 'resize_crop': _resize_crop,
                 'central_crop': _central_crop}


def _eval_images(images, config):
  return _EVAL_RESIZES[config.pp.eval](images, config.image_size)


def eval_model_input_tf(images, config, quantize: bool = False):
  """`eval_model_input` in a TF graph: a tensor [n, H, W, C] -> float32
  [n, S, S, 3]. `quantize`: the resized pixels are rounded to uint8 first
  (as the original release's LiT preprocessing did)."""
  images = _eval_images(images, config)
  if quantize:
    images = tf.cast(tf.clip_by_value(tf.round(images), 0, 255), tf.uint8)
  return _to_model_input(images)


def eval_model_input(images: np.ndarray, config) -> np.ndarray:
  """uint8 images [n, H, W, C] (C: 1 or 3) -> the model input that
  `eval_iterator` makes of them: float32 [n, S, S, 3] in [-1, 1]."""
  check_config(config)
  return eval_model_input_tf(tf.constant(images), config).numpy()
