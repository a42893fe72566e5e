"""Tests for vit_jax.data.sources: each kind of dataset, as a source and
through the input pipeline, on data written by the tests themselves."""
import os

import numpy as np
from PIL import Image
import pytest
import tensorflow_datasets as tfds

from tests.conftest import data_config, needs_fashion_mnist, take
from vit_jax.data import input_pipeline
from vit_jax.data import sources


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


def test_image_folder_mixed_modes_and_sizes(image_folder):
  config = data_config(dataset='imagefolder', data_dir=str(image_folder),
                   image_size=8, batch_size=4, eval_batch_size=2,
                   pp=dict(train='inception_crop', flip=True,
                           eval='resize_crop'))
  assert input_pipeline.get_info(config) == input_pipeline.DatasetInfo(2, 5, 3)
  sliced = data_config(dataset='imagefolder', data_dir=str(image_folder),
                       train_split='train[1:]', eval_split='test[:-1]')
  assert input_pipeline.get_info(sliced) == input_pipeline.DatasetInfo(2, 4, 2)
  # Classes are the sorted folder names: cat 0, dog 1; order class then file.
  fetched = sources.get_source(config, 'test').fetch(np.array([2, 0]))
  assert [os.path.basename(p) for p in fetched['path']] == ['a.png', 'a.webp']
  np.testing.assert_array_equal(fetched['label'], [1, 0])
  train = take(input_pipeline.train_iterator(config, start_step=0), 3)
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
  np.testing.assert_array_equal(labels[masks], [0, 0, 1])
  np.testing.assert_array_equal(masks, [True, True, True, False])
  np.testing.assert_allclose(images[2], 200 / 127.5 - 1, atol=1e-5)


@pytest.mark.parametrize('name, content', [
    ('train/cat/broken.png', b'\x89PNG\r\n\x1a\nnot really a png'),
    ('test/dog/text.jpg', b'hello'),
])
def test_image_folder_bad_file_names_it(image_folder, name, content):
  (image_folder / name).write_bytes(content)
  config = data_config(dataset='imagefolder', data_dir=str(image_folder))
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
        data_config(dataset='imagefolder', data_dir=str(image_folder)))


def test_image_folder_layout_errors(image_folder):
  config = data_config(dataset='imagefolder', data_dir=str(image_folder))
  with pytest.raises(ValueError, match='does not exist'):
    input_pipeline.get_info(data_config(dataset='imagefolder',
                                    data_dir=str(image_folder),
                                    eval_split='validation'))
  with pytest.raises(ValueError, match='data_dir'):
    input_pipeline.get_info(data_config(dataset='imagefolder'))
  (image_folder / 'test/bird').mkdir()
  (image_folder / 'test/bird/a.png').write_bytes(
      (image_folder / 'test/dog/a.png').read_bytes())
  with pytest.raises(ValueError, match='bird'):
    input_pipeline.get_info(config)
  (image_folder / 'train/bird').mkdir()
  with pytest.raises(ValueError, match='have none'):
    input_pipeline.get_info(config)


def test_unprepared_tfds_dataset_says_how_to_prepare(tmp_path):
  with pytest.raises(ValueError, match='tfds build mnist'):
    input_pipeline.get_info(data_config(dataset='mnist', data_dir=str(tmp_path)))


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
  config = data_config(dataset=name, data_dir=str(tmp_path),
                   image_size=4, batch_size=4, eval_batch_size=2,
                   pp=dict(train='random_crop', crop_padding=1, flip=True))
  assert input_pipeline.get_info(config) == input_pipeline.DatasetInfo(3, 7, 5)
  # Images of one shape come decoded, others encoded.
  fetched = sources.get_source(config, 'test').fetch(np.array([3, 1]))
  assert set(fetched) == {'image' if variant == 'fixed' else 'encoded', 'label'}
  assert fetched['label'].dtype == np.int32 and fetched['label'].shape == (2,)
  batch = next(input_pipeline.train_iterator(config, start_step=0))
  assert batch['image'].shape == (4, 4, 4, 3)
  evaluated = list(input_pipeline.eval_iterator(config))
  assert len(evaluated) == 3
  labels = np.concatenate([b['label'] for b in evaluated])
  masks = np.concatenate([b['mask'] for b in evaluated])
  assert sorted(labels[masks]) == sorted(np.arange(5) % 3)
  with pytest.raises(ValueError, match='validation'):
    input_pipeline.get_info(data_config(dataset=name, data_dir=str(tmp_path),
                                    eval_split='validation'))
  _assert_slices(config)


def _assert_slices(config):
  """'test[1:4]' and 'test[-40%:]' are those examples of 'test', for any
  dataset; a bad slice is a ValueError."""
  whole = sources.get_source(config, 'test')
  n = whole.num_examples
  for split, first, count in (('test[1:4]', 1, 3),
                              ('test[-40%:]', n - n * 2 // 5, n * 2 // 5)):
    part = sources.get_source(config, split)
    assert part.num_examples == count, split
    indices = np.arange(part.num_examples)[::-1]
    for key, value in part.fetch(indices).items():
      np.testing.assert_array_equal(
          value, whole.fetch(indices + first)[key], err_msg=(split, key))
  for bad in ('test[1:99999]', 'test[one:]'):
    with pytest.raises(ValueError, match='incompatible|parsing'):
      sources.get_source(config, bad)


@needs_fashion_mnist
def test_fashion_mnist_debian_files():
  config = data_config()
  assert input_pipeline.get_info(config) == input_pipeline.DatasetInfo(
      num_classes=10, num_train=60000, num_eval=10000)
  batch = next(input_pipeline.train_iterator(config, start_step=0))
  assert batch['image'].shape == (8, 28, 28, 3)
  assert set(np.unique(batch['label'])) <= set(range(10))
  evaluated = list(input_pipeline.eval_iterator(
      data_config(eval_batch_size=4096)))
  assert len(evaluated) == 3
  assert sum(b['mask'].sum() for b in evaluated) == 10000
  _assert_slices(config)
  assert input_pipeline.get_info(data_config(
      train_split='train[:90%]', eval_split='train[90%:]')) == (
          input_pipeline.DatasetInfo(10, 54000, 6000))
