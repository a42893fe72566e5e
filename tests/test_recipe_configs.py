"""The paper recipes as configs: configs/vit_i1k.py (plain-ViT baseline)
and AugReg's named settings as arguments of configs/pretrain.py."""
import numpy as np
import pytest

from configs import pretrain
from configs import vit_i1k
from tests.conftest import read_records, train_in_process
from vit_jax import checkpoint
from vit_jax.configs import augreg_settings


def test_vit_i1k_is_the_plain_vit_baseline():
  config = vit_i1k.get_config('variant=S/16,epochs=90')
  model = config.model
  assert (model.hidden_size, model.transformer.num_layers,
          model.patches.size) == (384, 12, (16, 16))
  assert (model.posemb, model.classifier, model.head_zeroinit,
          model.representation_size) == ('sincos2d', 'gap', True, 384)
  assert model.transformer.dropout_rate == 0.0
  assert config.batch_size == 1024
  assert config.total_steps == 90 * 1_268_355 // 1024
  assert (config.optimizer.name, config.optimizer.b1,
          config.optimizer.b2) == ('adam', 0.9, 0.999)
  assert config.optimizer.decoupled_weight_decay
  assert config.optimizer.weight_decay == 1e-4
  assert (config.lr.base, config.lr.warmup_steps, config.lr.decay) == (
      1e-3, 10_000, 'cosine')
  assert (config.pp.train, config.pp.crop_min_area, config.pp.flip) == (
      'inception_crop', 0.05, True)
  assert tuple(config.pp.randaug) == (2, 10) and config.mixup.p == 0.2
  assert vit_i1k.get_config('epochs=300').total_steps == (
      300 * 1_268_355 // 1024)
  assert vit_i1k.get_config('variant=B/32').model.hidden_size == 768


def test_vit_i1k_trains(tmp_path, image_folder):
  """The config runs end to end (shrunk: tiny model, image folder; in this
  process)."""
  train_in_process(
      tmp_path, image_folder, '--config.train_split=train',
      '--config.eval_split=test', '--config.image_size=16',
      '--config.model.patches.size=(4, 4)', '--config.model.hidden_size=16',
      '--config.model.representation_size=16',
      '--config.model.transformer.mlp_dim=32',
      '--config.model.transformer.num_heads=2',
      '--config.model.transformer.num_layers=2', '--config.batch_size=16',
      '--config.eval_batch_size=32', '--config.lr.warmup_steps=2',
      '--config.log_every=1', '--config.eval_every=4',
      '--config.checkpoint_every=4', '--config.total_steps=8',
      config='configs/vit_i1k.py:variant=S/16')
  evals = [r for r in read_records(tmp_path) if 'eval/accuracy' in r]
  assert [r['step'] for r in evals] == [4, 8]
  params = checkpoint.load_npz(str(tmp_path / 'params.npz'))
  assert 'posembed_input' not in params['Transformer'] and 'cls' not in params
  assert params['pre_logits']['kernel'].shape == (16, 16)


@pytest.mark.parametrize('aug', list(augreg_settings.AUGMENTATIONS))
def test_pretrain_takes_augreg_settings(aug):
  config = pretrain.get_config(f'variant=B/16,aug={aug},wd=0.03,do=0.1,'
                               'sd=0.1')
  randaug, mixup = augreg_settings.AUGMENTATIONS[aug]
  assert config.pp.randaug == randaug and config.mixup.p == mixup
  assert config.optimizer.weight_decay == 0.03
  assert config.model.transformer.dropout_rate == 0.1
  assert config.model.transformer.stochastic_depth == 0.1


def test_augreg_levels_are_big_visions():
  a = augreg_settings.AUGMENTATIONS
  assert a['none'] == (None, 0.0) and a['light1'] == ((2, 0), 0.0)
  assert a['medium2'] == ((2, 15), 0.5) and a['strong2'] == ((2, 20), 0.8)


def test_pretrain_takes_a_file_name():
  config = pretrain.get_config(
      'variant=S/16,augreg=S_16-i21k-300ep-lr_0.001-aug_light1-wd_0.03-'
      'do_0.0-sd_0.0')
  assert config.pp.randaug == (2, 0) and config.mixup.p == 0.0
  assert config.optimizer.weight_decay == 0.03
  assert config.lr.base == 0.001
  assert config.model.transformer.stochastic_depth == 0.0


def test_pretrain_defaults_unchanged():
  config = pretrain.get_config('variant=L/16')
  assert config.optimizer.weight_decay == 0.1
  assert config.model.transformer.dropout_rate == 0.1  # ViT-L/16's preset.
  assert config.pp.randaug is None and config.mixup.p == 0.0
  assert config.model.transformer.stochastic_depth == 0.0
  np.testing.assert_equal(config.lr.base, 3e-3)


def test_bad_augreg_settings():
  with pytest.raises(ValueError, match="aug='heavy'"):
    pretrain.get_config('aug=heavy')
  with pytest.raises(ValueError, match='names no AugReg setting'):
    pretrain.get_config('augreg=B_16-i21k')
