"""MLP-Mixer: the published case, layout, compute options, fine-tuning init,
the token-count refusal, predict and the trainer end to end."""
import json

import jax
import ml_collections
import numpy as np
import pytest

from configs import finetune
from tests.conftest import REFERENCE, read_records, run_main, \
    train_in_process, zero_params
from vit_jax import benchmark
from vit_jax import checkpoint
from vit_jax import inference
from vit_jax import models
from vit_jax.configs import models as models_config
from vit_jax.train import validate

MIXER_PRESETS = ['Mixer-B_16', 'Mixer-B_32', 'Mixer-L_16']


def tiny_mixer(**overrides):
  """2 blocks over 4x4 patches of 16 px images: 16 tokens."""
  config = ml_collections.ConfigDict(dict(
      model_name='tiny-mixer', patches={'size': (4, 4)}, hidden_dim=16,
      num_blocks=2, tokens_mlp_dim=8, channels_mlp_dim=32))
  config.update(overrides)
  return config


def _init(model, size, seed=0):
  """Jitted: one compilation instead of one per op (minutes on a busy CPU)."""
  return jax.jit(lambda key: model.init(
      key, np.zeros((1, size, size, 3), np.float32), train=False))(
          jax.random.PRNGKey(seed))['params']


def _perturb(params, seed=1):
  rng = np.random.RandomState(seed)
  return jax.tree.map(lambda p: p + 0.1 * rng.standard_normal(p.shape), params)


def _case(reference):
  ref_dir, cases = reference
  case = cases['mixer_b16_2blocks']
  return (case, ref_dir / case['checkpoint'], np.load(ref_dir / case['input']),
          np.load(ref_dir / case['logits']))


def test_reference_logits(reference):
  case, path, x, want = _case(reference)
  model = models.create(case['model'], case['num_classes'])
  assert isinstance(model, models.MlpMixer)
  params = checkpoint.load_npz(str(path))
  got = np.asarray(jax.jit(lambda p: model.apply({'params': p}, x,
                                                 train=False))(params))
  diff = np.abs(got - want).max()
  print(f'mixer_b16_2blocks max |logit diff| = {diff:.3g}')
  assert diff < 5e-6


@pytest.mark.parametrize('name', MIXER_PRESETS)
def test_presets_have_published_layout(name):
  """Exactly the keys and shapes `save_npz` writes (`to_published` of the
  initialised tree: shapes only, so Mixer-L is not allocated)."""
  layout = json.loads((REFERENCE / 'param_layout.json').read_text())[name]
  assert models_config.MODEL_CONFIGS[name].to_dict() == {
      'model_name': name, **{k: v for k, v in layout['config'].items()
                             if k != 'patches'},
      'patches': {'size': tuple(layout['config']['patches']['size'])}}
  model = models.get_model(name, num_classes=layout['num_classes'])
  size = layout['image_size']
  shapes = jax.eval_shape(lambda: _init(model, size))
  got = {k: list(v.shape) for k, v in checkpoint.to_published(shapes).items()}
  assert got == layout['params']


def test_save_npz_round_trip_is_bit_exact(reference, tmp_path):
  _, path, _, _ = _case(reference)
  params = checkpoint.load_npz(str(path))
  assert params['stem']['kernel'].shape == (16, 16, 3, 256)
  assert set(params) == {'stem', 'MixerBlock_0', 'MixerBlock_1',
                         'pre_head_layer_norm', 'head'}
  out = str(tmp_path / 'copy.npz')
  checkpoint.save_npz(out, params)
  with np.load(path) as a, np.load(out) as b:
    assert sorted(a.files) == sorted(b.files)
    for k in a.files:
      assert a[k].dtype == b[k].dtype
      np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_init_is_the_originals():
  """Zero head, zero biases, unit LayerNorm scales; outputs are pooled."""
  model = models.create(tiny_mixer(), 5)
  params = _init(model, 16)
  assert not np.any(params['head']['kernel'])
  assert not np.any(params['MixerBlock_1']['token_mixing']['Dense_0']['bias'])
  assert params['MixerBlock_0']['token_mixing']['Dense_0']['kernel'].shape == (
      16, 8)
  x = np.random.RandomState(0).uniform(-1, 1, (2, 16, 16, 3))
  shape = lambda m, p: jax.eval_shape(
      lambda: m.apply({'params': p}, x, train=False)).shape
  assert shape(model, params) == (2, 5)
  body = {k: v for k, v in params.items() if k != 'head'}
  assert shape(model.clone(num_classes=0), body) == (2, 16)


def test_remat_scan_bf16_match():
  model = models.create(tiny_mixer(), 3)
  params = _perturb(_init(model, 16))
  x = np.random.RandomState(0).uniform(-1, 1, (2, 16, 16, 3))
  apply = lambda m, p: jax.jit(m.apply, static_argnames='train')(
      {'params': p}, x, train=False)
  ref = apply(model, params)
  np.testing.assert_allclose(apply(model.clone(remat=True), params), ref,
                             atol=1e-6)
  scanned = model.clone(scan=True, remat=True)
  stacked = checkpoint.stack_blocks(params)
  assert checkpoint.has_stacked_blocks(stacked)
  assert jax.tree.map(np.shape, stacked) == jax.tree.map(
      np.shape, _init(scanned, 16))
  assert stacked['MixerBlocks']['block']['token_mixing']['Dense_0'][
      'kernel'].shape == (2, 16, 8)
  np.testing.assert_allclose(apply(scanned, stacked), ref, atol=1e-6)
  grad = lambda m, p: jax.jit(jax.grad(lambda p: (apply(m, p)**2).sum()))(p)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5),
               checkpoint.unstack_blocks(grad(scanned, stacked)),
               grad(model, params))
  jax.tree.map(np.testing.assert_array_equal,
               checkpoint.unstack_blocks(stacked), params)
  assert checkpoint.to_published(stacked).keys() == checkpoint.to_published(
      params).keys()
  bf16 = apply(model.clone(dtype=jax.numpy.bfloat16), params)
  assert bf16.dtype == np.float32
  np.testing.assert_allclose(bf16, ref, atol=0.05)


@pytest.mark.parametrize('scan', [False, True])
def test_load_pretrained_new_head(reference, scan):
  case, path, x, _ = _case(reference)
  config = ml_collections.ConfigDict(case['model'])
  model = models.create(config, 4, scan=scan)
  init = _init(model, 224)
  params = checkpoint.load_pretrained(pretrained_path=str(path),
                                      init_params=init, model_config=config)
  assert jax.tree.map(np.shape, params) == jax.tree.map(np.shape, init)
  np.testing.assert_array_equal(params['head']['kernel'],
                                init['head']['kernel'])
  # The body is the checkpoint's: its features match the original model's.
  body = models.create(config, 0)
  published = checkpoint.load_npz(str(path))
  del published['head']
  apply = lambda m, p: jax.jit(lambda p: m.apply({'params': p}, x,
                                                 train=False))(p)
  got = apply(model.clone(num_classes=0),
              {k: v for k, v in params.items() if k != 'head'})
  np.testing.assert_allclose(got, apply(body, published), atol=1e-6)


def test_token_count_change_is_refused(reference, tmp_path):
  """Fine-tuning at 160 px (10x10 tokens) from a 224 px (14x14) Mixer: the
  trainer's validation refuses it before compiling, naming both counts;
  load_pretrained and predict refuse it too."""
  case, path, _, _ = _case(reference)
  config = finetune.get_config('model=Mixer-B_16,image_size=160')
  config.model.update({k: v for k, v in case['model'].items()
                       if k != 'patches'})
  config.pretrained_path = str(path)
  want = r"Mixer for 196 tokens .* model has 100 tokens .*\(224x224 px"
  with pytest.raises(checkpoint.CheckpointMismatchError, match=want):
    validate.validate(config, workdir=str(tmp_path), num_devices=1,
                      num_processes=1)
  model = models.create(config.model, 4)
  init = zero_params(model, (1, 160, 160, 3))  # Shapes only.
  with pytest.raises(checkpoint.CheckpointMismatchError, match=want):
    checkpoint.load_pretrained(pretrained_path=str(path), init_params=init,
                               model_config=config.model)
  json_path = tmp_path / 'cases.json'
  json_path.write_text(json.dumps({'m': case}))
  with pytest.raises(checkpoint.CheckpointMismatchError, match=want):
    inference.load_model(str(path), config_json=f'{json_path}:m',
                         image_size=160)


def test_predict_loads_a_mixer(reference, tmp_path):
  case, path, x, want = _case(reference)
  json_path = tmp_path / 'cases.json'
  json_path.write_text(json.dumps({'m': case}))
  loaded = inference.load_model(str(path), config_json=f'{json_path}:m')
  assert loaded.image_size == 224 and loaded.model.num_classes == 10
  probs, indices = inference.predict(loaded.model, loaded.params, x, top_k=3)
  want_probs = np.exp(want) / np.exp(want).sum(-1, keepdims=True)
  np.testing.assert_array_equal(indices, np.argsort(-want_probs)[:, :3])
  np.testing.assert_allclose(probs, -np.sort(-want_probs)[:, :3], atol=1e-6)


def test_benchmark_flops():
  """Mixer-B/16 at 224 px: 12.6 GMACs (timm lists 12.61)."""
  flops = benchmark.forward_flops(models_config.MODEL_CONFIGS['Mixer-B_16'],
                                  224, 1000)
  assert flops / 2e9 == pytest.approx(12.60, abs=0.01)


_TINY_ARGS = ('--config.model.hidden_dim=16', '--config.model.num_blocks=2',
              '--config.model.tokens_mlp_dim=8',
              '--config.model.channels_mlp_dim=32',
              '--config.model.patches.size=(4, 4)', '--config.image_size=16',
              '--config.batch_size=16', '--config.eval_batch_size=32',
              '--config.log_every=1', '--config.eval_every=3',
              '--config.checkpoint_every=3', '--config.lr.warmup_steps=2',
              '--config.total_steps=6', '--config.pp.train=resize',
              '--config.pp.eval=resize', '--config.eval_split=test')


def test_trains_from_scratch_and_resumes(tmp_path, image_folder, capsys):
  """configs/pretrain.py:variant=Mixer-B_16, shrunk; then the run is cut
  back to its step-3 checkpoint and re-run: it resumes there and ends with
  the same params, bit for bit. (Both runs in this process.)"""
  args = (*_TINY_ARGS, '--config.fewshot.shots=(1, 5)')
  config = 'configs/pretrain.py:variant=Mixer-B_16'
  train_in_process(tmp_path, image_folder, *args, config=config)
  records = read_records(tmp_path)
  losses = [r['train/loss'] for r in records if 'train/loss' in r]
  assert len(losses) == 6 and losses[-1] < losses[0]
  assert [r['step'] for r in records if 'fewshot/5shot' in r] == [3, 6]
  first = dict(np.load(tmp_path / 'params.npz'))
  assert first['MixerBlock_1/token_mixing/Dense_0/kernel'].shape == (16, 8)
  assert first['head/kernel'].shape == (16, 3)

  # Back to step 3, as if the run had been killed after that checkpoint.
  import shutil  # pylint: disable=g-import-not-at-top
  shutil.rmtree(tmp_path / 'checkpoints' / '6')
  (tmp_path / 'params.npz').unlink()
  capsys.readouterr()
  train_in_process(tmp_path, image_folder, *args, config=config)
  assert 'Starting at step 3' in capsys.readouterr().err
  with np.load(tmp_path / 'params.npz') as resumed:
    for k, v in first.items():
      np.testing.assert_array_equal(resumed[k], v, err_msg=k)


def test_finetunes_published_mixer_with_scan(tmp_path, image_folder,
                                             reference):
  """configs/finetune.py:model=Mixer-B_16 shrunk to the reference case,
  from its checkpoint, blocks scanned, params sharded FSDP over 2 devices:
  a new 3-class head, the published layout kept."""
  case, path, _, _ = _case(reference)
  m = case['model']
  proc = run_main(
      tmp_path, image_folder, f'--config.pretrained_path={path}',
      f'--config.model.hidden_dim={m["hidden_dim"]}',
      f'--config.model.num_blocks={m["num_blocks"]}',
      f'--config.model.tokens_mlp_dim={m["tokens_mlp_dim"]}',
      f'--config.model.channels_mlp_dim={m["channels_mlp_dim"]}',
      '--config.scan=True', "--config.mesh=(('data', -1), ('fsdp', 2))",
      '--config.batch_size=4', '--config.eval_batch_size=8',
      '--config.log_every=1', '--config.lr.warmup_steps=1', devices=2,
      config='configs/finetune.py:model=Mixer-B_16,image_size=224,steps=3')
  assert proc.returncode == 0, proc.stderr[-3000:]
  params = checkpoint.load_npz(str(tmp_path / 'params.npz'))
  assert params['head']['kernel'].shape == (256, 3)
  start = checkpoint.load_npz(str(path))
  stem_change = np.abs(params['stem']['kernel'] -
                       start['stem']['kernel']).max()
  # The zero head passes no gradient back at first; by step 3 it does.
  assert 0 < stem_change < 0.1  # Trained, from the checkpoint.
  assert read_records(tmp_path)[-1]['eval/num_examples'] == 21
