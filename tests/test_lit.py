"""LiT: the two towers against the original, presets, tokenizers, errors."""
import json

import flax
import jax
import numpy as np
import pytest

from tests.conftest import REFERENCE
from vit_jax import checkpoint
from vit_jax import models
from vit_jax.configs import models as models_config
from vit_jax.models import lit
from vit_jax.models import tokenizers

LIT_PRESETS = ['LiT-B16B', 'LiT-B16B_2', 'LiT-L16L', 'LiT-L16S', 'LiT-L16Ti']


def case_config(case):
  """The case's LitModel config; the BERT case's sizes are a mapping."""
  config = dict(case['model'])
  if 'bert' in case:
    config['text'] = {'config': case['bert']}
  return config


@pytest.mark.parametrize('name', ['lit_bert_tiny', 'lit_tt_tiny'])
def test_reference_case(reference, name):
  ref_dir, cases = reference
  case = cases[name]
  config = case_config(case)
  tokens = lit.get_tokenizer(config, str(ref_dir / case['tokenizer']))(
      case['texts'])
  np.testing.assert_array_equal(tokens, np.load(ref_dir / case['tokens']))
  assert tokens.dtype == np.int32
  params = checkpoint.load_npz(str(ref_dir / case['checkpoint']))
  images = np.load(ref_dir / case['images'])
  zimg, ztxt, out = jax.jit(lambda p: models.LitModel(**config).apply(
      {'params': p}, images=images, tokens=tokens))(params)
  np.testing.assert_allclose(zimg, np.load(ref_dir / case['zimg']), atol=1e-5,
                             rtol=0)
  np.testing.assert_allclose(ztxt, np.load(ref_dir / case['ztxt']), atol=1e-5,
                             rtol=0)
  assert float(out['t'][0]) == case['t']


def test_one_tower_alone(reference):
  ref_dir, cases = reference
  case = cases['lit_tt_tiny']
  model = models.LitModel(**case_config(case))
  params = checkpoint.load_npz(str(ref_dir / case['checkpoint']))
  images = np.load(ref_dir / case['images'])
  zimg, ztxt, _ = jax.jit(lambda p: model.apply({'params': p},
                                                images=images))(params)
  assert ztxt is None and zimg.shape == (2, 192)
  np.testing.assert_allclose(np.linalg.norm(zimg, axis=1), 1, atol=1e-6)
  tokens = np.load(ref_dir / case['tokens'])
  zimg, ztxt, _ = jax.jit(lambda p: model.apply({'params': p},
                                                tokens=tokens))(params)
  assert zimg is None
  np.testing.assert_allclose(ztxt, np.load(ref_dir / case['ztxt']), atol=1e-5)


def test_loads_position_numbered_block_children(reference, tmp_path):
  """Published files may number encoder block children pre-linen style."""
  ref_dir, cases = reference
  src = ref_dir / cases['lit_tt_tiny']['checkpoint']
  renames = {'MultiHeadDotProductAttention_0': 'MultiHeadDotProductAttention_1',
             'LayerNorm_1': 'LayerNorm_2', 'MlpBlock_0': 'MlpBlock_3'}
  with np.load(src) as npz:
    linen = {k: npz[k] for k in npz.files}
  old = {}
  for key, value in linen.items():
    parts = key.split('/')
    parts = [renames.get(p, p) if i and parts[i - 1].startswith('encoderblock_')
             else p for i, p in enumerate(parts)]
    old['/'.join(parts)] = value[None] if parts[-1] == 't' else value
  assert 'txt/Encoder_0/encoderblock_1/MlpBlock_3/Dense_0/bias' in old
  np.savez(tmp_path / 'old.npz', **old)
  got = flax.traverse_util.flatten_dict(
      checkpoint.load_npz(str(tmp_path / 'old.npz')))
  assert {'/'.join(k) for k in got} == set(linen)
  for k, v in got.items():
    np.testing.assert_array_equal(v, linen['/'.join(k)])


def _layout():
  path = REFERENCE / 'param_layout.json'
  if not path.exists():
    pytest.skip(f'{path} not found.')
  return json.loads(path.read_text())


def _as_json(x):
  return json.loads(json.dumps(x))


@pytest.mark.parametrize('name', LIT_PRESETS)
def test_preset_param_tree_and_config(name):
  entry = _layout()[name]
  config = models_config.get_model_config(name).to_dict()
  assert _as_json(config) == entry['config']
  model = models.LitModel(**config)
  size = entry['image_size']
  shapes = jax.eval_shape(lambda: model.init(
      jax.random.PRNGKey(0), images=np.zeros((1, size, size, 3), np.float32),
      tokens=np.zeros((1, config['pp']['max_len']), np.int32)))['params']
  got = {'/'.join(k): list(v.shape)
         for k, v in flax.traverse_util.flatten_dict(shapes).items()}
  assert got == entry['params']


def test_unknown_preset_and_lit_name_in_get_model():
  with pytest.raises(ValueError, match="Unknown model 'LiT-B16X'"):
    models_config.get_model_config('LiT-B16X')
  with pytest.raises(ValueError, match='image-text model: it takes no num_classes'):
    models.get_model('LiT-B16B', num_classes=10)


# Tokenizers.


def _bert(tmp_path, words=('a', 'photo', 'of', 'dog', '##s', '.'), max_len=6):
  vocab = tmp_path / 'vocab.txt'
  vocab.write_text('\n'.join(['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]',
                              *words]) + '\n')
  return tokenizers.get_tokenizer('bert')(vocab_path=str(vocab),
                                          max_len=max_len)


def test_bert_tokenizer_edge_cases(tmp_path):
  tok = _bert(tmp_path)
  assert tok.vocab_size == 11 and tok.cls_token == 2
  got = tok(['a photo of dogs.', '', 'A PHOTO Of Dog', 'zebra',
             'a photo of a photo of a dog'])
  np.testing.assert_array_equal(got, [
      [2, 5, 6, 7, 8, 9],      # WordPiece: dogs -> dog ##s; clipped at 6.
      [2, 0, 0, 0, 0, 0],      # Empty: [CLS] and padding.
      [2, 5, 6, 7, 8, 0],      # Lower-cased.
      [2, 1, 0, 0, 0, 0],      # Unknown word: [UNK].
      [2, 5, 6, 7, 5, 6],      # Longer than max_len: clipped.
  ])
  assert got.dtype == np.int32 and tok([]).shape == (0, 6)


def test_sentencepiece_tokenizer_edge_cases(reference):
  ref_dir, _ = reference
  tok = tokenizers.get_tokenizer('sentencepiece')(
      vocab_path=str(ref_dir / 'lit_tt_spm.model'), max_len=8)
  assert tok.eos_token == 1 and tok.vocab_size == 80
  got = tok(['dog', '', 'DOG', '€', 'a photo of a photo of a dog'])
  np.testing.assert_array_equal(got[0], [9, 1, 1, 1, 1, 1, 1, 1])
  np.testing.assert_array_equal(got[1], [1] * 8)  # Empty: only EOS.
  assert (got[2] != got[0]).any()  # SentencePiece keeps the case.
  assert 2 in got[3]  # An unknown character: <unk>.
  assert (got[4] != 1).sum() == 7 and got[4, -1] == 1  # Clipped, EOS last.
  assert got.dtype == np.int32 and tok([]).shape == (0, 8)


@pytest.mark.parametrize('name', ['bert', 'sentencepiece'])
def test_preprocess_tf_matches_batch_call(reference, name):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  ref_dir, cases = reference
  case = cases['lit_bert_tiny' if name == 'bert' else 'lit_tt_tiny']
  tok = tokenizers.get_tokenizer(name)(
      vocab_path=str(ref_dir / case['tokenizer']), max_len=16)
  ds = tf.data.Dataset.from_tensor_slices(case['texts']).map(
      tok.preprocess_tf).batch(len(case['texts']))
  np.testing.assert_array_equal(next(iter(ds)).numpy(),
                                np.load(ref_dir / case['tokens']))


def test_tokenizer_errors(reference, tmp_path):
  ref_dir, cases = reference
  with pytest.raises(FileNotFoundError, match='Vocabulary file .* does not'):
    tokenizers.get_tokenizer('bert')(vocab_path=str(tmp_path / 'x.txt'),
                                     max_len=16)
  with pytest.raises(ValueError, match="Unknown tokenizer 'wordpiece'"):
    tokenizers.get_tokenizer('wordpiece')
  with pytest.raises(ValueError, match='not a SentencePiece model'):
    tokenizers.get_tokenizer('sentencepiece')(
        vocab_path=str(ref_dir / 'lit_bert_vocab.txt'), max_len=16)
  with pytest.raises(ValueError, match='not a BERT WordPiece vocabulary'):
    (tmp_path / 'words.txt').write_text('a\nb\n')
    tokenizers.get_tokenizer('bert')(vocab_path=str(tmp_path / 'words.txt'),
                                     max_len=16)
  # A tokenizer of another model: more token ids than the tower embeds.
  config = case_config(cases['lit_tt_tiny'])
  config['pp'] = dict(config['pp'], tokenizer_name='bert')
  with pytest.raises(ValueError, match='belongs to another model'):
    lit.get_tokenizer(config, str(ref_dir / 'lit_bert_vocab.txt'))


def test_more_tokens_than_bert_positions(reference):
  _, cases = reference
  model = models.LitModel(**case_config(cases['lit_bert_tiny']))
  with pytest.raises(ValueError, match='max_length=16 positions'):
    jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0),
                                      tokens=np.ones((1, 17), np.int32)))
