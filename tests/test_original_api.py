"""The original release's API (vit_jax/original/): its Colab's fine-tuning
flow, its configs and their translation, its command line, its LiT and
preprocessing methods. Everything offline: a generated image folder and a
checkpoint written here."""
import glob
import os
import subprocess

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from tests.conftest import python_command
from tests import conftest
from tests import test_data_sources
from vit_jax import checkpoint
from vit_jax import input_pipeline
from vit_jax import models
from vit_jax import preprocess
from vit_jax import train
from vit_jax import utils
from vit_jax.configs import common as common_config
from vit_jax.configs import models as models_config
from vit_jax.original import lit as original_lit
from vit_jax.original import translate
from vit_jax.train import optim


def _pretrained(path, model_config):
  """A 'pre-trained' checkpoint of `model_config` (1 class, 16 px), as the
  original's test_utils.create_checkpoint writes one."""
  model = models.VisionTransformer(num_classes=1, **model_config)
  params = jax.jit(lambda: model.init(  # One compile, not one per op.
      jax.random.PRNGKey(1), jnp.ones([1, 16, 16, 3]), train=False)['params'])()
  checkpoint.save_npz(str(path), params)
  return params


def _colab_config(image_folder, devices):
  config = common_config.with_dataset(common_config.get_config(), 'cifar10')
  config.dataset = str(image_folder)
  config.batch = 12 * devices
  config.batch_eval = 7 * devices
  config.pp.crop = 32
  return config


def test_colab_fine_tuning_flow_trains(image_folder, tmp_path):
  """vit_jax.ipynb's cells, in order, on a 3-class image folder."""
  devices = jax.local_device_count()
  config = _colab_config(image_folder, devices)
  ds_train = input_pipeline.get_data_from_directory(
      config=config, directory=f'{image_folder}/train', mode='train')
  ds_test = input_pipeline.get_data_from_directory(
      config=config, directory=f'{image_folder}/test', mode='test')
  info = input_pipeline.get_dataset_info(str(image_folder), 'train')
  assert (info['num_examples'], info['num_classes']) == (48, 3)
  assert [info['int2str'](i) for i in range(3)] == [
      'class0', 'class1', 'class2']
  num_classes = info['num_classes']

  batch = next(iter(ds_test.as_numpy_iterator()))
  assert batch['image'].shape == (devices, 7, 32, 32, 3)
  assert batch['label'].shape == (devices, 7, 3)
  np.testing.assert_array_equal(batch['label'].sum(-1), 1.0)
  # 21 test images in batches of 7 per device; the original drops a partial.
  assert sum(1 for _ in ds_test.as_numpy_iterator()) == 21 // (7 * devices)

  model_config = models_config.MODEL_CONFIGS['testing']
  model = models.VisionTransformer(num_classes=num_classes, **model_config)
  variables = jax.jit(lambda: model.init(
      jax.random.PRNGKey(0), batch['image'][0, :1], train=False),
                      backend='cpu')()
  _pretrained(tmp_path / 'testing.npz', model_config)
  params = checkpoint.load_pretrained(
      pretrained_path=str(tmp_path / 'testing.npz'),
      init_params=variables['params'], model_config=model_config)
  # 16 px -> 32 px: the position embeddings grow from 1 + 1 to 1 + 4 tokens.
  assert params['Transformer']['posembed_input']['pos_embedding'].shape == (
      1, 5, 10)
  assert params['head']['kernel'].shape == (10, 3)

  params_repl = flax.jax_utils.replicate(params)
  assert params_repl['head']['bias'].shape == (devices, 3)
  vit_apply_repl = jax.pmap(lambda params, inputs: model.apply(
      dict(params=params), inputs, train=False))

  def get_accuracy(params_repl):
    good = total = 0
    for batch in ds_test.as_numpy_iterator():
      predicted = vit_apply_repl(params_repl, batch['image'])
      same = predicted.argmax(axis=-1) == batch['label'].argmax(axis=-1)
      good += same.sum()
      total += same.size
    return good / total

  before = get_accuracy(params_repl)
  total_steps, base_lr = 16, 0.2
  lr_fn = utils.create_learning_rate_schedule(total_steps, base_lr, 'cosine',
                                              warmup_steps=3)
  tx = optax.chain(optax.clip_by_global_norm(1.0),
                   optax.sgd(learning_rate=lr_fn, momentum=0.9,
                             accumulator_dtype='bfloat16'))
  update_fn_repl = train.make_update_fn(apply_fn=model.apply, accum_steps=2,
                                        tx=tx)
  opt_state_repl = flax.jax_utils.replicate(tx.init(params))
  update_rng_repl = flax.jax_utils.replicate(jax.random.PRNGKey(0))
  losses = []
  for _, batch in zip(range(1, total_steps + 1), ds_train.as_numpy_iterator()):
    params_repl, opt_state_repl, loss_repl, update_rng_repl = update_fn_repl(
        params_repl, opt_state_repl, batch, update_rng_repl)
    losses.append(float(loss_repl[0]))
  assert len(losses) == total_steps
  assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5]), losses
  after = get_accuracy(params_repl)
  assert after > max(before, 0.9), (before, after)

  loaded = checkpoint.load(str(tmp_path / 'testing.npz'))
  assert checkpoint.inspect_params(
      params=loaded, expected=_pretrained(tmp_path / 'b.npz', model_config)
  ) is loaded
  del loaded['head']
  with pytest.raises(ValueError, match='head'):
    checkpoint.inspect_params(params=loaded, expected=variables['params'])
  assert checkpoint.inspect_params(params=loaded,
                                   expected=variables['params'],
                                   fail_if_missing=False) is loaded


def test_tfds_batches(tmp_path):
  """A TFDS dataset by name, prepared in tfds_data_dir (offline)."""
  test_data_sources.TinyShapes(config='varying', data_dir=str(tmp_path)
                               ).download_and_prepare()
  devices = jax.local_device_count()
  config = common_config.get_config()
  config.dataset = 'tiny_shapes/varying'
  config.tfds_data_dir = str(tmp_path)
  config.pp = ml_collections.ConfigDict(
      {'train': 'train', 'test': 'test', 'crop': 8})
  config.batch, config.batch_eval = 4 * devices, 2 * devices
  ds_train, ds_test = input_pipeline.get_datasets(config)
  batch = next(ds_train.as_numpy_iterator())
  assert batch['image'].shape == (devices, 4, 8, 8, 3)
  assert batch['image'].min() >= -1 and batch['image'].max() <= 1
  np.testing.assert_array_equal(batch['label'].sum(-1), 1.0)
  # 5 test examples: whole batches only, as the original.
  labels = [b['label'] for b in ds_test.as_numpy_iterator()]
  assert len(labels) == 5 // (2 * devices)
  in_order = [int(example['label']) for example in tfds.builder(
      config.dataset, data_dir=str(tmp_path)).as_dataset(
          split='test').as_numpy_iterator()]
  np.testing.assert_array_equal(
      np.concatenate(labels).reshape(-1, 3).argmax(-1),
      in_order[:len(labels) * 2 * devices])


def test_learning_rate_schedule_is_the_original():
  cosine = utils.create_learning_rate_schedule(100, 0.1, 'cosine', 10)
  np.testing.assert_allclose(
      [cosine(0), cosine(5), cosine(10), cosine(55), cosine(100)],
      [0.0, 0.05, 0.1, 0.05, 0.0], atol=1e-7)
  linear = utils.create_learning_rate_schedule(100, 0.1, 'linear', 10)
  np.testing.assert_allclose([linear(10), linear(55), linear(100)],
                             [0.1, 1e-5 + (0.1 - 1e-5) / 2, 1e-5], rtol=1e-5)
  with pytest.raises(ValueError, match='step'):
    utils.create_learning_rate_schedule(100, 0.1, 'step', 10)


def test_model_config_functions_and_presets():
  assert models_config.get_b16_config().to_dict() == (
      models_config.MODEL_CONFIGS['ViT-B_16'].to_dict())
  assert models_config.get_r26_s32_config().model_name == 'R26+ViT-S_32'
  assert models_config.get_lit_l16ti_config().text.width == 192
  with pytest.raises(AttributeError, match='get_b17_config'):
    models_config.get_b17_config()  # pylint: disable=no-member
  assert {'R_Ti_16', 'B_16', 'R26_S_32', 'B_8'} <= set(
      models_config.AUGREG_CONFIGS)
  assert models.model_configs is models_config
  counts = {}
  for name in ('testing', 'testing-unpooled'):
    model = models.get_model(name, num_classes=1000)
    shapes = jax.eval_shape(lambda m=model: m.init(
        jax.random.PRNGKey(0), jnp.ones([2, 224, 224, 3]), train=False))
    counts[name] = sum(x.size for x in jax.tree.leaves(shapes))
    out = jax.eval_shape(lambda v, m=model: m.apply(
        v, jnp.ones([2, 224, 224, 3]), train=False), shapes)
    assert out.shape == ((2, 196, 1000) if 'unpooled' in name else (2, 1000))
  # The original's models_test.py figures.
  assert counts == {'testing': 21_390, 'testing-unpooled': 21_370}


def test_get_model_lit_without_num_classes():
  model = models.get_model('LiT-B16B_2')
  assert isinstance(model, original_lit.LitModel)
  assert model.pp.max_len == 16
  assert model.vocab_path == 'gs://vit_models/lit/LiT-B16B_2.txt'
  assert models.get_model('LiT-L16S').vocab_path.endswith('LiT-L16S.model')
  with pytest.raises(ValueError, match='num_classes'):
    models.get_model('ViT-B_16')


def test_lit_model_methods(tmp_path, monkeypatch):
  model = original_lit.LitModel(
      image=conftest.tiny_config().to_dict(), text_model='text_transformer',
      text=dict(width=8, num_layers=1, mlp_dim=8, num_heads=2, vocab_size=5),
      pp=ml_collections.ConfigDict(dict(tokenizer_name='bert', size=32,
                                        max_len=4)),
      out_dim=(6, 6), model_name='tiny')
  variables = jax.jit(lambda: model.init(  # One compile, not one per op.
      jax.random.PRNGKey(0), images=jnp.zeros([1, 32, 32, 3]),
      tokens=jnp.zeros([1, 4], jnp.int32)))()
  monkeypatch.chdir(tmp_path)
  checkpoint.save_npz('tiny.npz', variables['params'])
  # No path: the copy in the working directory, as the original.
  loaded = model.load_variables()
  jax.tree.map(np.testing.assert_array_equal, loaded, variables)
  assert model.vocab_path == 'gs://vit_models/lit/tiny.txt'
  images = model.get_image_preprocessing()(
      [np.full((40, 20, 3), 255, np.uint8), np.zeros((9, 30, 3), np.uint8)])
  assert images.shape == (2, 32, 32, 3)
  np.testing.assert_array_equal(images[0], 1.0)
  np.testing.assert_array_equal(images[1], -1.0)


def test_preprocess_images_crop_and_get_pp(tmp_path):
  image = np.zeros((16, 10, 3), np.uint8)
  image[3:13] = 255  # White centre square, black bands above and below.
  crop = preprocess.PreprocessImages(size=4, crop=True)([image])
  np.testing.assert_array_equal(crop, 1.0)
  assert preprocess.PreprocessImages(size=4)([image]).mean() < 0.5
  vocab = tmp_path / 'vocab.txt'
  vocab.write_text('[PAD]\n[CLS]\nsome\ntest\nwords\n')
  pp = preprocess.get_pp(tokenizer_name='bert', vocab_path=str(vocab),
                         max_len=3, size=4)
  ds = tf.data.Dataset.from_tensor_slices(
      {'text': ['test', 'words'], 'image': np.ones([2, 10, 10, 3], np.uint8)})
  b = next(ds.map(pp).batch(2).as_numpy_iterator())
  assert b['image'].shape == (2, 4, 4, 3)
  np.testing.assert_array_equal(b['tokens'], [[1, 3, 0], [1, 4, 0]])


def test_translation_of_the_original_config():
  config = common_config.with_dataset(common_config.get_config(), 'cifar10')
  config.model = models_config.get_b16_config()
  config.pretrained_dir = '/ckpt'
  config.decay_type = 'linear'
  ours = translate.to_project_config(config)
  config.pp.crop = 32
  assert (ours.dataset, ours.train_split, ours.eval_split) == (
      'cifar10', 'train[:98%]', 'test')
  assert ours.pretrained_path == '/ckpt/ViT-B_16.npz'
  assert (ours.image_size, ours.batch_size, ours.eval_batch_size) == (
      384, 512, 512)
  assert (ours.total_steps, ours.accum_steps, ours.eval_every,
          ours.log_every, ours.checkpoint_every) == (10_000, 8, 100, 10, 1000)
  assert ours.optimizer.to_dict() == dict(
      ours.optimizer.to_dict(), name='sgd', momentum=0.9, weight_decay=0.0,
      grad_clip_norm=1.0, accumulator_dtype='bfloat16')
  assert (ours.lr.base, ours.lr.warmup_steps, ours.lr.decay) == (
      0.03, 500, 'linear')
  np.testing.assert_allclose(ours.lr.end * ours.lr.base, 1e-5)
  assert (ours.pp.train, ours.pp.crop_min_area, ours.pp.eval) == (
      'inception_crop', 0.05, 'resize')
  assert ours.model.to_dict() == config.model.to_dict()
  # with_dataset() copies the preset: editing a config leaves it as it was.
  assert common_config.DATASET_PRESETS['cifar10'].pp.crop == 384


@pytest.mark.parametrize('field, value, message', [
    ('tfds_manual_dir', '/manual', 'config.tfds_manual_dir'),
    ('decay_type', 'step', 'config.decay_type'),
    ('optim_dtype', 'float16', 'config.optim_dtype'),
    ('model_type', 'Mixer', 'config.model_type'),
    ('total_steps', None, 'config.total_steps'),
])
def test_translation_refuses_what_it_cannot_honour(field, value, message):
  config = ml_collections.ConfigDict(common_config.with_dataset(
      common_config.get_config(), 'cifar10').to_dict())
  config.model = models_config.get_testing_config()
  config[field] = value
  with pytest.raises(ValueError, match=message):
    translate.to_project_config(config)


def test_translation_refuses_unknown_fields():
  config = common_config.with_dataset(common_config.get_config(), 'cifar10')
  config.model = models_config.get_testing_config()
  config.mixup_alpha = 0.2
  with pytest.raises(ValueError, match='config.mixup_alpha'):
    translate.to_project_config(config)
  del config['mixup_alpha']
  config.pp.randaug = 2
  with pytest.raises(ValueError, match='config.pp.randaug'):
    translate.to_project_config(config)


def test_original_command_line_trains(image_folder, tmp_path):
  """python -m vit_jax.main with configs/vit.py:MODEL,DATASET, as the
  original's README runs it, over an image folder."""
  _pretrained(tmp_path / 'testing.npz', models_config.get_testing_config())
  workdir = tmp_path / 'workdir'
  result = subprocess.run(
      python_command('-m', 'vit_jax.main', f'--workdir={workdir}',
       f'--config={conftest.ROOT}/vit_jax/configs/vit.py:testing,cifar10',
       f'--config.pretrained_dir={tmp_path}',
       f'--config.dataset={image_folder}', '--config.pp.crop=32',
       '--config.batch=12', '--config.batch_eval=7', '--config.total_steps=3',
       '--config.warmup_steps=1', '--config.accum_steps=2',
       '--config.eval_every=0', '--config.checkpoint_every=0'),
      cwd=conftest.ROOT, env=conftest.main_env(), capture_output=True,
      text=True, timeout=600, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  assert os.path.exists(workdir / 'checkpoint_3')
  assert glob.glob(f'{workdir}/events.out.tfevents.*')
  assert (workdir / 'params.npz').exists()
  params = checkpoint.load(str(workdir / 'params.npz'))
  assert params['head']['kernel'].shape == (10, 3)
  restored = flax.training.checkpoints.restore_checkpoint(
      str(workdir), target=None)
  np.testing.assert_array_equal(restored['0']['head']['kernel'],
                                params['head']['kernel'])
  assert int(restored['2']) == 3


def test_momentum_dtype_is_honoured():
  config = common_config.with_dataset(common_config.get_config(), 'cifar10')
  config.model = models_config.get_testing_config()
  tx = optim.make_optimizer(translate.to_project_config(config))
  state = tx.init({'w': jnp.ones(3)})
  assert {x.dtype for x in jax.tree.leaves(state) if x.ndim} == {
      jnp.dtype('bfloat16')}
  config.optim_dtype = 'float32'
  tx = optim.make_optimizer(translate.to_project_config(config))
  assert {x.dtype for x in jax.tree.leaves(tx.init({'w': jnp.ones(3)}))
          if x.ndim} == {jnp.dtype('float32')}
