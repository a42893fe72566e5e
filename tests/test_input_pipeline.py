"""Tests for vit_jax.input_pipeline on data written by the tests themselves."""
import gzip
import itertools
import os
import struct

import ml_collections
import numpy as np
from PIL import Image
import pytest
import tensorflow_datasets as tfds

from vit_jax import input_pipeline

_DEBIAN_DIR = '/usr/share/datasets/fashion-mnist'
_NUM_TRAIN, _NUM_EVAL = 37, 13


def _config(**overrides):
  pp = dict(train='resize', flip=False, eval='resize', crop_padding=4,
            crop_min_area=0.08)
  pp.update(overrides.pop('pp', {}))
  config = dict(dataset='fashion_mnist', data_dir=None, train_split='train',
                eval_split='test', image_size=28, batch_size=8,
                eval_batch_size=4, seed=0, pp=pp)
  config.update(overrides)
  return ml_collections.ConfigDict(config)


def _take(iterator, n):
  return list(itertools.islice(iterator, n))


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


def _save(path, image):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  image.save(path)


@pytest.fixture
def image_folder(tmp_path):
  """ROOT/{train,test}/{cat,dog}/ of grey, RGBA and RGB images of many sizes."""
  rng = np.random.default_rng(1)
  rgb = lambda h, w: Image.fromarray(rng.integers(0, 256, (h, w, 3), np.uint8))
  _save(tmp_path / 'train/dog/a.png', Image.new('L', (9, 7), 200))
  _save(tmp_path / 'train/dog/b.png',
        Image.new('RGBA', (8, 12), (10, 20, 30, 40)))
  _save(tmp_path / 'train/dog/c.jpg', rgb(16, 16))
  _save(tmp_path / 'train/cat/a.png', rgb(30, 20))
  _save(tmp_path / 'train/cat/b.gif', rgb(5, 5).convert('P'))
  (tmp_path / 'train/cat/notes.txt').write_text('not an image, ignored')
  _save(tmp_path / 'test/dog/a.png', Image.new('L', (9, 7), 200))
  _save(tmp_path / 'test/cat/a.webp', rgb(11, 13))
  _save(tmp_path / 'test/cat/b.bmp', rgb(6, 10))
  return tmp_path


def test_fashion_mnist_files_batches(idx_data):
  directory, images = idx_data
  config = _config(data_dir=directory)
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
  config = _config(data_dir=directory, seed=3)
  # 3 epochs; batches of 8 straddle the epoch boundaries (37 examples).
  batches = _take(input_pipeline.train_iterator(config, start_step=0), 14)
  stream = np.concatenate([_example_ids(b, images['train']) for b in batches])
  for epoch in range(3):
    expected = np.random.Generator(np.random.PCG64([3, epoch])).permutation(
        _NUM_TRAIN)
    np.testing.assert_array_equal(
        stream[epoch * _NUM_TRAIN:(epoch + 1) * _NUM_TRAIN], expected)


@pytest.mark.parametrize('train', input_pipeline.TRAIN_PREPROCESSING)
def test_resume_and_process_slices_match_one_uninterrupted_stream(
    idx_data, train):
  config = _config(data_dir=idx_data[0], image_size=24,
                   pp=dict(train=train, flip=True))
  steps = _take(input_pipeline.train_iterator(config, start_step=0), 7)
  resumed = _take(input_pipeline.train_iterator(config, start_step=4), 3)
  for want, got in zip(steps[4:], resumed):
    np.testing.assert_array_equal(want['image'], got['image'])
    np.testing.assert_array_equal(want['label'], got['label'])
  slices = [_take(input_pipeline.train_iterator(
      config, start_step=2, process_index=p, process_count=2), 2)
            for p in range(2)]
  for step in range(2):
    for key in ('image', 'label'):
      np.testing.assert_array_equal(
          np.concatenate([slices[0][step][key], slices[1][step][key]]),
          steps[2 + step][key])
  another_seed = next(input_pipeline.train_iterator(
      _config(data_dir=idx_data[0], image_size=24, seed=1,
              pp=dict(train=train, flip=True)), start_step=0))
  assert not np.array_equal(another_seed['image'], steps[0]['image'])


def test_random_crop_and_flip_are_padded_windows(idx_data):
  directory, images = idx_data
  plain = next(input_pipeline.train_iterator(
      _config(data_dir=directory, batch_size=32), start_step=0))
  ids = _example_ids(plain, images['train'])
  augmented = next(input_pipeline.train_iterator(
      _config(data_dir=directory, batch_size=32,
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
  config = _config(data_dir=directory, eval_batch_size=6)
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


def test_image_folder_mixed_modes_and_sizes(image_folder):
  config = _config(dataset='imagefolder', data_dir=str(image_folder),
                   image_size=8, batch_size=4, eval_batch_size=2,
                   pp=dict(train='inception_crop', flip=True,
                           eval='resize_crop'))
  assert input_pipeline.get_info(config) == input_pipeline.DatasetInfo(2, 5, 3)
  train = _take(input_pipeline.train_iterator(config, start_step=0), 3)
  for batch in train:
    assert batch['image'].shape == (4, 8, 8, 3)
    assert np.all(np.abs(batch['image']) <= 1)
  halves = [next(input_pipeline.train_iterator(
      config, start_step=0, process_index=p, process_count=2))
            for p in range(2)]
  np.testing.assert_array_equal(
      np.concatenate([h['image'] for h in halves]), train[0]['image'])
  evaluated = list(input_pipeline.eval_iterator(config))
  images = np.concatenate([b['image'] for b in evaluated])
  labels = np.concatenate([b['label'] for b in evaluated])
  masks = np.concatenate([b['mask'] for b in evaluated])
  # Classes are the sorted folder names: cat 0, dog 1; order class then file.
  np.testing.assert_array_equal(labels[masks], [0, 0, 1])
  np.testing.assert_array_equal(masks, [True, True, True, False])
  np.testing.assert_allclose(images[2], 200 / 127.5 - 1, atol=1e-5)


@pytest.mark.parametrize('name, content', [
    ('train/cat/broken.png', b'\x89PNG\r\n\x1a\nnot really a png'),
    ('test/dog/text.jpg', b'hello'),
])
def test_image_folder_bad_file_names_it(image_folder, name, content):
  (image_folder / name).write_bytes(content)
  config = _config(dataset='imagefolder', data_dir=str(image_folder))
  with pytest.raises(ValueError, match=name.split('/')[-1]):
    input_pipeline.get_info(config)
  split = name.split('/')[0]
  iterator = (input_pipeline.train_iterator if split == 'train'
              else input_pipeline.eval_iterator)
  with pytest.raises(ValueError, match='unreadable'):
    iterator(config, **({'start_step': 0} if split == 'train' else {}))


def test_image_folder_truncated_jpeg(image_folder):
  whole = image_folder / 'train/cat/big.jpg'
  Image.fromarray(np.random.default_rng(0).integers(
      0, 256, (64, 64, 3), np.uint8)).save(whole)
  whole.write_bytes(whole.read_bytes()[:400])
  with pytest.raises(ValueError, match='big.jpg'):
    input_pipeline.get_info(
        _config(dataset='imagefolder', data_dir=str(image_folder)))


def test_image_folder_layout_errors(image_folder):
  config = _config(dataset='imagefolder', data_dir=str(image_folder))
  with pytest.raises(ValueError, match='does not exist'):
    input_pipeline.get_info(_config(dataset='imagefolder',
                                    data_dir=str(image_folder),
                                    eval_split='validation'))
  with pytest.raises(ValueError, match='data_dir'):
    input_pipeline.get_info(_config(dataset='imagefolder'))
  (image_folder / 'test/bird').mkdir()
  (image_folder / 'test/bird/a.png').write_bytes(
      (image_folder / 'test/dog/a.png').read_bytes())
  with pytest.raises(ValueError, match='bird'):
    input_pipeline.get_info(config)
  (image_folder / 'train/bird').mkdir()
  with pytest.raises(ValueError, match='have none'):
    input_pipeline.get_info(config)


def test_config_errors(idx_data):
  with pytest.raises(ValueError, match='Unknown dataset'):
    input_pipeline.get_info(_config(dataset='no_such_dataset_xyz'))
  with pytest.raises(ValueError, match='pp.train'):
    input_pipeline.get_info(_config(pp=dict(train='crop')))
  with pytest.raises(ValueError, match='multiple of process_count'):
    input_pipeline.train_iterator(_config(data_dir=idx_data[0], batch_size=6),
                                  start_step=0, process_count=4)


def test_unprepared_tfds_dataset_says_how_to_prepare(tmp_path):
  with pytest.raises(ValueError, match='tfds build mnist'):
    input_pipeline.get_info(_config(dataset='mnist', data_dir=str(tmp_path)))


class TinyShapes(tfds.core.GeneratorBasedBuilder):
  """Images in 3 classes: RGB of varying shape, or grey of one shape."""
  VERSION = tfds.core.Version('1.0.0')
  BUILDER_CONFIGS = [tfds.core.BuilderConfig(name='varying'),
                     tfds.core.BuilderConfig(name='fixed')]
  # No checksums file lies beside this code; finding that out would import
  # `importlib_resources`, which tfds uses but does not install.
  code_path = None

  def _shape(self, i=None):
    """Image i's shape, or (i None) the feature's."""
    if self.builder_config.name == 'fixed':
      return (6, 5, 1)
    return (None if i is None else 5 + i, None if i is None else 6, 3)

  def _info(self):
    return tfds.core.DatasetInfo(
        builder=self, supervised_keys=('image', 'label'),
        features=tfds.features.FeaturesDict({
            'image': tfds.features.Image(shape=self._shape()),
            'label': tfds.features.ClassLabel(num_classes=3)}))

  def _split_generators(self, dl_manager):
    return {'train': self._generate_examples(7),
            'test': self._generate_examples(5)}

  def _generate_examples(self, n):
    rng = np.random.default_rng(n)
    for i in range(n):
      image = rng.integers(0, 256, self._shape(i), dtype=np.uint8)
      yield i, {'image': image, 'label': i % 3}


@pytest.mark.parametrize('file_format', ['tfrecord', 'array_record'])
@pytest.mark.parametrize('variant', ['varying', 'fixed'])
def test_tfds_dataset(tmp_path, file_format, variant):
  """TFRecord is loaded into memory, ArrayRecord read by index."""
  TinyShapes(config=variant, data_dir=str(tmp_path), file_format=file_format
             ).download_and_prepare()
  name = f'tiny_shapes/{variant}'
  config = _config(dataset=name, data_dir=str(tmp_path),
                   image_size=4, batch_size=4, eval_batch_size=2,
                   pp=dict(train='random_crop', crop_padding=1, flip=True))
  assert input_pipeline.get_info(config) == input_pipeline.DatasetInfo(3, 7, 5)
  batch = next(input_pipeline.train_iterator(config, start_step=0))
  assert batch['image'].shape == (4, 4, 4, 3)
  evaluated = list(input_pipeline.eval_iterator(config))
  assert len(evaluated) == 3
  labels = np.concatenate([b['label'] for b in evaluated])
  masks = np.concatenate([b['mask'] for b in evaluated])
  assert sorted(labels[masks]) == sorted(np.arange(5) % 3)
  with pytest.raises(ValueError, match='validation'):
    input_pipeline.get_info(_config(dataset=name, data_dir=str(tmp_path),
                                    eval_split='validation'))


@pytest.mark.skipif(not os.path.exists(_DEBIAN_DIR),
                    reason='Debian package dataset-fashion-mnist missing')
def test_fashion_mnist_debian_files():
  config = _config()
  assert input_pipeline.get_info(config) == input_pipeline.DatasetInfo(
      num_classes=10, num_train=60000, num_eval=10000)
  batch = next(input_pipeline.train_iterator(config, start_step=0))
  assert batch['image'].shape == (8, 28, 28, 3)
  assert set(np.unique(batch['label'])) <= set(range(10))
  evaluated = list(input_pipeline.eval_iterator(
      _config(eval_batch_size=4096)))
  assert len(evaluated) == 3
  assert sum(b['mask'].sum() for b in evaluated) == 10000
