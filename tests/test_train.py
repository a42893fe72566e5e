"""The trainer end to end: outputs, resume, fine-tuning, exact eval, devices."""
import json
import os

import jax
import numpy as np
import pytest

from tests.conftest import SHORT_OVERRIDES, needs_fashion_mnist, \
    read_records, run_main, tiny_config, train_in_process
from vit_jax import checkpoint
from vit_jax import models
from vit_jax.evaluators import classification

def test_end_to_end_outputs(trained_run, trained_run_console):
  """The session's baseline run (conftest.BASELINE_OVERRIDES: few-shot
  probes on)."""
  workdir, proc = trained_run, trained_run_console
  records = read_records(workdir)
  train = [r for r in records if 'train/loss' in r]
  evals = [r for r in records if 'eval/accuracy' in r]
  assert [r['step'] for r in train] == [1, 2, 3, 4, 5, 6]
  assert all(np.isfinite(r['train/loss']) and r['train/images_per_sec'] > 0
             and 'train/lr' in r for r in train)
  assert [r['step'] for r in evals] == [3, 6]
  assert evals[-1]['eval/num_examples'] == 21
  # Colour decides the class: 5-shot linear probes on features separate it.
  assert evals[-1]['fewshot/5shot'] > 0.6
  assert sorted(os.listdir(workdir / 'checkpoints')) == ['3', '6']
  assert any(p.startswith('events.out.tfevents') for p in os.listdir(workdir))
  config = json.loads((workdir / 'config.json').read_text())
  assert config['total_steps'] == 6
  params = checkpoint.load_npz(str(workdir / 'params.npz'))
  assert params['head']['kernel'].shape == (16, 3)
  assert 'step 6/6' in proc.stderr and 'img/s' in proc.stderr


def _finetune_reference(workdir, image_folder, reference, *overrides,
                        image_size, steps):
  """main.py's fine-tuning of the reference checkpoint (its model: ViT-S/16
  with 2 blocks) on the image folder, batch 4, dropout off (scanned and
  unrolled models draw different dropout masks), in this process."""
  ref_dir, cases = reference
  checkpoint_path = ref_dir / cases['vit_s16_2blocks']['checkpoint']
  return train_in_process(
      workdir, image_folder, f'--config.pretrained_path={checkpoint_path}',
      '--config.model.hidden_size=384', '--config.model.patches.size=(16, 16)',
      '--config.model.transformer.num_heads=6',
      '--config.model.transformer.num_layers=2',
      '--config.model.transformer.mlp_dim=1536',
      '--config.model.transformer.dropout_rate=0.0', '--config.batch_size=4',
      '--config.log_every=1', '--config.lr.warmup_steps=1', *overrides,
      config=f'configs/finetune.py:model=testing,image_size={image_size},'
      f'steps={steps}')


def test_finetune_reference_at_higher_resolution(tmp_path, image_folder,
                                                 reference):
  _finetune_reference(tmp_path, image_folder, reference,
                      '--config.eval_batch_size=8', image_size=240, steps=2)
  params = checkpoint.load_npz(str(tmp_path / 'params.npz'))
  assert params['Transformer']['posembed_input']['pos_embedding'].shape == (
      1, 1 + 15 * 15, 384)
  assert params['head']['kernel'].shape == (384, 3)
  assert read_records(tmp_path)[-1]['eval/num_examples'] == 21


def test_exact_eval_counts_every_example_once():
  config = tiny_config()
  model = models.VisionTransformer(num_classes=3, **config)
  params = model.init(jax.random.PRNGKey(0), np.zeros((1, 32, 32, 3)),
                      train=False)['params']
  params = jax.tree.map(
      lambda p: p + np.random.RandomState(1).standard_normal(p.shape), params)
  rng = np.random.RandomState(0)
  images = rng.uniform(-1, 1, (37, 32, 32, 3)).astype(np.float32)
  labels = rng.randint(0, 3, 37)
  logits = np.asarray(model.apply({'params': params}, images, train=False))
  batches = []
  for start in range(0, 37, 16):  # 16 + 16 + 5 real, 11 padded.
    pad = max(start + 16 - 37, 0)
    batches.append({
        'image': np.pad(images[start:start + 16], [(0, pad)] + [(0, 0)] * 3),
        'label': np.pad(labels[start:start + 16], (0, pad)),
        'mask': np.arange(16) < 16 - pad})
  got = classification.evaluate(jax.jit(classification.make_eval_step(model)), params,
                                batches)
  assert got['eval/num_examples'] == 37
  assert got['eval/accuracy'] == pytest.approx(
      np.mean(logits.argmax(-1) == labels), abs=1e-7)
  logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  assert got['eval/loss'] == pytest.approx(
      -logp[np.arange(37), labels].mean(), rel=1e-5)


def _losses(workdir):
  return np.array([r['train/loss'] for r in read_records(workdir)
                   if 'train/loss' in r])


def test_scan_finetunes_like_unrolled(tmp_path, image_folder, reference):
  """--config.scan=True: stacked params from and to the published layout."""
  for scan in (False, True):
    _finetune_reference(tmp_path / str(scan), image_folder, reference,
                        f'--config.scan={scan}', image_size=64, steps=3)
  np.testing.assert_allclose(_losses(tmp_path / 'True'),
                             _losses(tmp_path / 'False'), rtol=1e-5)
  unrolled, scanned = (checkpoint.to_published(checkpoint.load_npz(
      str(tmp_path / d / 'params.npz'))) for d in ('False', 'True'))
  assert scanned.keys() == unrolled.keys()
  for key, value in unrolled.items():
    np.testing.assert_allclose(scanned[key], value, atol=1e-5, err_msg=key)


def test_same_losses_on_1_and_8_devices(tmp_path, image_folder,
                                        short_run_8_devices):
  """The 8-device run is main.py's; the 1-device one runs in this process."""
  train_in_process(tmp_path, image_folder, *SHORT_OVERRIDES)
  one, eight = _losses(tmp_path), _losses(short_run_8_devices)
  assert len(one) == 20
  np.testing.assert_allclose(eight, one, rtol=1e-3)
  assert not np.allclose(one[0], one[-1])  # It trained.


@needs_fashion_mnist
def test_default_job_same_losses_on_1_and_8_devices(tmp_path):
  """The acceptance command: the default job (no --config), 20 steps; on 8
  devices by main.py, on one in this process. (Its final eval on 64 test
  images in one batch, not 10000 in batches of 1000: the losses are
  compared; that eval was ~2.5 s of each run.)"""
  args = ('--config.total_steps=20', '--config.batch_size=64',
          '--config.log_every=1', '--config.eval_split=test[:64]',
          '--config.eval_batch_size=64')
  train_in_process(tmp_path / '1', None, *args, config=None)
  proc = run_main(tmp_path / '8', None, *args, devices=8, config=None)
  assert proc.returncode == 0, proc.stderr[-3000:]
  losses = [_losses(tmp_path / '1'), _losses(tmp_path / '8')]
  assert len(losses[0]) == 20
  np.testing.assert_allclose(losses[1], losses[0], rtol=1e-3)
  assert not np.allclose(losses[0][0], losses[0][-1])  # It trained.


def test_gradient_accumulation_matches_full_batch(tmp_path, image_folder):
  args = ('--config.total_steps=4', '--config.log_every=1',
          '--config.eval_every=100', '--config.checkpoint_every=100',
          '--config.model.transformer.dropout_rate=0.0')
  for accum in (1, 4):
    train_in_process(tmp_path / str(accum), image_folder, *args,
                     f'--config.accum_steps={accum}')
  np.testing.assert_allclose(_losses(tmp_path / '4'), _losses(tmp_path / '1'),
                             rtol=1e-4)
