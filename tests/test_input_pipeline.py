"""Tests for vit_jax.data.input_pipeline on data written by the tests themselves."""
import gzip
import struct

import numpy as np
import pytest

from tests.conftest import data_config, take
from vit_jax.data import input_pipeline

_NUM_TRAIN, _NUM_EVAL = 37, 13


def _write_idx(path, array):
  header = struct.pack('>HBB', 0, 8, array.ndim)
  header += struct.pack(f'>{array.ndim}I', *array.shape)
  with gzip.open(path, 'wb') as f:
    f.write(header + array.tobytes())


@pytest.fixture(scope='module')
def idx_data(tmp_path_factory):
  """Fashion-MNIST idx files of random 28x28 images: (dir, {split: images})."""
  directory = tmp_path_factory.mktemp('idx')
  rng = np.random.default_rng(0)
  images = {}
  for split, prefix, n in (('train', 'train', _NUM_TRAIN),
                           ('test', 't10k', _NUM_EVAL)):
    images[split] = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    _write_idx(directory / f'{prefix}-images-idx3-ubyte.gz', images[split])
    _write_idx(directory / f'{prefix}-labels-idx1-ubyte.gz',
               (np.arange(n) % 10).astype(np.uint8))
  return str(directory), images


def _example_ids(batch, images):
  """Which dataset image each (unaugmented) batch image is."""
  pixels = np.rint((batch['image'][..., 0] + 1) * 127.5).astype(np.uint8)
  lookup = {image.tobytes(): i for i, image in enumerate(images)}
  return [lookup[p.tobytes()] for p in pixels]


def test_fashion_mnist_files_batches(idx_data):
  directory, images = idx_data
  config = data_config(data_dir=directory)
  assert input_pipeline.get_info(config) == input_pipeline.DatasetInfo(
      num_classes=10, num_train=_NUM_TRAIN, num_eval=_NUM_EVAL)
  batch = next(input_pipeline.train_iterator(config, start_step=0))
  assert batch['image'].shape == (8, 28, 28, 3)
  assert batch['image'].dtype == np.float32
  assert batch['label'].dtype == np.int32 and batch['label'].shape == (8,)
  # Grey becomes 3 equal channels; uint8 [0, 255] maps onto [-1, 1].
  np.testing.assert_array_equal(batch['image'][..., 0], batch['image'][..., 2])
  ids = _example_ids(batch, images['train'])
  np.testing.assert_array_equal(
      batch['image'][..., 0],
      images['train'][ids].astype(np.float32) / np.float32(127.5) - 1)
  np.testing.assert_array_equal(batch['label'], np.array(ids) % 10)


def test_train_stream_is_epochs_of_seeded_permutations(idx_data):
  directory, images = idx_data
  config = data_config(data_dir=directory, seed=3)
  # 3 epochs; batches of 8 straddle the epoch boundaries (37 examples).
  batches = take(input_pipeline.train_iterator(config, start_step=0), 14)
  stream = np.concatenate([_example_ids(b, images['train']) for b in batches])
  for epoch in range(3):
    expected = np.random.Generator(np.random.PCG64([3, epoch])).permutation(
        _NUM_TRAIN)
    np.testing.assert_array_equal(
        stream[epoch * _NUM_TRAIN:(epoch + 1) * _NUM_TRAIN], expected)


@pytest.mark.parametrize('train', input_pipeline.TRAIN_PREPROCESSING)
def test_resume_and_process_slices_match_one_uninterrupted_stream(
    idx_data, train):
  config = data_config(data_dir=idx_data[0], image_size=24,
                   pp=dict(train=train, flip=True))
  steps = take(input_pipeline.train_iterator(config, start_step=0), 7)
  resumed = take(input_pipeline.train_iterator(config, start_step=4), 3)
  for want, got in zip(steps[4:], resumed):
    np.testing.assert_array_equal(want['image'], got['image'])
    np.testing.assert_array_equal(want['label'], got['label'])
  slices = [take(input_pipeline.train_iterator(
      config, start_step=2, process_index=p, process_count=2), 2)
            for p in range(2)]
  for step in range(2):
    for key in ('image', 'label'):
      np.testing.assert_array_equal(
          np.concatenate([slices[0][step][key], slices[1][step][key]]),
          steps[2 + step][key])
  another_seed = next(input_pipeline.train_iterator(
      data_config(data_dir=idx_data[0], image_size=24, seed=1,
              pp=dict(train=train, flip=True)), start_step=0))
  assert not np.array_equal(another_seed['image'], steps[0]['image'])


def test_random_crop_and_flip_are_padded_windows(idx_data):
  directory, images = idx_data
  plain = next(input_pipeline.train_iterator(
      data_config(data_dir=directory, batch_size=32), start_step=0))
  ids = _example_ids(plain, images['train'])
  augmented = next(input_pipeline.train_iterator(
      data_config(data_dir=directory, batch_size=32,
              pp=dict(train='random_crop', flip=True)), start_step=0))
  pixels = np.rint((augmented['image'][..., 0] + 1) * 127.5)
  flips, offsets = set(), set()
  for i, image in zip(ids, pixels):
    padded = np.pad(images['train'][i], 4)
    matches = [(flip, dy, dx) for flip in (False, True)
               for dy in range(9) for dx in range(9)
               if np.array_equal(image[:, ::-1] if flip else image,
                                 padded[dy:dy + 28, dx:dx + 28])]
    assert matches, 'not a window of the zero-padded image'
    flips.add(matches[0][0])
    offsets.add(matches[0][1:])
  assert flips == {False, True}
  assert len(offsets) > 10


def test_eval_covers_every_example_once(idx_data):
  directory, images = idx_data
  config = data_config(data_dir=directory, eval_batch_size=6)
  num_batches = -(-_NUM_EVAL // 6)
  per_process = [list(input_pipeline.eval_iterator(
      config, process_index=p, process_count=2)) for p in range(2)]
  assert [len(b) for b in per_process] == [num_batches, num_batches]
  for j in range(num_batches):
    batch = {k: np.concatenate([per_process[0][j][k], per_process[1][j][k]])
             for k in ('image', 'label', 'mask')}
    assert batch['mask'].dtype == np.bool_ and batch['mask'].shape == (6,)
    positions = np.arange(j * 6, (j + 1) * 6)
    np.testing.assert_array_equal(batch['mask'], positions < _NUM_EVAL)
    ids = _example_ids(batch, images['test'])
    np.testing.assert_array_equal(np.array(ids)[batch['mask']],
                                  positions[positions < _NUM_EVAL])


def test_config_errors(idx_data):
  with pytest.raises(ValueError, match='Unknown dataset'):
    input_pipeline.get_info(data_config(dataset='no_such_dataset_xyz'))
  with pytest.raises(ValueError, match='pp.train'):
    input_pipeline.get_info(data_config(pp=dict(train='crop')))
  with pytest.raises(ValueError, match='multiple of process_count'):
    input_pipeline.train_iterator(data_config(data_dir=idx_data[0], batch_size=6),
                                  start_step=0, process_count=4)
