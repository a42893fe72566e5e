"""The original's `input_pipeline`: this package's pipeline
(`data/input_pipeline.py`), its batches reshaped as the original's.

`get_data_from_tfds` / `get_data_from_directory` / `get_datasets` return
`tf.data.Dataset`s of {'image': float32 [local_devices, per_device, S, S, 3]
in [-1, 1], 'label': float32 one-hot [local_devices, per_device, classes]}:
the input of a `jax.pmap`ped step. The examples, their order and their
augmentation are this package's (`translate.py` says how the config's fields
map); the train split repeats forever, the test split is read once, its last
partial batch dropped, as the original did.
"""
import functools
import os

import flax
import jax
import ml_collections
import numpy as np
import tensorflow as tf

from vit_jax.data import input_pipeline
from vit_jax.data import sources
from vit_jax.original import translate


def _config(config, dataset: str, split: str) -> ml_collections.ConfigDict:
  """This pipeline's config reading `split` of `dataset` (train and eval)."""
  original = ml_collections.ConfigDict(config.to_dict())
  original.dataset = dataset
  original.pp = dict(original.pp or {}, train=split, test=split)
  out = translate.to_project_config(original, data_only=True)
  if os.path.isdir(dataset):  # A directory's split is a subdirectory.
    out.train_split = out.eval_split = split
  return out


def _info(config, split: str) -> dict:
  source = sources.get_source(config, split)
  names = sources.class_names(config)
  return dict(num_examples=source.num_examples,
              num_classes=source.num_classes, int2str=names.__getitem__)


def get_dataset_info(dataset: str, split: str) -> dict:
  """{num_examples, num_classes, int2str, examples_glob} of `split` of a
  TFDS dataset or of a directory's DIR/split/CLASS/*.jpg."""
  directory = os.path.join(dataset, split)
  info = _info(_config(_dummy(), dataset, split), split)
  info['examples_glob'] = (f'{directory}/*/*.jpg' if os.path.isdir(directory)
                           else None)
  return info


def get_directory_info(directory: str) -> dict:
  """`get_dataset_info` of the split directory DIR/SPLIT."""
  directory = directory.rstrip('/')
  return get_dataset_info(os.path.dirname(directory),
                          os.path.basename(directory))


def get_tfds_info(dataset: str, split: str) -> dict:
  return get_dataset_info(dataset, split)


def _dummy() -> ml_collections.ConfigDict:
  """A config with the data fields only, for the dataset info."""
  return ml_collections.ConfigDict(dict(batch=1, batch_eval=1,
                                        pp={'crop': 1}))


def _original_batches(config, mode: str, num_classes: int):
  """The original's batches from this pipeline's iterator (numpy)."""
  devices = jax.local_device_count()
  batches = (input_pipeline.train_iterator(config, start_step=0)
             if mode == 'train' else input_pipeline.eval_iterator(config))
  one_hot = np.eye(num_classes, dtype=np.float32)
  for b in batches:
    if mode != 'train' and not b['mask'].all():
      continue  # The last, partial batch: dropped, as the original.
    yield {'image': b['image'].reshape((devices, -1) + b['image'].shape[1:]),
           'label': one_hot[b['label']].reshape(devices, -1, num_classes)}


def _dataset(config, mode: str, num_classes: int) -> tf.data.Dataset:
  batch = config.batch_size if mode == 'train' else config.eval_batch_size
  devices, size = jax.local_device_count(), config.image_size
  if batch % devices:
    raise ValueError(f'The {mode} batch {batch} does not split over the '
                     f'{devices} local devices: make it a multiple.')
  per_device = batch // devices
  signature = {
      'image': tf.TensorSpec([devices, per_device, size, size, 3], tf.float32),
      'label': tf.TensorSpec([devices, per_device, num_classes], tf.float32)}
  return tf.data.Dataset.from_generator(
      functools.partial(_original_batches, config, mode, num_classes),
      output_signature=signature).prefetch(1)


def get_data_from_directory(*, config, directory: str, mode: str
                            ) -> tf.data.Dataset:
  """Batches of DIR/CLASS/*.jpg (`directory` = DIR) for `mode` 'train' or
  'test'."""
  directory = directory.rstrip('/')
  ours = _config(config, os.path.dirname(directory),
                 os.path.basename(directory))
  return _dataset(ours, mode, _info(ours, ours.train_split)['num_classes'])


def get_data_from_tfds(*, config, mode: str) -> tf.data.Dataset:
  """Batches of split `config.pp[mode]` of TFDS dataset `config.dataset`."""
  ours = _config(config, config.dataset, config.pp[mode])
  return _dataset(ours, mode, _info(ours, ours.train_split)['num_classes'])


def get_datasets(config):
  """(train, test) datasets of `config.dataset`, a directory with train/ and
  test/ or a TFDS name."""
  if os.path.isdir(config.dataset):
    train_dir = os.path.join(config.dataset, 'train')
    test_dir = os.path.join(config.dataset, 'test')
    if not os.path.isdir(train_dir):
      raise ValueError(f'Expected the directories {train_dir} and {test_dir}.')
    return (get_data_from_directory(config=config, directory=train_dir,
                                    mode='train'),
            get_data_from_directory(config=config, directory=test_dir,
                                    mode='test'))
  return (get_data_from_tfds(config=config, mode='train'),
          get_data_from_tfds(config=config, mode='test'))


def prefetch(dataset, n_prefetch: int):
  """numpy batches of `dataset`, `n_prefetch` of them put on the local
  devices ahead (flax's `prefetch_to_device`, for pmapped steps; with jit on
  a mesh, `jax.device_put(batch, NamedSharding(mesh, P('data')))` of the
  flattened batch is the same, as `train/loop.py` does)."""
  batches = dataset.as_numpy_iterator()
  if n_prefetch:
    batches = flax.jax_utils.prefetch_to_device(batches, n_prefetch)
  return batches
