"""The named model presets: the one place where architectures are defined.

Names are those of the published checkpoints (`ViT-B_16.npz`,
`Mixer-B_16.npz`, ...). `MODEL_CONFIGS[name]` is a locked
`ml_collections.ConfigDict`; use `get_model_config(name)` for an unlocked
copy you may edit. AugReg checkpoints name their models in a URI-safe
spelling of these names (`augreg_configs`).
"""
import functools

import ml_collections

MODEL_CONFIGS = {}


def _vit(name, *, hidden, mlp, heads, layers, patch, dropout=0.0,
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
  MODEL_CONFIGS[name] = config.lock()


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
}


def _sized(size, **kwargs):
  hidden, mlp, heads, layers, dropout = _SIZES[size]
  kwargs.setdefault('dropout', dropout)
  return dict(hidden=hidden, mlp=mlp, heads=heads, layers=layers, **kwargs)


_vit('testing', hidden=10, mlp=10, heads=2, layers=1, patch=16, dropout=0.1)
_vit('testing-unpooled', hidden=10, mlp=10, heads=2, layers=1, patch=16,
     dropout=0.1, classifier='unpooled')
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


# The original release's `get_<short>_config()` functions, by short name.
_ORIGINAL_NAMES = {
    'testing': 'testing', 'testing_unpooled': 'testing-unpooled',
    'ti16': 'ViT-Ti_16', 's16': 'ViT-S_16', 'b16': 'ViT-B_16',
    'l16': 'ViT-L_16', 'h14': 'ViT-H_14', 'b8': 'ViT-B_8', 's32': 'ViT-S_32',
    'b32': 'ViT-B_32', 'l32': 'ViT-L_32',
    's16_gap_norep': 'ViT-S_16-gap-norep', 'b16_gap_norep': 'ViT-B_16-gap-norep',
    's32_gap_norep': 'ViT-S_32-gap-norep', 'b32_gap_norep': 'ViT-B_32-gap-norep',
    'r_ti16': 'R+ViT-Ti_16', 'r50_b16': 'R50+ViT-B_16',
    'r26_b32': 'R26+ViT-B_32', 'r26_s32': 'R26+ViT-S_32',
    'r50_l32': 'R50+ViT-L_32', 'mixer_b16': 'Mixer-B_16',
    'mixer_b32': 'Mixer-B_32', 'mixer_l16': 'Mixer-L_16',
    'lit_b16b': 'LiT-B16B', 'lit_b16b_2': 'LiT-B16B_2', 'lit_l16l': 'LiT-L16L',
    'lit_l16s': 'LiT-L16S', 'lit_l16ti': 'LiT-L16Ti',
}


def __getattr__(attr: str):
  """`get_b16_config()` and the rest of the original release's functions:
  each returns `get_model_config` of its preset (`_ORIGINAL_NAMES`)."""
  short = attr[len('get_'):-len('_config')]
  if attr.startswith('get_') and attr.endswith('_config') \
      and short in _ORIGINAL_NAMES:
    return functools.partial(get_model_config, _ORIGINAL_NAMES[short])
  raise AttributeError(f'module {__name__!r} has no attribute {attr!r}')


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


# The original release's name: {AugReg model name: preset config}.
AUGREG_CONFIGS = augreg_configs()
