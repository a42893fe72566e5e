"""Locked-image tuning on real image-text pairs: a captions folder, TFDS."""
import io
import json

import numpy as np
from PIL import Image
import pytest
import tensorflow_datasets as tfds

from tests.conftest import needs_fashion_mnist
from tests.test_train_lit import _config
from tests.test_train_lit import _tower_checkpoint
from vit_jax import zeroshot
from vit_jax.data import captions as caption_data
from vit_jax.data import sources
from vit_jax.evaluators import zeroshot as evaluators_zeroshot
from vit_jax.train import tasks
from vit_jax.workdir import metrics as metrics_file

_TEMPLATES = ('a photo of a {}.', 'a {} on white.', 'an image of the {}.')


def _write_image(path, pixels):
  path.parent.mkdir(parents=True, exist_ok=True)
  Image.fromarray(pixels).save(path)


def _fashion_mnist_folder(folder, count, holdout):
  """`count` Fashion-MNIST train images with class-name captions in
  sidecar .txt files; the last `holdout` (in file order) of distinct
  classes, so that a caption names one held-out image."""
  config = _config()
  source = sources.get_source(config, 'train')
  batch = source.fetch(np.arange(count + 200))
  images, labels = batch['image'][..., 0], batch['label']
  firsts = [int(np.flatnonzero(labels == c)[-1]) for c in range(holdout)]
  rest = [i for i in range(len(labels)) if i not in firsts][:count - holdout]
  for n, i in enumerate(rest + firsts):
    name = evaluators_zeroshot.FASHION_MNIST_CLASSES[labels[i]]
    _write_image(folder / f'{n // 100}' / f'{n:04d}.png', images[i])
    (folder / f'{n // 100}' / f'{n:04d}.txt').write_text(
        '\n'.join(t.format(name) for t in _TEMPLATES) + '\n')


@needs_fashion_mnist
def test_captions_folder_run_retrieves_held_out_pairs(tmp_path):
  _fashion_mnist_folder(tmp_path / 'pairs', 1000, holdout=10)
  _tower_checkpoint(tmp_path / 'vit.npz')
  config = _config(image_checkpoint=str(tmp_path / 'vit.npz'))
  config.captions.update(folder=str(tmp_path / 'pairs'), holdout=10)
  metrics = tasks.train_and_evaluate(config, str(tmp_path / 'lit'))
  assert metrics['eval/retrieval_num_pairs'] == 10
  # Chance: 0.1 each way; each caption names the class of one image.
  # Measured here: 0.5 and 0.4.
  assert metrics['eval/retrieval_i2t_recall_at_1'] >= 0.3, metrics
  assert metrics['eval/retrieval_t2i_recall_at_1'] >= 0.3, metrics
  # config.dataset (Fashion-MNIST) still gets its zero-shot eval (0.36).
  assert metrics['eval/zeroshot_accuracy'] > 0.25, metrics
  vocab = (tmp_path / 'lit' / 'vocab.txt').read_text().split()
  assert {'white', 'sneaker', 'bad'} <= set(vocab)  # Captions and prompts.


class LitTinyCaptions(tfds.core.GeneratorBasedBuilder):
  """coco_captions' layout in small: images of any size, several captions."""
  VERSION = tfds.core.Version('1.0.0')
  # Nothing to download. (Looking for a checksums file beside the code
  # needs the importlib_resources package, which tfds does not require.)
  url_infos = None

  def _info(self):
    return tfds.core.DatasetInfo(
        builder=self, features=tfds.features.FeaturesDict({
            'image': tfds.features.Image(shape=(None, None, 3)),
            'captions': tfds.features.Sequence(
                {'text': tfds.features.Text()})}))

  def _split_generators(self, dl_manager):
    del dl_manager
    return {'train': self._generate_examples()}

  def _generate_examples(self):
    colours = {'red': (255, 0, 0), 'green': (0, 255, 0), 'blue': (0, 0, 255)}
    for i in range(24):
      name, rgb = list(colours.items())[i % 3]
      image = np.zeros((20 + i, 30, 3), np.uint8) + np.uint8(rgb)
      yield i, {'image': image, 'captions': {
          'text': [f'a {name} square.', f'something {name}.']}}


def _prepare_tiny_captions(data_dir, file_format='array_record'):
  LitTinyCaptions(data_dir=str(data_dir),
                  file_format=file_format).download_and_prepare()
  return data_dir


@pytest.fixture(scope='module')
def tiny_captions(tmp_path_factory):
  """A TFDS data dir with lit_tiny_captions prepared as ArrayRecord."""
  return _prepare_tiny_captions(tmp_path_factory.mktemp('tfds'))


def _tfds_config(tmp_path, **overrides):
  # The folder run's batch size: its compiled train step is reused.
  config = _config(image_checkpoint='random', dataset='', eval_batch_size=8,
                   log_every=2, eval_every=2, checkpoint_every=2, **overrides)
  config.captions.update(tfds='lit_tiny_captions', data_dir=str(tmp_path),
                         holdout=4)
  return config


def test_tfds_captions_run_trains_resumes_and_writes_the_workdir(
    tmp_path, tiny_captions):
  workdir = tmp_path / 'lit'
  config = _tfds_config(tiny_captions, total_steps=2)
  first = tasks.train_and_evaluate(config, str(workdir))
  assert first['eval/retrieval_num_pairs'] == 4
  assert 'eval/zeroshot_accuracy' not in first  # No config.dataset.
  config = _tfds_config(tiny_captions, total_steps=4)
  tasks.train_and_evaluate(config, str(workdir))  # Resumes at 2.
  records = metrics_file.read(workdir / 'metrics.jsonl')
  assert [r['step'] for r in records if 'train/loss' in r] == [2, 4]
  files = {k: str(workdir / v) for k, v in zeroshot.WORKDIR_FILES.items()}
  _, params, tokenizer, _ = zeroshot.load(
      checkpoint_path=files['params'], vocab_path=files['vocab'],
      config_json=files['config'])
  assert tokenizer(['a green square.'])[0, 1] != 1  # A caption word, no [UNK].
  assert float(np.exp(params['t'][0])) != pytest.approx(10.0)  # It trained.


def test_tfds_captions_in_tfrecord_are_read_into_memory(tmp_path):
  _prepare_tiny_captions(tmp_path, 'tfrecord')
  config = _tfds_config(tmp_path)
  pairs = caption_data.load(config)
  assert pairs.images.num_examples == 24
  encoded = pairs.images.fetch(np.arange(24))['encoded']
  for captions, image in zip(pairs.captions, encoded):  # They still match.
    colour = np.asarray(Image.open(io.BytesIO(image))).mean((0, 1)).argmax()
    name = ('red', 'green', 'blue')[colour]
    assert captions == [f'a {name} square.', f'something {name}.']


def test_metadata_jsonl_layout(tmp_path):
  for name in ('b.png', 'sub/a.png'):
    _write_image(tmp_path / name, np.zeros((8, 8, 3), np.uint8))
  lines = [{'file_name': 'b.png', 'text': 'one'},
           {'file_name': 'sub/a.png', 'text': ['two', ' ', 'three']},
           {'file_name': 'b.png', 'text': 'four'}]
  (tmp_path / 'metadata.jsonl').write_text(
      ''.join(json.dumps(l) + '\n' for l in lines))
  pairs = caption_data.folder_pairs(str(tmp_path))
  assert pairs.captions == [['one', 'four'], ['two', 'three']]
  assert list(pairs.images.fetch(np.array([1]))['path']) == [
      str(tmp_path / 'sub/a.png')]
  train, held = caption_data.split_holdout(pairs, 1)
  assert train.captions == [['one', 'four']]
  assert held.images.fetch(np.array([0]))['path'][0].endswith('sub/a.png')


def test_caption_pick_is_a_function_of_seed_and_position():
  tokens = caption_data.Tokens(np.arange(6)[:, None], np.array([0, 1, 6]))
  positions = np.arange(1000)
  picked = tokens.pick(0, np.ones(1000, int), positions)[:, 0]
  assert set(picked) == {1, 2, 3, 4, 5}  # Example 1's five captions.
  np.testing.assert_array_equal(
      picked[500:], tokens.pick(0, np.ones(500, int), positions[500:])[:, 0])
  assert (tokens.pick(1, np.ones(1000, int), positions)[:, 0] != picked).any()
  assert (tokens.pick(0, np.zeros(3, int), positions[:3])[:, 0] == 0).all()
  np.testing.assert_array_equal(tokens.first(), [[0], [1]])


def _errors_config(tmp_path, **captions):
  config = _config(image_checkpoint='random', dataset='')
  config.captions.update(dict(dict(holdout=1), **captions))
  return config


def test_clear_errors_before_compiling(tmp_path, tiny_captions):
  def fails(error, match, **captions):
    with pytest.raises(error, match='(?s)' + match):  # '.' matches '\n'.
      tasks.train_and_evaluate(_errors_config(tmp_path, **captions),
                               str(tmp_path / 'w'))

  fails(FileNotFoundError, 'Captions folder .* does not exist',
        folder=str(tmp_path / 'none'))
  pairs = tmp_path / 'pairs'
  pairs.mkdir()
  fails(ValueError, 'No .* images in', folder=str(pairs))
  for name in ('a', 'b'):
    _write_image(pairs / f'{name}.png', np.zeros((8, 8, 3), np.uint8))
  fails(ValueError, 'need captions .*2 have none', folder=str(pairs))
  (pairs / 'a.txt').write_text('a black square\n')
  fails(ValueError, '1 have none.*  b.png', folder=str(pairs))
  (pairs / 'b.txt').write_text('\n  \n')  # Blank lines are no caption.
  fails(ValueError, '1 have none', folder=str(pairs))
  (pairs / 'b.txt').write_text('another\n')
  (pairs / 'b.png').write_bytes(b'not a png')
  fails(ValueError, '1 unreadable image file.*b.png', folder=str(pairs))
  _write_image(pairs / 'b.png', np.zeros((8, 8, 3), np.uint8))
  fails(ValueError, r'holdout=2 must be in \[0, 2\)', folder=str(pairs),
        holdout=2)
  fails(ValueError, 'Nothing to evaluate', folder=str(pairs), holdout=0)
  fails(ValueError, 'not both', folder=str(pairs), tfds='x')
  (pairs / 'metadata.jsonl').write_text('{"file_name": "c.png", "text": "x"}\n')
  fails(FileNotFoundError, 'missing file.*c.png', folder=str(pairs))
  (pairs / 'metadata.jsonl').write_text('{"file_name": "a.png"}\n')
  fails(ValueError, 'metadata.jsonl line 1: not a JSON object',
        folder=str(pairs))
  (pairs / 'metadata.jsonl').write_text('{"file_name": "a.png", "text": "x"}')
  fails(ValueError, 'no caption for 1 image.*b.png', folder=str(pairs))
  fails(ValueError, 'Unknown TFDS dataset', tfds='no_such_captions_set')
  fails(ValueError, "no text feature captions.text_key='caption'",
        tfds='lit_tiny_captions', data_dir=str(tiny_captions),
        text_key='caption')
  fails(ValueError, "no split 'test'", tfds='lit_tiny_captions',
        data_dir=str(tiny_captions), split='test')
