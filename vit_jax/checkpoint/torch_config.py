"""config.json of timm and transformers ViTs <-> vit_jax model config fields.

A state dict's shapes give a ViT's sizes (`torch_layouts`). What they
cannot tell, the head count, the activation, the LayerNorm epsilon, the
pooling and the dropout rates, the hub repository's `config.json` beside the
file does, in each library's own format:
`READERS[layout](config_json)` returns those fields (the library's defaults
for what it lacks), `WRITERS[layout](model_config, num_classes, image_size)`
the config.json the library itself writes for such a model.
"""
import json
import os
import re
from typing import Any, Dict, Tuple

from vit_jax.checkpoint import common
from vit_jax.checkpoint import hub
from vit_jax.models import vit

# The activations each library can name, as `transformer.gelu` values.
_TIMM_ACTS = {'gelu': 'exact', 'gelu_tanh': 'tanh'}
_HF_ACTS = {'gelu': 'exact', 'gelu_pytorch_tanh': 'tanh', 'gelu_new': 'tanh'}
# timm's size names -> (hidden, heads).
_TIMM_SIZES = {'tiny': (192, 3), 'small': (384, 6), 'base': (768, 12),
               'large': (1024, 16), 'huge': (1280, 16), 'giant': (1408, 16),
               'gigantic': (1664, 16)}
TIMM_LAYER_NORM_EPS = 1e-6  # timm's ViT: partial(nn.LayerNorm, eps=1e-6).


def patch_size(config) -> Tuple[int, int]:
  return tuple(vit._size(config['patches']))  # pylint: disable=protected-access


def gelu(config) -> str:
  return config['transformer'].get('gelu', vit.Encoder.gelu)


def layer_norm_eps(config) -> float:
  return config['transformer'].get('layer_norm_eps',
                                   vit.Encoder.layer_norm_eps)


def _read_timm(hub) -> Dict[str, Any]:
  """timm's config.json: `architecture` (e.g. vit_base_patch16_224, which
  names the head count), `model_args` (constructor arguments), ..."""
  args = hub.get('model_args') or {}
  arch = hub.get('architecture', '')
  size = re.search(r'(' + '|'.join(_TIMM_SIZES) + r')_(patch|r)', arch)
  act = args.get('act_layer', 'gelu')
  if act not in _TIMM_ACTS:
    raise ValueError(f'act_layer={act!r}: only {", ".join(_TIMM_ACTS)} '
                     'have a vit_jax equivalent (transformer.gelu).')
  return dict(
      model_name=arch or None,
      num_heads=args.get('num_heads', _TIMM_SIZES[size.group(1)][1]
                         if size else None),
      gelu=_TIMM_ACTS[act], layer_norm_eps=TIMM_LAYER_NORM_EPS,
      # Without a config.json the shapes (a class token or not) and the
      # caller's model config decide; with one, timm's default is 'token'.
      pool=args.get('global_pool',
                    hub.get('global_pool', 'token' if hub else None)),
      dropout_rate=args.get('proj_drop_rate', 0.0),
      attention_dropout_rate=args.get('attn_drop_rate', 0.0),
      dynamic_img_size=bool(args.get('dynamic_img_size', False)),
      dynamic_img_pad=bool(args.get('dynamic_img_pad', False)),
      img_size=_pair(args.get('img_size')))


def _pair(size):
  """timm's int-or-pair size argument as (h, w); None stays None."""
  if size is None:
    return None
  return (size, size) if isinstance(size, int) else tuple(size)


def _read_transformers(hub) -> Dict[str, Any]:
  """transformers' ViTConfig, as `save_pretrained` writes it."""
  if hub.get('model_type', 'vit') != 'vit':
    raise ValueError(f"model_type={hub['model_type']!r}: only 'vit' "
                     '(ViTModel, ViTForImageClassification) is supported.')
  act = hub.get('hidden_act', 'gelu')
  if act not in _HF_ACTS:
    raise ValueError(f'hidden_act={act!r}: only {", ".join(_HF_ACTS)} have '
                     'a vit_jax equivalent (transformer.gelu).')
  return dict(
      model_name=hub.get('_name_or_path') or None,
      num_heads=hub.get('num_attention_heads'), gelu=_HF_ACTS[act],
      layer_norm_eps=hub.get('layer_norm_eps', 1e-12), pool='token',
      dropout_rate=hub.get('hidden_dropout_prob', 0.0),
      attention_dropout_rate=hub.get('attention_probs_dropout_prob', 0.0),
      dynamic_img_size=False, dynamic_img_pad=False, img_size=None)


def _write_timm(config, num_classes, image_size) -> Dict[str, Any]:
  """config.json as timm's `push_to_hf_hub` writes it.

  `model_args` holds every constructor argument, so
  `VisionTransformer(**model_args)` builds the model, and so does
  `timm.create_model(architecture, **model_args)` where timm registers the
  architecture: that of the width and patch size at 224 px (model_args set
  the image size), or vit_base_patch16_224 for other widths (model_args
  override all its fields).
  """
  t = config['transformer']
  hidden, heads, mlp_dim = config['hidden_size'], t['num_heads'], t['mlp_dim']
  (ph, pw), pool = patch_size(config), (
      'token' if config.get('classifier', 'token') == 'token' else 'avg')
  class_token = config.get('class_token')
  class_token = pool == 'token' if class_token is None else bool(class_token)
  if int(hidden * (mlp_dim / hidden)) != mlp_dim:  # As timm computes it.
    raise ValueError(f'timm cannot express mlp_dim={mlp_dim} as a ratio '
                     f'of hidden_size={hidden}.')
  size = next((n for n, hh in _TIMM_SIZES.items() if hh == (hidden, heads)),
              None)
  args = dict(img_size=image_size, patch_size=ph if ph == pw else [ph, pw],
              embed_dim=hidden, depth=t['num_layers'], num_heads=heads,
              mlp_ratio=mlp_dim / hidden, class_token=class_token,
              global_pool=pool, fc_norm=bool(config.get('fc_norm', False)),
              num_classes=num_classes,
              act_layer={v: k for k, v in _TIMM_ACTS.items()}[gelu(config)],
              proj_drop_rate=t.get('dropout_rate', 0.0),
              attn_drop_rate=t.get('attention_dropout_rate', 0.0),
              **{k: True for k in ('dynamic_img_size', 'dynamic_img_pad')
                 if config.get(k)})
  architecture = (f'vit_{size}_patch{ph}_224' if size
                  else 'vit_base_patch16_224')
  first_conv = 'patch_embed.proj'
  if config.get('resnet') is not None:
    architecture = _timm_hybrid(config['resnet'])
    first_conv = 'patch_embed.backbone.' + (
        'stem.conv' if config['resnet']['num_layers'] else 'conv')
  return dict(
      architecture=architecture,
      num_classes=num_classes, num_features=hidden, global_pool=pool,
      model_args=args,
      pretrained_cfg=dict(
          input_size=[3, *image_size], fixed_input_size=True,
          interpolation='bilinear', crop_pct=1.0, crop_mode='center',
          mean=[0.5] * 3, std=[0.5] * 3, num_classes=num_classes,
          first_conv=first_conv, classifier='head'))


# timm's hybrid architectures by ResNet units per stage: the name fixes the
# backbone (model_args cannot), model_args the ViT above it.
_TIMM_HYBRIDS = {(): 'vit_tiny_r_s16_p8_224',
                 (2, 2, 2, 2): 'vit_small_r26_s32_224',
                 (3, 4, 9): 'vit_base_r50_s16_224',
                 (3, 4, 6, 3): 'vit_large_r50_s32_224'}


def _timm_hybrid(resnet) -> str:
  layers = tuple(resnet['num_layers'])
  if layers not in _TIMM_HYBRIDS or resnet.get('width_factor', 1) != 1:
    raise ValueError(
        f'timm has no hybrid with ResNet units {layers} and width_factor '
        f"{resnet.get('width_factor')}; its hybrids have width 1 and units "
        f'{", ".join(str(k) for k in _TIMM_HYBRIDS)}.')
  return _TIMM_HYBRIDS[layers]


def _write_transformers(config, num_classes, image_size) -> Dict[str, Any]:
  """config.json as `ViTForImageClassification.save_pretrained` writes it."""
  t = config['transformer']
  ph, pw = patch_size(config)
  if image_size[0] != image_size[1] or ph != pw:
    raise ValueError("transformers' ViTConfig takes square images and "
                     f'patches; got {image_size} px, {ph}x{pw} patches.')
  return dict(
      architectures=['ViTForImageClassification'], model_type='vit',
      hidden_size=config['hidden_size'], num_hidden_layers=t['num_layers'],
      num_attention_heads=t['num_heads'], intermediate_size=t['mlp_dim'],
      hidden_act={'exact': 'gelu', 'tanh': 'gelu_pytorch_tanh'}[gelu(config)],
      hidden_dropout_prob=t.get('dropout_rate', 0.0),
      attention_probs_dropout_prob=t.get('attention_dropout_rate', 0.0),
      layer_norm_eps=layer_norm_eps(config), image_size=image_size[0],
      patch_size=ph, num_channels=3, qkv_bias=True, encoder_stride=ph,
      initializer_range=0.02, torch_dtype='float32',
      id2label={str(i): f'LABEL_{i}' for i in range(num_classes)},
      label2id={f'LABEL_{i}': i for i in range(num_classes)})


READERS = {'timm': _read_timm, 'transformers': _read_transformers}
WRITERS = {'timm': _write_timm, 'transformers': _write_transformers}


def path_beside(path: str) -> str:
  return os.path.join(os.path.dirname(path), 'config.json')


def read_beside(path: str) -> Dict[str, Any]:
  """The config.json beside `path` (of a hub name's repo), or {} when there
  is none."""
  if hub.is_hub_name(path):
    config_path = hub.resolve_config(path)
    exists = config_path is not None
  elif '://' in path:
    config_path = path_beside(path)
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    exists = tf.io.gfile.exists(config_path)
  else:
    config_path = path_beside(path)
    exists = os.path.isfile(config_path)
  if not exists:
    return {}
  try:
    with common.open_file(config_path, 'r') as f:
      return json.load(f)
  except ValueError as e:
    raise ValueError(f'{config_path!r} is not valid JSON: {e}') from e
