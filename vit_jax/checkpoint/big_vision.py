"""big_vision's ViT checkpoints (`big_vision/models/vit.py`) -> this project's
layout, and the model config that computes what big_vision computes.

big_vision's ViT keeps the module names of the original release (linen
numbering inside `Transformer/encoderblock_N`), so most keys load as they are.
What differs, and what `to_vit_jax` converts (`checkpoint.load_npz` calls it
when `is_big_vision` says a file is in that layout):

1. Position embeddings live at the top level (`pos_embedding`, [1, h*w, D])
   and are added to the patch tokens *before* the class token is prepended,
   so the class token gets none. Here they live at
   `Transformer/posembed_input/pos_embedding` and are added after: a zero
   row is prepended for the class token, which is then exactly big_vision's
   sum. (Files from before 2022 kept them under `Transformer/` and, with a
   class token, had h*w + 1 rows added after it: moved as they are.)
   `posemb='sincos2d'` files have no position embeddings at all.
2. Scanned models (`scan=True`) store one `Transformer/encoderblock` whose
   leaves have a leading layer axis: split into `encoderblock_N`.
3. MAP-head variants from ViT-G's development kept the head's params at the
   top level (`probe`, `MultiHeadDotProductAttention_0`, ...): moved under
   `MAPHead_0`, as big_vision's `fix_old_checkpoints` does.
4. Files saved with the optimizer state keep the params under `params/`
   (older ones under `opt/target/`): that subtree is taken. bfloat16 arrays,
   which `np.savez` stores as 2-byte void, are read back as float32.

Two-tower files (big_vision's `two_towers.Model`: SigLIP, SigLIP 2, LiT;
`img/...`, `txt/...`, `t`, `b`) are converted tower by tower: the image
tower as above, the text tower (`models/text_transformer.py`, whose names
big_vision's are) only where it was scanned (`Encoder_0/encoderblock`, split
as in 2.) or is from the old layout that kept a second position embedding
at `Encoder_0/pos_embedding` (added to `pos_embedding`, as big_vision's
`text_transformer.load` does). Released files keep every key under
`params/`; files saved from a model alone have none: both load.

FlexiViT files (`models/proj/flexi/vit.py`, e.g.
gs://big_vision/flexivit/flexivit_b_i1k.npz) have this layout too; their
model kwargs (`posemb_size`) add `flexi_fields` to the config.

Pooling maps to `classifier`: big_vision's 'tok' -> 'token', 'gap', 'map'
(`models_vit.MAPHead`); its '0' and 'none' (first token without a class
token, no pooling) have no counterpart, and a file cannot say it used them
(it would look like 'gap'). `rep_size` is `representation_size` (pre_logits
with tanh, the same); `head_zeroinit` and `posemb` keep their names.
"""
import math
import re
from typing import Any, Dict, Mapping

import jax.numpy as jnp
import ml_collections
import numpy as np

Flat = Dict[str, np.ndarray]

_POSEMB = 'Transformer/posembed_input/pos_embedding'
_OLD_POSEMBS = ('pos_embedding', 'Transformer/pos_embedding')
_STACKED = 'Transformer/encoderblock/'
_INLINE_MAP = ('probe', 'MultiHeadDotProductAttention_0/', 'LayerNorm_0/',
               'MlpBlock_0/')
_STATE_PREFIXES = ('params/', 'opt/target/')
# big_vision's pool_type -> classifier.
_POOLS = {'tok': 'token', 'gap': 'gap', 'map': 'map'}


_TOWERS = ('img/', 'txt/')
_TEXT_STACKED = 'Encoder_0/encoderblock/'
_TEXT_OLD_POSEMB = 'Encoder_0/pos_embedding'


def _tower(flat: Mapping[str, Any], prefix: str) -> Flat:
  return {k[len(prefix):]: v for k, v in flat.items() if k.startswith(prefix)}


def _vit_is_big_vision(flat: Mapping[str, Any]) -> bool:
  return (any(k in flat for k in _OLD_POSEMBS) or 'probe' in flat or
          any(k.startswith((_STACKED,) + _STATE_PREFIXES) for k in flat))


def _text_is_big_vision(flat: Mapping[str, Any]) -> bool:
  return _TEXT_OLD_POSEMB in flat or any(
      k.startswith(_TEXT_STACKED) for k in flat)


def is_big_vision(flat: Mapping[str, Any]) -> bool:
  """Whether flat `/`-joined keys are in big_vision's layout (one of the
  differences above is present, in a ViT or in either tower of a two-tower
  model). A sin-cos model without a class token or scan is in both layouts
  at once: it loads the same either way."""
  return (_vit_is_big_vision(flat) or
          _vit_is_big_vision(_tower(flat, 'img/')) or
          _text_is_big_vision(_tower(flat, 'txt/')))


def _params_only(flat: Flat) -> Flat:
  """The `params/` (or `opt/target/`) subtree of a file with optimizer
  state; bfloat16 (stored as 2-byte void) as float32."""
  for prefix in _STATE_PREFIXES:
    if any(k.startswith(prefix) for k in flat):
      flat = {k[len(prefix):]: v for k, v in flat.items()
              if k.startswith(prefix)}
      break
  return {k: (np.asarray(v).view(jnp.bfloat16).astype(np.float32)
              if np.asarray(v).dtype.kind == 'V' else v)
          for k, v in flat.items()}


def _is_square(n: int) -> bool:
  return math.isqrt(n) ** 2 == n


def _split_stacked(flat: Flat, stacked: str, block: str) -> None:
  """`{stacked}leaf` [layers, ...] -> `{block}{i}/leaf`, in place."""
  for key in [k for k in flat if k.startswith(stacked)]:
    value = flat.pop(key)
    for i, layer in enumerate(value):
      flat[f'{block}{i}/{key[len(stacked):]}'] = layer


def _text_to_vit_jax(flat: Flat) -> Flat:
  """big_vision's text transformer -> `models/text_transformer.py`."""
  _split_stacked(flat, _TEXT_STACKED, 'Encoder_0/encoderblock_')
  if _TEXT_OLD_POSEMB in flat:
    flat['pos_embedding'] = (np.asarray(flat['pos_embedding']) +
                             np.asarray(flat.pop(_TEXT_OLD_POSEMB)))
  return flat


def to_vit_jax(flat: Flat) -> Flat:
  """big_vision flat params (a ViT, or a two-tower model) -> the keys and
  values of this project's layout (see the module docstring); the
  computation is unchanged."""
  flat = _params_only(flat)
  if any(k.startswith(_TOWERS) for k in flat):
    out = {k: v for k, v in flat.items() if not k.startswith(_TOWERS)}
    for prefix, convert in (('img/', _vit_to_vit_jax),
                            ('txt/', _text_to_vit_jax)):
      out.update({prefix + k: v
                  for k, v in convert(_tower(flat, prefix)).items()})
    return out
  return _vit_to_vit_jax(flat)


def _vit_to_vit_jax(flat: Flat) -> Flat:
  """A big_vision ViT's flat params (no `params/` prefix) -> this layout."""
  if 'probe' in flat:
    for key in [k for k in flat if k.startswith(_INLINE_MAP)]:
      flat[f'MAPHead_0/{key}'] = flat.pop(key)

  _split_stacked(flat, _STACKED, 'Transformer/encoderblock_')

  for key in _OLD_POSEMBS:
    if key in flat:
      posemb = np.asarray(flat.pop(key))
      posemb = posemb.reshape((1,) * (3 - posemb.ndim) + posemb.shape)
      tokens = posemb.shape[1]
      # Pre-2022 files (under Transformer/) with h*w + 1 rows, h*w square:
      # the class token's row is already there, added after it.
      combined = (key.startswith('Transformer/') and
                  _is_square(tokens - 1) and not _is_square(tokens))
      if 'cls' in flat and not combined:
        posemb = np.concatenate([np.zeros_like(posemb[:, :1]), posemb], 1)
      flat[_POSEMB] = posemb
  return flat


def _count_blocks(names) -> int:
  return sum(1 for n in names if re.fullmatch(r'encoderblock_\d+', n))


def model_config(params: Mapping[str, Any],
                 model_name: str = 'big_vision ViT'
                 ) -> ml_collections.ConfigDict:
  """The `VisionTransformer` config of loaded params (`checkpoint.load_npz`
  of a big_vision or vit_jax file of a plain ViT), from their shapes: sizes,
  heads (query kernels are [D, heads, head_dim]), classifier, posemb,
  representation_size. Dropout and stochastic depth are 0.

  Raises:
    ValueError: the params are not those of a plain (per-block) ViT.
  """
  transformer = params.get('Transformer', {})
  depth = _count_blocks(transformer)
  if 'embedding' not in params or not depth or 'conv_root' in params:
    raise ValueError('These params are not those of a plain ViT (embedding, '
                     'Transformer/encoderblock_N); give the model config '
                     'explicitly.')
  block = transformer['encoderblock_0']
  kernel = np.shape(params['embedding']['kernel'])
  query = np.shape(block['MultiHeadDotProductAttention_0']['query']['kernel'])
  config = ml_collections.ConfigDict(dict(
      model_name=model_name,
      patches=dict(size=tuple(kernel[:2])),
      hidden_size=int(kernel[-1]),
      transformer=dict(
          mlp_dim=int(np.shape(block['MlpBlock_0']['Dense_0']['kernel'])[-1]),
          num_heads=int(query[1]), num_layers=depth,
          attention_dropout_rate=0.0, dropout_rate=0.0),
      classifier=('token' if 'cls' in params else
                  'map' if 'MAPHead_0' in params else 'gap'),
      posemb='learn' if 'posembed_input' in transformer else 'sincos2d',
      representation_size=(int(np.shape(params['pre_logits']['kernel'])[-1])
                           if 'pre_logits' in params else None)))
  return config


def config_from_kwargs(kwargs: Mapping[str, Any],
                       model_name: str = 'big_vision ViT'
                       ) -> ml_collections.ConfigDict:
  """The `VisionTransformer` config equivalent to big_vision's
  `vit.Model(**kwargs)` (`num_classes` is the model's argument, not config)
  (`patch_size`, `width`, `depth`, `mlp_dim`, `num_heads`, `posemb`,
  `rep_size`, `pool_type`, `head_zeroinit`, `dropout`; `variant` such as
  'S/16' sets sizes as big_vision's `decode_variant`)."""
  kw = _decode_variant(dict(kwargs))
  kw.pop('num_classes', None)
  width = kw.pop('width', 768)
  pool = kw.pop('pool_type', 'gap')
  if pool not in _POOLS:
    raise ValueError(f"big_vision pool_type={pool!r} has no counterpart "
                     f"here; use one of {', '.join(map(repr, _POOLS))}.")
  rep = kw.pop('rep_size', False)
  dropout = kw.pop('dropout', 0.0)
  config = ml_collections.ConfigDict(dict(
      model_name=model_name,
      patches=dict(size=tuple(kw.pop('patch_size', (16, 16)))),
      hidden_size=width,
      transformer=dict(mlp_dim=kw.pop('mlp_dim', None) or 4 * width,
                       num_heads=kw.pop('num_heads', 12),
                       num_layers=kw.pop('depth', 12),
                       attention_dropout_rate=0.0, dropout_rate=dropout),
      classifier=_POOLS[pool], posemb=kw.pop('posemb', 'learn'),
      head_zeroinit=kw.pop('head_zeroinit', True),
      representation_size=(width if rep is True else rep or None)))
  # FlexiViT (`models/proj/flexi/vit.py`): learned posemb stored at
  # `posemb_size`, resized bilinearly to every call's grid.
  posemb_size = kw.pop('posemb_size', None)
  kw.pop('seqhw', None)  # Its call-time patch size: here `patch_size=`.
  if posemb_size is not None:
    config.update(flexi_fields(posemb_size))
  _refuse_the_rest(kw, 'ViT', ('scan', 'remat_policy', 'dtype_mm'))
  return config


def flexi_fields(posemb_size) -> Dict[str, Any]:
  """The model fields that make a ViT compute big_vision's FlexiViT: its
  learned position embeddings (stored for `posemb_size`, rows x cols)
  resized to each input's grid with `jax.image.resize(..., 'linear')`
  (antialias on, jax's default), as its `_Model` does. Call the model with
  `patch_size=(h, w)` for FlexiViT's sequence length (big_vision's `seqhw`
  is image size // patch size); the kernel is then PI-resized with
  big_vision's `resample_patchemb` (`resample.resize_patch_embedding`)."""
  return dict(dynamic_img_size=True, posemb_resize='bilinear',
              posemb_grid=tuple(int(s) for s in posemb_size))


# big_vision's `decode_variant` sizes: (width, mlp_dim, heads, depth).
_VARIANTS = {
    'mu': (32, 128, 2, 1), 'Ti': (192, 768, 3, 12), 'S': (384, 1536, 6, 12),
    'M': (512, 2048, 8, 12), 'B': (768, 3072, 12, 12),
    'L': (1024, 4096, 16, 24), 'So400m': (1152, 4304, 16, 27),
    'H': (1280, 5120, 16, 32), 'g': (1408, 6144, 16, 40),
    'g-opt': (1536, 6144, 16, 40), 'G': (1664, 8192, 16, 48),
    'G-opt': (1536, 8192, 16, 48), 'e': (1792, 15360, 16, 56),
}


def _decode_variant(kw: Dict[str, Any]) -> Dict[str, Any]:
  """big_vision's `variant='B/16'` (or 'B' for a text tower) -> the sizes
  it stands for, under the explicit arguments in `kw`."""
  variant = kw.pop('variant', None)
  if not variant:
    return kw
  size, _, patch = variant.partition('/')
  if size not in _VARIANTS:
    raise ValueError(f'Unknown big_vision variant {variant!r}; known sizes: '
                     f'{", ".join(_VARIANTS)}.')
  hidden, mlp, heads, layers = _VARIANTS[size]
  return {'width': hidden, 'mlp_dim': mlp, 'num_heads': heads,
          'depth': layers, **({'patch_size': (int(patch),) * 2}
                              if patch else {}), **kw}


def text_config_from_kwargs(kwargs: Mapping[str, Any]) -> Dict[str, Any]:
  """The `TextTransformer` fields equivalent to big_vision's
  `text_transformer.Model(**kwargs)` (`width`, `depth`, `mlp_dim`,
  `num_heads`, `vocab_size`, `pool_type`, `dropout`, `variant`; `scan` and
  `remat_policy` change how, not what, it computes)."""
  kw = _decode_variant(dict(kwargs))
  kw.pop('num_classes', None)
  width = kw.pop('width', 512)
  # Unlike the ViT's, its mlp_dim defaults to 2048; None means 4 * width.
  config = dict(width=width, num_layers=kw.pop('depth', 12),
                mlp_dim=kw.pop('mlp_dim', 2048) or 4 * width,
                num_heads=kw.pop('num_heads', 8),
                dropout_rate=kw.pop('dropout', 0.0),
                vocab_size=kw.pop('vocab_size', 32_000),
                pool_type=kw.pop('pool_type', 'last'))
  _refuse_the_rest(kw, 'text_transformer', ('scan', 'remat_policy'))
  return config


def _refuse_the_rest(kw, model, compute_only):
  """Drops the `model`'s arguments that change only how big_vision computes
  (not the params or the function); any argument left is an error."""
  for name in compute_only:
    kw.pop(name, None)
  if kw:
    raise ValueError(f'big_vision {model} arguments {sorted(kw)} have no '
                     'counterpart here.')
