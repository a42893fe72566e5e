"""Locked-image tuning: a short run beats chance, the image tower stays put."""
import flax
import jax
import ml_collections
import numpy as np
import pytest

from configs import lit as lit_config
from tests.conftest import needs_fashion_mnist
from vit_jax import checkpoint
from vit_jax import models
from vit_jax import zeroshot
from vit_jax.train import task_lit
from vit_jax.train import tasks

_TOWER = dict(model_name='tiny-fmnist', patches={'size': (7, 7)},
              hidden_size=32, classifier='token', representation_size=None,
              transformer=dict(mlp_dim=64, num_heads=2, num_layers=1,
                               attention_dropout_rate=0.0, dropout_rate=0.0))


def _config(**overrides):
  config = lit_config.get_config()
  config.model.image = _TOWER
  config.model.text.config.update(hidden_size=32, intermediate_dim=64,
                                  num_hidden_layers=1)
  config.model.out_dim = (None, 32)
  config.update(dict(total_steps=150, batch_size=64, log_every=50,
                     eval_every=150, checkpoint_every=150, cpu_devices=1))
  config.lr.warmup_steps = 5
  config.lr.base = 3e-3
  config.update(overrides)
  return config


def _tower_checkpoint(path):
  """A random (frozen) ViT with a 10-class head, in the published layout."""
  model = models.VisionTransformer(num_classes=10, **_TOWER)
  params = jax.jit(lambda: model.init(  # One compile, not one per op.
      jax.random.PRNGKey(1), np.zeros((1, 28, 28, 3)), train=False)['params'])()
  checkpoint.save_npz(str(path), params)
  return flax.traverse_util.flatten_dict(jax.device_get(params))


@needs_fashion_mnist
def test_short_tuning_run_beats_chance_with_a_locked_tower(tmp_path):
  tower = _tower_checkpoint(tmp_path / 'vit.npz')
  workdir = tmp_path / 'lit'
  metrics = tasks.train_and_evaluate(
      _config(image_checkpoint=str(tmp_path / 'vit.npz')), str(workdir))
  assert metrics['eval/zeroshot_num_examples'] == 10000
  assert metrics['eval/zeroshot_accuracy'] > 0.3, metrics  # Chance: 0.1.
  # The image tower is the checkpoint's, unchanged, without its head.
  params = checkpoint.load_npz(str(workdir / 'params.npz'))
  img = flax.traverse_util.flatten_dict(params['img'])
  assert set(img) == {k for k in tower if k[0] != 'head'}
  for k, v in img.items():
    np.testing.assert_array_equal(v, tower[k])
  assert float(np.exp(params['t'][0])) != pytest.approx(10.0)  # It learned.
  # The workdir is what `zeroshot --workdir` reads, and it agrees.
  files = {k: str(workdir / v) for k, v in zeroshot.WORKDIR_FILES.items()}
  model, params, tokenizer, config = zeroshot.load(
      checkpoint_path=files['params'], vocab_path=files['vocab'],
      config_json=files['config'])
  assert config.model_name == 'LiT-fmnist'
  assert tokenizer(['a photo of a bag.'])[0, 1] != 1  # Words known: no [UNK].


def test_build_vocab_covers_the_captions(tmp_path):
  vocab = task_lit.build_vocab(['a photo of a T-shirt/top.', 'Ankle boot'])
  assert vocab[:5] == ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]']
  assert vocab[5:] == ['-', '.', '/', 'a', 'ankle', 'boot', 'of', 'photo',
                       'shirt', 't', 'top']


def test_contrastive_loss_and_frozen_params():
  z = np.eye(4, dtype=np.float32)
  # Matching pairs, high temperature: near zero; shuffled: large.
  assert float(task_lit.contrastive_loss(z, z, 100.0)) < 1e-6
  assert float(task_lit.contrastive_loss(z, z[::-1], 100.0)) > 50
  params = {'img': {'head': {'kernel': 0}, 'embedding': {'kernel': 0}},
            'txt': {'head': {'kernel': 0}}, 't': 0}
  assert task_lit.frozen_mask(params) == {
      'img': {'head': {'kernel': False}, 'embedding': {'kernel': True}},
      'txt': {'head': {'kernel': False}}, 't': False}


@needs_fashion_mnist
def test_bad_input_errors(tmp_path):
  with pytest.raises(ValueError, match='Set config.image_checkpoint'):
    tasks.train_and_evaluate(_config(), str(tmp_path / 'a'))
  with pytest.raises(FileNotFoundError, match='vocab_path=.* does not exist'):
    tasks.train_and_evaluate(
        _config(image_checkpoint='random', vocab_path=str(tmp_path / 'v.txt')),
        str(tmp_path / 'a'))
  with pytest.raises(FileNotFoundError, match='does not exist'):
    tasks.train_and_evaluate(
        _config(image_checkpoint=str(tmp_path / 'none.npz')),
        str(tmp_path / 'b'))
  _tower_checkpoint(tmp_path / 'vit.npz')
  config = _config(image_checkpoint=str(tmp_path / 'vit.npz'))
  config.model.image = ml_collections.ConfigDict(_TOWER)
  config.model.image.hidden_size = 48  # Not the checkpoint's architecture.
  with pytest.raises(checkpoint.CheckpointMismatchError, match='shape'):
    tasks.train_and_evaluate(config, str(tmp_path / 'c'))
