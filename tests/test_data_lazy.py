"""Datasets read lazily: TFRecord TFDS splits by record offset, and the fused
JPEG decode-and-crop, on data written by the tests themselves."""
import json
import os
import subprocess
import weakref

import ml_collections
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from configs import testing
from tests.conftest import ROOT, assert_same_params, build_once, data_config, \
    python_command
from tests.test_loop import _stop_at
from vit_jax.data import input_pipeline
from vit_jax.data import sources
from vit_jax.data import tfrecord_reader
from vit_jax.train import preemption
from vit_jax.train import tasks
from vit_jax.train import task_classify

_NUM_TRAIN = 2000


class NoiseJpegs(tfds.core.GeneratorBasedBuilder):
  """JPEGs of noise (so they do not compress: ~27 KB each, 54 MB for the
  train split), of varying sizes, 4 classes."""
  VERSION = tfds.core.Version('1.0.0')
  code_path = None  # No checksums file beside this code (see test_data_sources).

  def _info(self):
    return tfds.core.DatasetInfo(
        builder=self, supervised_keys=('image', 'label'),
        features=tfds.features.FeaturesDict({
            'image': tfds.features.Image(shape=(None, None, 3),
                                         encoding_format='jpeg'),
            'label': tfds.features.ClassLabel(num_classes=4)}))

  def _split_generators(self, dl_manager):
    return {'train': self._generate_examples(_NUM_TRAIN, 0),
            'test': self._generate_examples(10, 1)}

  def _generate_examples(self, n, seed):
    rng = np.random.default_rng(seed)
    for i in range(n):
      shape = (160 + i % 7, 128 + i % 5, 3)
      yield i, {'image': rng.integers(0, 256, shape, np.uint8),
                'label': i % 4}


@pytest.fixture(scope='session')
def noise_jpegs(tmp_path_factory):
  """(data_dir, bytes of the train split's files): NoiseJpegs prepared as
  TFRecord, once per test run (read-only)."""
  data_dir = build_once(
      tmp_path_factory, 'noise_jpegs', lambda path: NoiseJpegs(
          data_dir=str(path), file_format='tfrecord').download_and_prepare())
  files = NoiseJpegs(data_dir=str(data_dir)).info.splits['train'].filepaths
  return str(data_dir), sum(os.path.getsize(f) for f in files)


@pytest.fixture(autouse=True)
def index_cache(tmp_path, monkeypatch):
  """Offset indexes go to a fresh cache, not the user's."""
  monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path / 'cache'))
  return tmp_path / 'cache' / 'vit_jax' / 'tfrecord_index'


def _rss():
  """This process's resident memory in bytes."""
  with open('/proc/self/status') as f:
    return next(int(line.split()[1]) * 1024 for line in f
                if line.startswith('VmRSS'))


def _config(data_dir, **overrides):
  return data_config(dataset='noise_jpegs', data_dir=data_dir, image_size=32,
                     batch_size=16, **overrides)


@pytest.mark.parametrize('split', ['train', 'test', 'train[1990:]'])
def test_tfrecord_examples_in_tfds_order(noise_jpegs, split, index_cache):
  data_dir, _ = noise_jpegs
  config = _config(data_dir)
  source = sources.get_source(config, split)
  expected = list(tfds.as_numpy(tfds.builder('noise_jpegs', data_dir=data_dir)
                                .as_dataset(split, decoders={
                                    'image': tfds.decode.SkipDecoding()})))
  assert source.num_examples == len(expected)
  indices = np.array([len(expected) - 1, 0, 3, 3, len(expected) // 2])
  fetched = source.fetch(indices)
  assert fetched['encoded'].tolist() == [expected[i]['image'] for i in indices]
  assert fetched['label'].tolist() == [expected[i]['label'] for i in indices]
  assert len(os.listdir(index_cache)) >= 1  # One index per file, cached.


def test_tfrecord_memory_does_not_grow_with_the_dataset(noise_jpegs):
  """Reading every example, and training batches, keeps RSS well below the
  dataset's bytes: nothing read is kept. (An eager load on the first fetch
  happens in the warm-up here; the training test below catches that.)"""
  data_dir, dataset_bytes = noise_jpegs
  assert dataset_bytes > 50e6  # Large enough to see in RSS.
  config = _config(data_dir, pp=dict(train='inception_crop', flip=True))
  source = sources.get_source(config, 'train')
  iterator = input_pipeline.train_iterator(config, start_step=0)
  next(iterator), source.fetch(np.arange(64))  # Warm up TF and numpy.

  before = _rss()
  for start in range(0, _NUM_TRAIN, 100):
    source.fetch(np.arange(start, min(start + 100, _NUM_TRAIN)))
  for _ in range(_NUM_TRAIN // 16 // 4):
    next(iterator)
  assert _rss() - before < dataset_bytes / 2


def test_tfrecord_determinism_and_resume(noise_jpegs):
  data_dir, _ = noise_jpegs
  config = _config(data_dir, pp=dict(train='inception_crop', flip=True))
  run = input_pipeline.train_iterator(config, start_step=0)
  batches = [next(run) for _ in range(4)]
  resumed = input_pipeline.train_iterator(config, start_step=2)
  for expected in batches[2:]:
    got = next(resumed)
    np.testing.assert_array_equal(got['image'], expected['image'])
    np.testing.assert_array_equal(got['label'], expected['label'])
  halves = [next(input_pipeline.train_iterator(
      config, start_step=0, process_index=p, process_count=2)) for p in (0, 1)]
  np.testing.assert_array_equal(
      np.concatenate([h['image'] for h in halves]), batches[0]['image'])


def test_training_from_tfrecord_reads_lazily_and_resumes_bit_exact(
    noise_jpegs, tmp_path, monkeypatch):
  """main.py's training (in process) on the TFRecord dataset: the first
  train batch, which an eager source pays for by loading the split, grows
  RSS by less than half the split's bytes; a run stopped at step 3 and
  resumed ends with the uninterrupted run's params and eval metrics.

  The RSS window is the train pipeline's creation and first batch inside
  the run (before the step compiles), after a warm-up iterator on a
  64-example slice has paid TF's one-time costs (thread pools, kernels).
  """
  data_dir, dataset_bytes = noise_jpegs
  config = testing.get_config()
  config.update(dataset='noise_jpegs', data_dir=data_dir, total_steps=4,
                checkpoint_every=4, eval_every=4, log_every=2)
  config.model.transformer.update(num_layers=1, dropout_rate=0.0)  # Compiles
  config.pp.update(train='inception_crop', flip=True)  # faster; data's test.
  warm_up = ml_collections.ConfigDict(config.to_dict())
  warm_up.train_split = 'train[:64]'
  next(input_pipeline.train_iterator(warm_up, start_step=0))

  growth, train_batches = [], task_classify.ClassifyTask.train_batches

  def measured_train_batches(self, start_step):
    before = _rss()
    batches = train_batches(self, start_step)
    first = next(batches)
    growth.append(_rss() - before)
    yield first
    yield from batches

  monkeypatch.setattr(task_classify.ClassifyTask, 'train_batches',
                      measured_train_batches)
  full = tasks.train_and_evaluate(config, str(tmp_path / 'full'))
  assert len(growth) == 1 and growth[0] < dataset_bytes / 2, (
      growth, dataset_bytes)

  _stop_at(monkeypatch, 3)
  with pytest.raises(preemption.Stopped, match='at step 3'):
    tasks.train_and_evaluate(config, str(tmp_path / 'cut'))
  resumed = tasks.train_and_evaluate(config, str(tmp_path / 'cut'))
  assert resumed == full
  assert_same_params(tmp_path / 'full', tmp_path / 'cut')


def test_truncated_tfrecord_file_is_named(tmp_path):
  path = str(tmp_path / 'data.tfrecord')
  with tf.io.TFRecordWriter(path) as writer:
    for record in (b'a' * 10, b'b' * 300, b'c'):
      writer.write(record)
  reader = tfrecord_reader.RecordReader([(path, 1, -1)])
  assert reader.num_records == 2
  assert reader.read([1, 0]) == [b'c', b'b' * 300]
  with pytest.raises(IndexError):
    reader.read([2])
  with open(path, 'rb+') as f:
    f.truncate(os.path.getsize(path) - 3)
  with pytest.raises(ValueError, match='not a complete TFRecord'):
    tfrecord_reader.scan_offsets(path)


@pytest.mark.parametrize('encode', [tf.io.encode_jpeg, tf.io.encode_png])
def test_fused_decode_and_crop_matches_decode_then_crop(encode):
  """Same window from the same uniforms; JPEG's pixels equal up to the
  chroma upsampling at the cut edges, other formats exactly."""
  rng = np.random.default_rng(0)
  smooth = tf.image.resize(rng.uniform(0, 255, (1, 12, 16, 3)), (150, 200))
  data = encode(tf.cast(smooth[0], tf.uint8))
  uniforms = tf.constant(rng.uniform(size=(20, input_pipeline._NUM_UNIFORMS)),
                         tf.float32)
  whole = tf.io.decode_image(data, channels=3)[None]
  for u in uniforms:
    fused = input_pipeline._decode_inception_crop(data, u, 24, 0.05)
    expected = input_pipeline._inception_crop(whole, u[None], 24, 0.05)
    assert fused.shape == (1, 24, 24, 3)
    if encode is tf.io.encode_png:
      np.testing.assert_array_equal(fused, expected)
    else:
      np.testing.assert_allclose(fused, expected, atol=16)
      assert np.abs(fused - expected).mean() < 1


def test_flip_mirrors_the_flagged_examples(noise_jpegs):
  """Flipped train images are the unflipped ones mirrored where the
  example's flip number is < 0.5: examples decoded one by one (JPEGs, the
  fused crop) and whole batches."""
  data_dir, _ = noise_jpegs

  def first_batch(flip):
    config = _config(data_dir, pp=dict(train='inception_crop', flip=flip))
    return next(input_pipeline.train_iterator(config, start_step=0))['image']

  flags = input_pipeline._uniforms(0, np.arange(16))[:, 0] < 0.5
  assert 0 < flags.sum() < 16
  plain = first_batch(False)
  np.testing.assert_array_equal(
      first_batch(True),
      np.where(flags[:, None, None, None], plain[:, :, ::-1], plain))
  images = np.arange(3 * 2 * 5 * 3, dtype=np.float32).reshape(3, 2, 5, 3)
  flags = np.array([True, False, True])
  np.testing.assert_array_equal(
      input_pipeline._flip(tf.constant(images), tf.constant(flags)),
      np.where(flags[:, None, None, None], images[:, :, ::-1], images))


def test_iterators_still_open_at_exit_are_deleted_first():
  """At exit, open pipelines are closed and their tf.data iterators deleted
  while Python still runs (deleted while the interpreter clears its modules,
  one whose thread was in the source's fetch hung the exit)."""
  images = np.zeros((8, 4, 4, 3), np.uint8)
  source = sources.Source(1, 8, lambda i: {'image': images[i],
                                           'label': np.zeros(len(i), np.int32)})
  iterator = input_pipeline.train_iterator(
      data_config(image_size=4, batch_size=4), start_step=0, source=source)
  next(iterator)
  tf_iterator = weakref.ref(iterator.gi_frame.f_locals['iterator'])
  input_pipeline._close_open_iterators()  # What atexit runs.
  assert tf_iterator() is None
  with pytest.raises(StopIteration):
    next(iterator)


def test_data_threads_sized_to_the_host():
  assert input_pipeline.data_threads(data_config()) == 1  # CPU-only host.
  assert input_pipeline.data_threads(data_config(data_threads=3)) == 3
  with pytest.raises(ValueError, match='data_threads'):
    input_pipeline.check_config(data_config(data_threads=-1))


def test_benchmark_input_times_the_pipeline_next_to_the_step(tmp_path):
  """`benchmark --input` times the config's train pipeline and its step."""
  rng = np.random.default_rng(0)
  for i in range(8):
    folder = tmp_path / 'train' / f'c{i % 2}'
    folder.mkdir(parents=True, exist_ok=True)
    image = rng.integers(0, 256, (40 + i, 30, 3), np.uint8)
    (folder / f'{i}.jpg').write_bytes(tf.io.encode_jpeg(image).numpy())
  proc = subprocess.run(
      python_command('-m', 'vit_jax.benchmark', '--input',
       '--config=configs/testing.py', '--config.batch_size=4',
       '--config.dataset=imagefolder', f'--config.data_dir={tmp_path}',
       '--config.pp.train=inception_crop', '--num_classes=2', '--steps=2',
       '--config.model.transformer.num_layers=1',  # Compiles faster.
       '--config.model.transformer.dropout_rate=0.0',
       '--warmup=1', '--input_batches=3'),
      cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr
  record = json.loads(proc.stdout.strip().splitlines()[-1])
  assert record['input_images_per_sec'] > 0 and record['images_per_sec'] > 0
  assert record['data_threads'] == 1 and record['input_batches'] == 3
  assert record['bottleneck'] == (
      'input' if record['input_images_per_sec'] < record['images_per_sec']
      else 'step')
  assert 'the bottleneck is the' in proc.stderr
