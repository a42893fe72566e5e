"""Random-access image sources: one split of a dataset, read by example index.

A source is a split's class count, its example count and `fetch(indices)`,
which returns the labels and images of any examples in any order. The input
pipeline reads nothing else, so the data order is whatever order it asks for:
a function of (seed, step) alone, the same for any process count and on
resumption, without replaying or skipping a stream.

Datasets (`config.dataset`):
- 'fashion_mnist': the Debian package's idx files (`dataset-fashion-mnist`,
  or `config.data_dir` holding the same files), else the TFDS dataset.
- 'imagefolder': `config.data_dir`/<split>/<class>/<image files>, every file
  checked to decode when the source is made.
- any other name: a prepared TFDS image classification dataset; it is
  downloaded and prepared only if the config field `tfds_download`
  is True (default False).

A split may be a slice in TFDS's notation, for every dataset:
'test[:1000]', 'train[90%:]' (a minival), 'train[:-10%]'.
"""
import dataclasses
import gzip
import os
import struct
from typing import Callable, Dict, List, Optional

import numpy as np
from PIL import Image
import tensorflow as tf
import tensorflow_datasets as tfds

from vit_jax.data import tfrecord_reader

# JAX owns the accelerators; TF, here and in the input pipeline, must not
# reserve their memory.
tf.config.set_visible_devices([], 'GPU')

Batch = Dict[str, np.ndarray]

_FASHION_MNIST_DIR = '/usr/share/datasets/fashion-mnist'
_FASHION_MNIST_CLASSES = 10

# What `tf.io.decode_image` reads, by file extension and by PIL's format name.
IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.gif', '.bmp', '.webp')
_DECODABLE_FORMATS = ('JPEG', 'PNG', 'GIF', 'BMP', 'WEBP')


@dataclasses.dataclass(frozen=True)
class Source:
  """One split, read by example index.

  `fetch(indices)` returns 'label' (int32[n]) and the images as one of:
  'image', uint8[n, H, W, C] with one size for all, preprocessed a whole
  batch at a time; or 'encoded' (file bytes) or 'path' (file names), decoded
  and preprocessed one example at a time since their sizes differ.
  """
  num_classes: int
  num_examples: int
  fetch: Callable[[np.ndarray], Batch]


def _array_source(images: np.ndarray, labels: np.ndarray, num_classes: int,
                  key: str = 'image') -> Source:
  labels = labels.astype(np.int32)
  return Source(num_classes, len(labels),
                lambda i: {key: images[i], 'label': labels[i]})


def _fashion_mnist_files(config) -> Optional[Dict[str, List[str]]]:
  """{split: [images file, labels file]}, or None if any file is missing."""
  directory = config.data_dir or _FASHION_MNIST_DIR
  files = {
      split: [os.path.join(directory, f'{prefix}-{kind}-ubyte.gz')
              for kind in ('images-idx3', 'labels-idx1')]
      for split, prefix in (('train', 'train'), ('test', 't10k'))
  }
  exist = all(os.path.exists(f) for pair in files.values() for f in pair)
  return files if exist else None


def _read_idx(path: str) -> np.ndarray:
  """Reads an idx file: 2 zero bytes, type (8: uint8), rank, dims, data."""
  with gzip.open(path, 'rb') as f:
    zero, dtype, rank = struct.unpack('>HBB', f.read(4))
    if zero or dtype != 8:
      raise ValueError(f'{path} is not an idx file of uint8.')
    shape = struct.unpack(f'>{rank}I', f.read(4 * rank))
    return np.frombuffer(f.read(), np.uint8).reshape(shape)


def _list_image_folder(root: str, split: str) -> Dict[str, List[str]]:
  """{class folder: sorted image files} of root/split."""
  split_dir = os.path.join(root, split)
  if not os.path.isdir(split_dir):
    raise ValueError(f'Image folder split {split_dir} does not exist; expected '
                     f'{root}/{split}/<class>/<image files>.')
  return {
      entry.name: sorted(
          os.path.join(entry.path, name) for name in os.listdir(entry.path)
          if name.lower().endswith(IMAGE_EXTENSIONS))
      for entry in sorted(os.scandir(split_dir), key=lambda e: e.name)
      if entry.is_dir()
  }


def check_decodable(paths: List[str]) -> None:
  """Raises a ValueError naming every file that TF could not decode.

  A full decode by PIL (JPEGs at 1/8 scale, which is quick) rather than
  `verify()`, which misses truncated JPEGs.
  """
  bad = []
  for path in paths:
    try:
      with Image.open(path) as image:
        if image.format not in _DECODABLE_FORMATS:
          raise ValueError(f'format {image.format} is not one of '
                           f'{_DECODABLE_FORMATS}')
        image.draft('RGB', (1, 1))
        image.load()
    except Exception as e:  # pylint: disable=broad-except
      # Whatever PIL raises (OSError, SyntaxError, ...), the file is unusable.
      bad.append(f'{path} ({e})')
  if bad:
    listed = '\n  '.join(bad[:20])
    raise ValueError(f'{len(bad)} unreadable image file(s) (up to 20 listed):'
                     f'\n  {listed}')


def _image_folder_source(config, split: str) -> Source:
  """Images of ROOT/split, in class then file name order, checked to decode.

  Class ids number the train split's class folders in sorted order.
  """
  root = config.data_dir
  if not root:
    raise ValueError('dataset="imagefolder" needs config.data_dir = ROOT with '
                     'ROOT/<split>/<class>/<image files>.')
  train_split = _split_name(config.train_split)
  classes = list(_list_image_folder(root, train_split))
  files = _list_image_folder(root, split)
  empty = [c for c in classes if not files.get(c)]
  if split == train_split and (not classes or empty):
    raise ValueError(
        f'{os.path.join(root, split)} needs one folder of '
        f'{"/".join(IMAGE_EXTENSIONS)} images per class; '
        + (f'these have none: {empty}' if empty else 'it has no folders.'))
  unknown = sorted(set(files) - set(classes))
  if unknown:
    raise ValueError(f'Classes {unknown} of split {split!r} are not among the '
                     f'{train_split!r} classes {classes}.')
  paths = [p for c in classes for p in files.get(c, [])]
  if not paths:
    raise ValueError(f'{os.path.join(root, split)} has no images.')
  check_decodable(paths)
  labels = [i for i, c in enumerate(classes) for _ in files.get(c, [])]
  return _array_source(np.array(paths, object), np.array(labels), len(classes),
                       'path')


def _unprepared_tfds_builder(config):
  """The dataset's builder; its info (features, splits) reads no data."""
  try:
    return tfds.builder(config.dataset, data_dir=config.data_dir)
  except tfds.core.DatasetNotFoundError as e:
    raise ValueError(
        f'Unknown dataset {config.dataset!r}. Use "fashion_mnist", '
        '"imagefolder" (with config.data_dir = ROOT holding '
        'ROOT/<split>/<class>/<images>), or the name of a TFDS image '
        'classification dataset (see tfds.list_builders()).') from e


def _tfds_builder(config):
  """The dataset's builder, prepared only if config.tfds_download is set."""
  builder = _unprepared_tfds_builder(config)
  if not builder.is_prepared():
    if not config.get('tfds_download', False):
      hint = (' Or install the Debian package dataset-fashion-mnist, or point '
              'config.data_dir at its idx files.'
              if config.dataset == 'fashion_mnist' else '')
      raise ValueError(
          f'TFDS dataset {config.dataset!r} is not prepared in '
          f'{builder.data_dir}. Set config.tfds_download=True to download it, '
          f'or run `tfds build {config.dataset} --data_dir=DIR` first.' + hint)
    builder.download_and_prepare()
  if not builder.info.supervised_keys:
    raise ValueError(f'TFDS dataset {config.dataset!r} has no (image, label) '
                     'supervised keys.')
  return builder


def _tfds_source(builder, split: str) -> Source:
  """Random access to a prepared TFDS split, read lazily.

  ArrayRecord is read through `as_data_source`; TFRecord (the `tfds build`
  default) through `data/tfrecord_reader.py`, which indexes the record offsets
  of each file once (cached on disk) and then reads records by index. Either way
  only the examples asked for are read, so memory does not grow with the
  dataset. Images of one fixed shape are decoded on read; others stay encoded
  until batched.
  """
  image_key, label_key = builder.info.supervised_keys
  num_classes = builder.info.features[label_key].num_classes
  split_info = builder.info.splits[split]  # Checks the split.
  num_examples = split_info.num_examples
  fixed_shape = None not in builder.info.features[image_key].shape
  key = 'image' if fixed_shape else 'encoded'
  decoders = None if fixed_shape else {image_key: tfds.decode.SkipDecoding()}
  try:
    getitems = builder.as_data_source(split, decoders=decoders).__getitems__
  except NotImplementedError:  # Not ArrayRecord: TFRecord, read by offset.
    reader = tfrecord_reader.RecordReader(
        [(f.filename, f.skip, f.take) for f in split_info.file_instructions])
    if reader.num_records != num_examples:
      raise ValueError(f'The files of split {split!r} hold '
                       f'{reader.num_records} examples; its info says '
                       f'{num_examples}. Prepare the dataset again.')
    features = builder.info.features
    getitems = lambda indices: [
        features.deserialize_example_np(record, decoders=decoders)
        for record in reader.read(indices)]

  def fetch(indices):
    examples = getitems(indices.tolist())
    images = [e[image_key] for e in examples]
    return {
        key: np.stack(images) if fixed_shape else np.array(images, object),
        'label': np.array([e[label_key] for e in examples], np.int32),
    }

  return Source(num_classes, num_examples, fetch)


def _split_name(split: str) -> str:
  """'train' of 'train[:90%]'."""
  return split.split('[', 1)[0]


def _sliced(source: Source, split: str) -> Source:
  """The examples of `source` (a whole split) that the slice `split` names
  ('test[:1000]', 'train[90%:]'), parsed and resolved by TFDS's own rules."""
  name = _split_name(split)
  info = tfds.core.SplitInfo(name=name, shard_lengths=[source.num_examples],
                             num_bytes=0, filename_template=None)
  instructions = tfds.core.ReadInstruction.from_spec(split).to_absolute(
      {name: info})
  if len(instructions) != 1:
    raise ValueError(f'Split {split!r}: one slice of one split is supported '
                     'here, not a sum of splits.')
  start = instructions[0].from_ or 0
  stop = instructions[0].to or source.num_examples
  return Source(source.num_classes, stop - start,
                lambda i: source.fetch(np.asarray(i) + start))


def get_source(config, split: str) -> Source:
  """The source of `split` of `config.dataset` ('test', or a slice of it).

  Raises:
    ValueError: on an unknown dataset, a missing split or an unprepared TFDS
      dataset, a slice that does not parse or fit, or (image folders) an
      empty folder or a file that does not decode.
  """
  name = _split_name(split)
  if config.dataset == 'imagefolder':
    source = _image_folder_source(config, name)
  elif files := config.dataset == 'fashion_mnist' and _fashion_mnist_files(
      config):
    if name not in files:
      raise ValueError(f'The Fashion-MNIST files hold the splits '
                       f'{sorted(files)}, not {name!r}.')
    images, labels = map(_read_idx, files[name])
    source = _array_source(images[..., None], labels, _FASHION_MNIST_CLASSES)
  else:
    return _tfds_source(_tfds_builder(config), split)  # TFDS slices itself.
  return source if name == split else _sliced(source, split)


def class_names(config) -> List[str]:
  """The names of `config.dataset`'s classes, in class-id order.

  An image folder's class folders (of the train split, as `get_source`
  numbers them); a TFDS dataset's label names from its builder's info, which
  is defined in code, so Fashion-MNIST read from the Debian files gets its
  names without a download (datasets whose labels have no names: '0', '1',
  ...).
  """
  if config.dataset == 'imagefolder':
    if not config.data_dir:
      raise ValueError('dataset="imagefolder" needs config.data_dir.')
    return list(_list_image_folder(config.data_dir, config.train_split))
  builder = _unprepared_tfds_builder(config)
  if not builder.info.supervised_keys:
    raise ValueError(f'TFDS dataset {config.dataset!r} has no (image, label) '
                     'supervised keys.')
  return list(builder.info.features[builder.info.supervised_keys[1]].names)
