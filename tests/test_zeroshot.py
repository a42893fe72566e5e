"""Zero-shot classification on the tiny LiT reference case."""
import re
import subprocess

import jax
import ml_collections
import numpy as np
from PIL import Image
import pytest

from tests.conftest import ROOT, python_command
from vit_jax import checkpoint
from vit_jax import zeroshot
from vit_jax.data import input_pipeline
from vit_jax.evaluators import zeroshot as evaluators_zeroshot


@pytest.fixture(scope='module')
def tiny(reference):
  ref_dir, cases = reference
  case = cases['lit_tt_tiny']
  model, params, tokenizer, config = zeroshot.load(
      checkpoint_path=str(ref_dir / case['checkpoint']),
      vocab_path=str(ref_dir / case['tokenizer']),
      config_json=f'{ref_dir / "cases.json"}:lit_tt_tiny')
  return ref_dir, case, model, params, tokenizer, config


def test_class_embeddings_and_classify_match_the_reference(tiny):
  ref_dir, case, model, params, tokenizer, _ = tiny
  ztxt = np.load(ref_dir / case['ztxt'])
  # One template '{}': each "class" embedding is its text's embedding.
  classes = evaluators_zeroshot.class_embeddings(model, params, tokenizer, case['texts'],
                                                 templates=('{}',), batch_size=3)
  np.testing.assert_allclose(classes, ztxt, atol=1e-5)
  probs, predicted = evaluators_zeroshot.classify(model, params,
                                                  np.load(ref_dir / case['images']),
                                                  classes)
  logits = case['t'] * np.load(ref_dir / case['zimg']) @ ztxt.T
  np.testing.assert_array_equal(predicted, logits.argmax(1))
  np.testing.assert_allclose(probs, jax.nn.softmax(logits), atol=1e-4)


def test_prompt_ensemble_is_the_normalised_mean(tiny):
  _, _, model, params, tokenizer, _ = tiny
  templates = ('a photo of a {}.', 'a {}')
  got = evaluators_zeroshot.class_embeddings(model, params, tokenizer, ['dog', 'cat'],
                                             templates)
  each = evaluators_zeroshot.class_embeddings(
      model, params, tokenizer,
      [t.format(c) for c in ['dog', 'cat'] for t in templates], ('{}',))
  mean = each.reshape(2, 2, -1).mean(1)
  np.testing.assert_allclose(
      got, mean / np.linalg.norm(mean, axis=1, keepdims=True), atol=1e-6)
  with pytest.raises(ValueError, match='needs a {}'):
    evaluators_zeroshot.class_embeddings(model, params, tokenizer, ['dog'], ('a dog',))


def _image_folder(root):
  rng = np.random.RandomState(0)
  for name in ('ankle_boot', 'bag'):
    (root / 'test' / name).mkdir(parents=True)
    for i in range(3):
      Image.fromarray(rng.randint(0, 256, (40, 40, 3), np.uint8)).save(
          root / 'test' / name / f'{i}.png')


def test_cli_on_an_image_folder_agrees_with_the_function(tiny, tmp_path):
  ref_dir, case, model, params, tokenizer, _ = tiny
  _image_folder(tmp_path)
  out = subprocess.run(
      python_command('-m', 'vit_jax.zeroshot',
       f'--config_json={ref_dir / "cases.json"}:lit_tt_tiny',
       f'--checkpoint={ref_dir / case["checkpoint"]}',
       f'--vocab={ref_dir / case["tokenizer"]}', '--dataset=imagefolder',
       f'--data_dir={tmp_path}', '--split=test', '--batch_size=4'),
      cwd=ROOT, capture_output=True, text=True, timeout=300, check=True)
  match = re.search(r'zero-shot accuracy (\S+) on 6 images of imagefolder:'
                    r'test, 2 classes, 6 templates', out.stdout)
  assert match, out.stdout + out.stderr
  config = ml_collections.ConfigDict(dict(
      dataset='imagefolder', data_dir=str(tmp_path), train_split='test',
      eval_split='test', image_size=224, eval_batch_size=4,
      pp=dict(train='resize', eval='resize')))
  assert evaluators_zeroshot.dataset_class_names(config) == ['ankle boot', 'bag']
  classes = evaluators_zeroshot.class_embeddings(model, params, tokenizer,
                                                 ['ankle boot', 'bag'])
  metrics = evaluators_zeroshot.zero_shot_accuracy(
      model, params, classes, input_pipeline.eval_iterator(config))
  assert metrics['eval/num_examples'] == 6
  assert float(match.group(1)) == pytest.approx(metrics['eval/accuracy'],
                                                abs=1e-4)


def test_load_errors(reference, tmp_path):
  ref_dir, cases = reference
  case = cases['lit_tt_tiny']
  common = dict(checkpoint_path=str(ref_dir / case['checkpoint']),
                vocab_path=str(ref_dir / case['tokenizer']))
  with pytest.raises(ValueError, match="Unknown model 'LiT-X'"):
    zeroshot.load(model_name='LiT-X', **common)
  with pytest.raises(ValueError, match='ViT-B_16 is not a LiT model'):
    zeroshot.load(model_name='ViT-B_16', **common)
  with pytest.raises(FileNotFoundError, match='Vocabulary file'):
    zeroshot.load(config_json=f'{ref_dir / "cases.json"}:lit_tt_tiny',
                  checkpoint_path=common['checkpoint_path'],
                  vocab_path=str(tmp_path / 'missing.model'))
  with pytest.raises(checkpoint.CheckpointMismatchError, match='txt/'):
    zeroshot.load(config_json=f'{ref_dir / "cases.json"}:lit_tt_tiny',
                  checkpoint_path=str(ref_dir / 'lit_bert_tiny.npz'),
                  vocab_path=common['vocab_path'])
