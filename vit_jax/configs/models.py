"""The named model presets: the one place where architectures are defined.

Names are those of the published checkpoints (`ViT-B_16.npz`,
`Mixer-B_16.npz`, ...). `MODEL_CONFIGS[name]` is a locked
`ml_collections.ConfigDict`; use `get_model_config(name)` for an unlocked
copy you may edit. AugReg checkpoints name their models in a URI-safe
spelling of these names (`augreg_configs`).
"""
import ml_collections

MODEL_CONFIGS = {}


def _vit(name, **kwargs):
  MODEL_CONFIGS[name] = _vit_config(name, **kwargs).lock()


def _vit_config(name, *, hidden, mlp, heads, layers, patch, dropout=0.0,
                classifier='token', representation_size=None, resnet=None):
  config = ml_collections.ConfigDict()
  config.model_name = name
  config.patches = ml_collections.ConfigDict({'size': (patch, patch)})
  config.hidden_size = hidden
  config.transformer = ml_collections.ConfigDict(dict(
      mlp_dim=mlp, num_heads=heads, num_layers=layers,
      attention_dropout_rate=0.0, dropout_rate=dropout))
  config.classifier = classifier
  config.representation_size = representation_size
  if resnet is not None:
    config.resnet = ml_collections.ConfigDict(
        dict(num_layers=tuple(resnet), width_factor=1))
  return config


# Transformer sizes: (hidden, mlp, heads, layers, default dropout).
_SIZES = {
    'Ti': (192, 768, 3, 12, 0.0),
    'S': (384, 1536, 6, 12, 0.0),
    'B': (768, 3072, 12, 12, 0.0),
    'L': (1024, 4096, 16, 24, 0.1),
    'H': (1280, 5120, 16, 32, 0.1),
    # "Scaling Vision Transformers" (Zhai et al. 2021); no published .npz.
    'g': (1408, 6144, 16, 40, 0.0),
    'G': (1664, 8192, 16, 48, 0.0),
    # "Getting ViT in Shape" (Alabdulmohsin et al. 2023): SigLIP's So400m.
    'So400m': (1152, 4304, 16, 27, 0.0),
    # SigLIP 2's g-opt image tower.
    'g-opt': (1536, 6144, 16, 40, 0.0),
}


def _sized(size, **kwargs):
  hidden, mlp, heads, layers, dropout = _SIZES[size]
  kwargs.setdefault('dropout', dropout)
  return dict(hidden=hidden, mlp=mlp, heads=heads, layers=layers, **kwargs)


_vit('testing', hidden=10, mlp=10, heads=2, layers=1, patch=16, dropout=0.1)
for _size, _patch in [('Ti', 16), ('S', 16), ('B', 16), ('L', 16), ('H', 14),
                      ('B', 8), ('S', 32), ('B', 32), ('g', 14), ('G', 14)]:
  _vit(f'ViT-{_size}_{_patch}', **_sized(_size, patch=_patch))
# ViT-L/32 was trained without dropout, unlike ViT-L/16.
_vit('ViT-L_32', **_sized('L', patch=32, dropout=0.0))
for _size, _patch in [('S', 16), ('B', 16), ('S', 32), ('B', 32)]:
  _vit(f'ViT-{_size}_{_patch}-gap-norep',
       **_sized(_size, patch=_patch, classifier='gap'))

# Hybrids. The stem downsamples 4x and every stage after the first 2x more, so
# patches over the feature map give an effective /16 or /32.
_vit('R+ViT-Ti_16', **_sized('Ti', patch=8, resnet=()))
_vit('R50+ViT-B_16', **_sized('B', patch=1, dropout=0.1, resnet=(3, 4, 9)))
_vit('R26+ViT-B_32', **_sized('B', patch=1, resnet=(2, 2, 2, 2)))
_vit('R26+ViT-S_32', **_sized('S', patch=1, resnet=(2, 2, 2, 2)))
_vit('R50+ViT-L_32', **_sized('L', patch=1, resnet=(3, 4, 6, 3)))


def _mixer(name, *, hidden, blocks, tokens_mlp, channels_mlp, patch):
  config = ml_collections.ConfigDict()
  config.model_name = name
  config.patches = ml_collections.ConfigDict({'size': (patch, patch)})
  config.hidden_dim = hidden
  config.num_blocks = blocks
  config.tokens_mlp_dim = tokens_mlp
  config.channels_mlp_dim = channels_mlp
  MODEL_CONFIGS[name] = config.lock()


_mixer('Mixer-B_16', hidden=768, blocks=12, tokens_mlp=384, channels_mlp=3072,
       patch=16)
_mixer('Mixer-B_32', hidden=768, blocks=12, tokens_mlp=384, channels_mlp=3072,
       patch=32)
_mixer('Mixer-L_16', hidden=1024, blocks=24, tokens_mlp=512,
       channels_mlp=4096, patch=16)


def _lit(name, *, image, text_model, text, tokenizer, out_dim):
  """A LiT preset (models_lit.LitModel): `image` names the ViT preset of the
  image tower; the published files are gs://vit_models/lit/NAME.npz, with
  the vocabulary at NAME.txt (BERT) or NAME.model (SentencePiece)."""
  config = ml_collections.ConfigDict()
  config.model_name = name
  config.image = MODEL_CONFIGS[image].to_dict()
  config.text_model = text_model
  config.text = text
  config.pp = dict(tokenizer_name=tokenizer, size=224, max_len=16)
  config.out_dim = out_dim
  MODEL_CONFIGS[name] = config.lock()


_lit('LiT-B16B', image='ViT-B_16', text_model='bert', text={'config': 'base'},
     tokenizer='bert', out_dim=(768, 768))
_lit('LiT-B16B_2', image='ViT-B_16', text_model='bert',
     text={'config': 'base'}, tokenizer='bert', out_dim=(None, 768))
_lit('LiT-L16L', image='ViT-L_16', text_model='bert', text={'config': 'large'},
     tokenizer='bert', out_dim=(None, 1024))
for _name, _size in [('LiT-L16S', 'S'), ('LiT-L16Ti', 'Ti')]:
  _hidden, _mlp, _heads, _layers, _ = _SIZES[_size]
  _lit(_name, image='ViT-L_16', text_model='text_transformer',
       text=dict(width=_hidden, mlp_dim=_mlp, num_heads=_heads,
                 num_layers=_layers, vocab_size=16_000),
       tokenizer='sentencepiece', out_dim=(None, 1024))


# big_vision's SentencePiece models, as its `pp/ops_text.py` names them.
TOKENIZER_FILES = {
    'c4_en': 'gs://t5-data/vocabs/cc_en.32000/sentencepiece.model',
    'mc4': 'gs://t5-data/vocabs/mc4.250000.100extra/sentencepiece.model',
    'gemma': 'gs://big_vision/gemma_tokenizer.model',
}
# Where each SigLIP preset's released weights are (big_vision's
# `two_towers.VANITY_NAMES`); `checkpoint.load_npz` reads them.
CHECKPOINT_FILES = {}


def _siglip(name, *, size, patch, res, text_size, embed_dim, vocab, max_len,
            tokenizer, file, pad_value):
  """A SigLIP / SigLIP 2 preset, as big_vision's SigLIP colabs build them:
  a MAP-pooled ViT without a head (its MAP output is the embedding), the
  text transformer of size `text_size` with a head to `embed_dim`,
  temperature 10 and bias -10 at init. Texts are lower-cased SentencePiece
  pieces without BOS, EOS appended and kept last when a text is cut
  ("sticky"), padded with `pad_value` to `max_len`."""
  config = ml_collections.ConfigDict()
  config.model_name = name
  image = _vit_config(name, **_sized(size, patch=patch, classifier='map',
                                     dropout=0.0))
  config.image = image.to_dict()
  config.text_model = 'text_transformer'
  hidden, mlp, heads, layers, _ = _SIZES[text_size]
  config.text = dict(width=hidden, mlp_dim=mlp, num_heads=heads,
                     num_layers=layers, vocab_size=vocab, pool_type='last',
                     dropout_rate=0.0)
  config.out_dim = (None, embed_dim)
  config.temperature_init = 10.0
  config.bias_init = -10.0
  config.pp = dict(tokenizer_name='sentencepiece', size=res, max_len=max_len,
                   lower=True, pad_value=pad_value,
                   vocab=TOKENIZER_FILES[tokenizer])
  MODEL_CONFIGS[name] = config.lock()
  CHECKPOINT_FILES[name] = file


# SigLIP (Zhai et al. 2023): big_vision's SigLIP_demo.ipynb. Pad = EOS = 1.
for _size, _patch, _res, _file in [
    ('B', 16, 224, 'webli_en_b16_224_63724782'),
    ('B', 16, 256, 'webli_en_b16_256_60500360'),
    ('B', 16, 384, 'webli_en_b16_384_68578854'),
    ('B', 16, 512, 'webli_en_b16_512_68580893'),
    ('L', 16, 256, 'webli_en_l16_256_60552751'),
    ('L', 16, 384, 'webli_en_l16_384_63634585'),
    ('So400m', 14, 224, 'webli_en_so400m_224_57633886'),
    ('So400m', 14, 384, 'webli_en_so400m_384_58765454')]:
  _siglip(f'SigLIP-{_size}_{_patch}-{_res}', size=_size, patch=_patch,
          res=_res, text_size=_size, embed_dim=_SIZES[_size][0],
          vocab=32_000, max_len=16 if (_size, _res) == ('So400m', 224) else 64,
          tokenizer='c4_en', file=f'gs://big_vision/siglip/{_file}.npz',
          pad_value=1)
_siglip('SigLIP-B_16-i18n-256', size='B', patch=16, res=256, text_size='B',
        embed_dim=768, vocab=250_000, max_len=64, tokenizer='mc4',
        file='gs://big_vision/siglip/webli_i18n_b16_256_66117334.npz',
        pad_value=1)
# SigLIP 2 (Tschannen et al. 2025), fixed resolution: SigLIP2_demo.ipynb.
# The Gemma tokenizer (EOS 1) pads with its pad id, 0; g-opt's text tower is
# So400m-sized with a head to 1536.
for _size, _patch, _res in [
    ('B', 32, 256), ('B', 16, 224), ('B', 16, 256), ('B', 16, 384),
    ('B', 16, 512), ('L', 16, 256), ('L', 16, 384), ('L', 16, 512),
    ('So400m', 14, 224), ('So400m', 14, 384), ('So400m', 16, 256),
    ('So400m', 16, 384), ('So400m', 16, 512), ('g-opt', 16, 256),
    ('g-opt', 16, 384)]:
  _siglip(f'SigLIP2-{_size}_{_patch}-{_res}', size=_size, patch=_patch,
          res=_res, text_size='So400m' if _size == 'g-opt' else _size,
          embed_dim=_SIZES[_size][0], vocab=256_000, max_len=64,
          tokenizer='gemma', pad_value=0,
          file=('gs://big_vision/siglip2/siglip2_'
                f'{_size.lower()}{_patch}_{_res}.npz'))


def from_big_vision_two_towers(**kwargs) -> ml_collections.ConfigDict:
  """The two-tower model config (`models.create(config)` builds it) that
  computes what big_vision's `two_towers.Model(**kwargs)` computes.

  Takes that model's arguments: `image` / `text` (the towers' arguments,
  `variant` included), `image_model` ('vit'), `text_model`
  ('proj.image_text.text_transformer'), `out_dim`, `temperature_init`,
  `bias_init`. The towers' arguments map as `checkpoint.big_vision`'s
  `config_from_kwargs` and `text_config_from_kwargs` say.

  Raises:
    ValueError: an argument or a tower this project has no counterpart for.
  """
  # checkpoint/ reads configs, not the other way round: imported when used.
  from vit_jax.checkpoint import big_vision  # pylint: disable=g-import-not-at-top
  kw = dict(kwargs)
  image_model = kw.pop('image_model', 'vit')
  text_model = kw.pop('text_model', 'proj.image_text.text_transformer')
  if image_model != 'vit':
    raise ValueError(f'image_model={image_model!r}: only big_vision\'s '
                     "'vit' image tower has a counterpart here.")
  if text_model != 'proj.image_text.text_transformer':
    raise ValueError(f'text_model={text_model!r}: only big_vision\'s '
                     "'proj.image_text.text_transformer' text tower has a "
                     'counterpart here.')
  out_dim = kw.pop('out_dim', 128)
  if not isinstance(out_dim, int):
    out_dim = tuple(out_dim)
  config = ml_collections.ConfigDict(dict(
      model_name='big_vision two_towers',
      image=big_vision.config_from_kwargs(kw.pop('image', None) or {},
                                          'big_vision ViT').to_dict(),
      text_model='text_transformer',
      text=big_vision.text_config_from_kwargs(kw.pop('text', None) or {}),
      out_dim=out_dim,
      temperature_init=float(kw.pop('temperature_init', 1.0)),
      bias_init=kw.pop('bias_init', None)))
  if kw:
    raise ValueError(f'big_vision two_towers arguments {sorted(kw)} have no '
                     'counterpart here.')
  return config


# ViT presets without AugReg checkpoints (the original leaves out the same).
_NOT_IN_AUGREG = ('ViT-L_32', 'R50+ViT-B_16', 'ViT-H_14', 'ViT-g_14',
                  'ViT-G_14')


def augreg_name(preset: str) -> str:
  """'R26+ViT-S_32' -> 'R26_S_32': how AugReg file names spell a preset
  (no 'ViT-', '_' for '+', so that they are valid URIs unescaped)."""
  return preset.replace('ViT-', '').replace('+', '_')


def augreg_configs():
  """{AugReg model name: preset config} for every ViT/hybrid preset that has
  AugReg checkpoints; the name is what AugReg file names start with, before
  the first '-' (so presets whose spelling has a '-' have none)."""
  return {augreg_name(name): config for name, config in MODEL_CONFIGS.items()
          if 'ViT' in name and name not in _NOT_IN_AUGREG and
          '-' not in augreg_name(name)}


def get_model_config(name: str) -> ml_collections.ConfigDict:
  """An unlocked copy of preset `name`; a clear error for unknown names."""
  if name not in MODEL_CONFIGS:
    raise ValueError(f'Unknown model {name!r}. Known models: '
                     f'{", ".join(MODEL_CONFIGS)}.')
  return ml_collections.ConfigDict(MODEL_CONFIGS[name].to_dict())
