"""transformers' `SiglipModel` (.safetensors + config.json) <-> two-tower params.

The SigLIP and fixed-resolution SigLIP 2 repositories on the Hugging Face
hub (`google/siglip-base-patch16-224`, `google/siglip2-base-patch16-224`,
...) hold a `SiglipModel` state dict. It computes what big_vision's
two-tower model computes (the same function to ~2e-7, measured on both
libraries): a ViT image tower without class token whose MAP head's output is
the image embedding, a text transformer read at its last position with a
linear head, GELU in its tanh form, LayerNorm epsilon 1e-6. What differs is
layout, converted here as `torch_layouts` converts a ViT (Linear weights
transposed, the patch Conv2d OIHW -> HWIO, attention split per head), plus:

1. The MAP head is a `torch.nn.MultiheadAttention`: query, key and value
   stacked in one `in_proj_weight` [3 * width, width] (and `in_proj_bias`),
   split into the three per-head kernels of `MAPHead_0`.
2. Position embeddings are `nn.Embedding` tables [tokens, width]; here they
   are [1, tokens, width].
3. `logit_scale` is big_vision's `t` (the log-temperature), `logit_bias` its
   `b`.

The architecture comes from the tensors' shapes and the repository's
`config.json` (head counts, activation, epsilon, the text padding id), never
from a repository's name; `save` writes the config.json that
`SiglipModel.from_pretrained` reads. Keys this model cannot express are an
error naming them.
"""
import json
import re
from typing import Any, Dict, Tuple

import flax.traverse_util
import ml_collections
import numpy as np
import safetensors.numpy

from vit_jax import atomic_file
from vit_jax.checkpoint import common
from vit_jax.checkpoint import torch_config as hub_config
from vit_jax.checkpoint import torch_layouts

Mismatch = common.CheckpointMismatchError
# pylint: disable=protected-access
_LINEAR, _SAME, _CONV = (torch_layouts._LINEAR, torch_layouts._SAME,
                         torch_layouts._CONV)
_HEADS_KERNEL, _HEADS_BIAS = (torch_layouts._HEADS_KERNEL,
                              torch_layouts._HEADS_BIAS)
_OUT_KERNEL, _fused = torch_layouts._OUT_KERNEL, torch_layouts._fused
# pylint: enable=protected-access
# nn.Embedding [tokens, width] <-> position embeddings [1, tokens, width].
_POSEMB = torch_layouts._Conversion(lambda t, h: (t[None],),  # pylint: disable=protected-access
                                    lambda a, h: a[0][0])

_VISION, _TEXT = 'vision_model.', 'text_model.'
_PATCH = _VISION + 'embeddings.patch_embedding.weight'
_TOKENS = _TEXT + 'embeddings.token_embedding.weight'
_LAYER = re.compile(r'^(vision|text)_model\.encoder\.layers\.(\d+)\.')
# Buffers older transformers versions saved; not parameters.
_BUFFERS = re.compile(r'\.position_ids$')
_ACTS = {'gelu_pytorch_tanh': 'tanh', 'gelu_new': 'tanh'}
_LAYER_NORM_EPS = 1e-6


def _entries(torch_name, path, heads_axis=False, kernel=_LINEAR):
  """weight/bias of a Linear (per head for attention projections)."""
  if heads_axis:
    return {f'{torch_name}.weight': ((f'{path}/kernel',), _HEADS_KERNEL),
            f'{torch_name}.bias': ((f'{path}/bias',), _HEADS_BIAS)}
  return {f'{torch_name}.weight': ((f'{path}/kernel',), kernel),
          f'{torch_name}.bias': ((f'{path}/bias',), _SAME)}


def _norm(torch_name, path):
  return {f'{torch_name}.weight': ((f'{path}/scale',), _SAME),
          f'{torch_name}.bias': ((f'{path}/bias',), _SAME)}


def _mlp(torch_name, path):
  return {**_entries(f'{torch_name}.fc1', f'{path}/Dense_0'),
          **_entries(f'{torch_name}.fc2', f'{path}/Dense_1')}


def _layer(torch_prefix, path):
  attn = f'{path}/MultiHeadDotProductAttention_0'
  return {
      **_norm(torch_prefix + 'layer_norm1', f'{path}/LayerNorm_0'),
      **{k: v for n, q in (('q', 'query'), ('k', 'key'), ('v', 'value'))
         for k, v in _entries(f'{torch_prefix}self_attn.{n}_proj',
                              f'{attn}/{q}', heads_axis=True).items()},
      **_entries(torch_prefix + 'self_attn.out_proj', f'{attn}/out',
                 kernel=_OUT_KERNEL),
      **_norm(torch_prefix + 'layer_norm2', f'{path}/LayerNorm_1'),
      **_mlp(torch_prefix + 'mlp', f'{path}/MlpBlock_0'),
  }


# torch key -> (params paths, conversion, tower): one table, both ways.
def _table(image_layers: int, text_layers: int):
  img, txt = 'img/', 'txt/'
  head = f'{img}MAPHead_0'
  map_attn = f'{head}/MultiHeadDotProductAttention_0'
  table = {
      _PATCH: ((f'{img}embedding/kernel',), _CONV),
      _VISION + 'embeddings.patch_embedding.bias': (
          (f'{img}embedding/bias',), _SAME),
      _VISION + 'embeddings.position_embedding.weight': (
          (f'{img}Transformer/posembed_input/pos_embedding',), _POSEMB),
      **_norm(_VISION + 'post_layernorm', f'{img}Transformer/encoder_norm'),
      _VISION + 'head.probe': ((f'{head}/probe',), _SAME),
      _VISION + 'head.attention.in_proj_weight': (
          tuple(f'{map_attn}/{n}/kernel' for n in ('query', 'key', 'value')),
          _fused(_HEADS_KERNEL)),
      _VISION + 'head.attention.in_proj_bias': (
          tuple(f'{map_attn}/{n}/bias' for n in ('query', 'key', 'value')),
          _fused(_HEADS_BIAS)),
      **_entries(_VISION + 'head.attention.out_proj', f'{map_attn}/out',
                 kernel=_OUT_KERNEL),
      **_norm(_VISION + 'head.layernorm', f'{head}/LayerNorm_0'),
      **_mlp(_VISION + 'head.mlp', f'{head}/MlpBlock_0'),
      _TOKENS: ((f'{txt}Embed_0/embedding',), _SAME),
      _TEXT + 'embeddings.position_embedding.weight': (
          (f'{txt}pos_embedding',), _POSEMB),
      **_norm(_TEXT + 'final_layer_norm', f'{txt}Encoder_0/encoder_norm'),
      **_entries(_TEXT + 'head', f'{txt}head'),
      'logit_scale': (('t',), _SAME),
      'logit_bias': (('b',), _SAME),
  }
  for i in range(image_layers):
    table.update(_layer(f'{_VISION}encoder.layers.{i}.',
                        f'{img}Transformer/encoderblock_{i}'))
  for i in range(text_layers):
    table.update(_layer(f'{_TEXT}encoder.layers.{i}.',
                        f'{txt}Encoder_0/encoderblock_{i}'))
  return table


def is_siglip(shapes) -> bool:
  """Whether a state dict's keys are those of transformers' SiglipModel."""
  return _PATCH in shapes and _TOKENS in shapes


def _layers(shapes) -> Tuple[int, int]:
  counts = {'vision': 0, 'text': 0}
  for key in shapes:
    match = _LAYER.match(key)
    if match:
      tower, i = match.group(1), int(match.group(2))
      counts[tower] = max(counts[tower], i + 1)
  return counts['vision'], counts['text']


def _check_keys(path: str, shapes):
  """The table of the file's keys; errors name unknown and missing keys."""
  table = _table(*_layers(shapes))
  present = {k for k in shapes if not _BUFFERS.search(k)}
  unknown, missing = sorted(present - set(table)), sorted(set(table) - present)
  if unknown or missing:
    lines = []
    if unknown:
      lines.append(f'  keys SiglipModel-as-vit_jax has no place for: '
                   f'{", ".join(unknown[:5])}' + (' ...' if len(unknown) > 5
                                                  else ''))
    if missing:
      lines.append(f'  missing keys: {", ".join(missing[:5])}' +
                   (' ...' if len(missing) > 5 else ''))
    raise Mismatch(f'Checkpoint {path!r} (transformers SiglipModel) does not '
                   'fit the two-tower model:\n' + '\n'.join(lines) +
                   '\n(A vision tower without its MAP head, vision_use_head='
                   'False, has no image embedding; NaFlex SigLIP 2 models '
                   '(Siglip2Model) are not supported.)')
  return table


def _tower_fields(sub: Dict[str, Any], which: str) -> Dict[str, Any]:
  """Head count and checked activation/epsilon of one tower's config."""
  act = sub.get('hidden_act', 'gelu_pytorch_tanh')
  if act not in _ACTS:
    raise ValueError(f'{which}_config.hidden_act={act!r}: the two-tower '
                     f'model computes {", ".join(_ACTS)} (GELU, tanh form).')
  eps = sub.get('layer_norm_eps', _LAYER_NORM_EPS)
  if eps != _LAYER_NORM_EPS:
    raise ValueError(f'{which}_config.layer_norm_eps={eps}: the two-tower '
                     f'model uses {_LAYER_NORM_EPS}.')
  return dict(num_heads=sub.get('num_attention_heads', 12))


def _file_config(path: str, shapes, hub) -> ml_collections.ConfigDict:
  """The two-tower config of a checked SiglipModel state dict."""
  if hub.get('model_type', 'siglip') != 'siglip':
    raise Mismatch(f'Checkpoint {path!r}: config.json model_type='
                   f"{hub['model_type']!r}; only 'siglip' (SiglipModel) "
                   'repositories are two-tower models here.')
  try:
    vision = _tower_fields(hub.get('vision_config') or {}, 'vision')
    text = _tower_fields(hub.get('text_config') or {}, 'text')
  except ValueError as e:
    raise Mismatch(f'Checkpoint {path!r}: config.json: {e}') from None
  image_layers, text_layers = _layers(shapes)
  width, _, ph, pw = shapes[_PATCH]
  grid = shapes[_VISION + 'embeddings.position_embedding.weight'][0]
  side = int(round(grid ** 0.5))
  vocab, text_width = shapes[_TOKENS]
  max_len = shapes[_TEXT + 'embeddings.position_embedding.weight'][0]
  layer0 = f'{_VISION}encoder.layers.0.'
  text0 = f'{_TEXT}encoder.layers.0.'
  pad = (hub.get('text_config') or {}).get('pad_token_id', 1)
  # The image size config.json names, where it gives this grid (384 px with
  # 14 px patches is a 27 x 27 grid, as 378 px is).
  size = (hub.get('vision_config') or {}).get('image_size')
  if not size or size // ph != side:
    size = side * ph
  return ml_collections.ConfigDict(dict(
      model_name=hub.get('_name_or_path') or '/'.join(
          path.split('/')[-2:]),
      image=dict(
          model_name='SiglipVisionModel',
          patches=dict(size=(ph, pw)), hidden_size=width,
          transformer=dict(mlp_dim=shapes[layer0 + 'mlp.fc1.weight'][0],
                           num_heads=vision['num_heads'],
                           num_layers=image_layers,
                           attention_dropout_rate=0.0, dropout_rate=0.0),
          classifier='map', posemb='learn', representation_size=None),
      text_model='text_transformer',
      text=dict(width=text_width, num_layers=text_layers,
                mlp_dim=shapes[text0 + 'mlp.fc1.weight'][0],
                num_heads=text['num_heads'], vocab_size=vocab,
                pool_type='last'),
      out_dim=(None, shapes[_TEXT + 'head.weight'][0]),
      temperature_init=10.0, bias_init=-10.0,
      pp=dict(tokenizer_name='sentencepiece', size=size,
              max_len=max_len, lower=True, pad_value=pad)))


def _describe(path: str, shapes):
  table = _check_keys(path, shapes)
  return _file_config(path, shapes, hub_config.read_beside(path)), table


_COMPARED = ('image.hidden_size', 'image.transformer.num_layers',
             'image.transformer.mlp_dim', 'image.transformer.num_heads',
             'image.classifier', 'text.width', 'text.num_layers',
             'text.mlp_dim', 'text.num_heads', 'text.vocab_size')


def _field(config, name):
  for part in name.split('.'):
    config = config[part]
  return config


def check(path: str, config) -> None:
  """Raises unless the file's model is `config`'s (from the header); for an
  image model's config (fine-tuning the image tower), the image tower's."""
  file_config, _ = _describe(path, torch_layouts.read_shapes(path))
  names = _COMPARED
  if 'text_model' not in config:
    config = {'image': config}
    names = [n for n in names if n.startswith('image.')]
  problems = [f'  model.{n}={_field(config, n)!r}, the checkpoint: '
              f'{_field(file_config, n)!r}' for n in names
              if _field(config, n) != _field(file_config, n)]
  if problems:
    raise Mismatch(f'Checkpoint {path!r} does not fit the model config:\n' +
                   '\n'.join(problems))


def model_config(path: str) -> ml_collections.ConfigDict:
  """The two-tower config a SiglipModel file and its config.json describe."""
  return _describe(path, torch_layouts.read_shapes(path))[0]


def load(path: str, config=None) -> Dict[str, Any]:
  """Two-tower params (`img/...`, `txt/...`, `t`, `b`) of a SiglipModel
  .safetensors; `config` (default: the file's) gives the head counts."""
  tensors = torch_layouts.read_tensors(path, skip=_BUFFERS)
  file_config, table = _describe(path, {k: v.shape for k, v in
                                        tensors.items()})
  if config is not None:
    check(path, config)
  config = config or file_config
  heads = {'img': config['image']['transformer']['num_heads'],
           'txt': config['text']['num_heads']}
  flat = {}
  for key, (paths, conversion) in table.items():
    tensor = tensors[key]
    if key in ('logit_scale', 'logit_bias'):
      tensor = tensor.reshape(1)
    flat.update(zip(paths, conversion.to_jax(tensor,
                                             heads.get(paths[0][:3]))))
  return flax.traverse_util.unflatten_dict(
      {tuple(p.split('/')): v for p, v in flat.items()})


def _check_savable(config) -> None:
  image, text = config['image'], config['text']
  out_dim = config['out_dim']
  out_dim = (out_dim, out_dim) if isinstance(out_dim, int) else out_dim
  problems = []
  if image.get('classifier') != 'map' or image.get('posemb', 'learn') != 'learn':
    problems.append("an image tower with classifier='map' and learned "
                    'position embeddings')
  if image.get('representation_size') or image.get('resnet') is not None:
    problems.append('no pre-logits layer and no ResNet root')
  if out_dim[0] is not None or not out_dim[1]:
    problems.append('out_dim=(None, N): no image projection, a text head')
  if config['text_model'] != 'text_transformer' or text.get(
      'pool_type', 'last') != 'last':
    problems.append("the text transformer read at its last token "
                    "(pool_type='last')")
  for tower, sub in (('image', image.get('transformer', {})), ('text', text)):
    if sub.get('gelu', 'tanh') != 'tanh' or sub.get(
        'layer_norm_eps', _LAYER_NORM_EPS) != _LAYER_NORM_EPS:
      problems.append(f'the {tower} tower with tanh GELU and eps 1e-6')
  if config.get('bias_init') is None:
    problems.append('a bias b (bias_init set: a SigLIP model)')
  if problems:
    raise ValueError("transformers' SiglipModel needs " +
                     '; '.join(problems) + '.')


def _hub_config(config) -> Dict[str, Any]:
  """config.json as `SiglipModel.save_pretrained` writes it."""
  image, text = config['image'], config['text']
  ph, pw = hub_config.patch_size(image)
  size = config['pp']['size'] if config.get('pp') else None
  if ph != pw:
    raise ValueError(f'SiglipVisionConfig takes square patches; got {ph}x{pw}.')
  tower = dict(attention_dropout=0.0, hidden_act='gelu_pytorch_tanh',
               layer_norm_eps=_LAYER_NORM_EPS)
  return dict(
      architectures=['SiglipModel'], model_type='siglip', dtype='float32',
      initializer_factor=1.0,
      text_config=dict(
          tower, model_type='siglip_text_model',
          hidden_size=text['width'], intermediate_size=text['mlp_dim'],
          num_attention_heads=text['num_heads'],
          num_hidden_layers=text['num_layers'],
          vocab_size=text['vocab_size'],
          max_position_embeddings=config['pp']['max_len'],
          projection_size=config['out_dim'][1],
          pad_token_id=config['pp'].get('pad_value', 1),
          # SigLIP's tokenizers: EOS 1 (T5 and Gemma SentencePiece models).
          eos_token_id=1, bos_token_id=None),
      vision_config=dict(
          tower, model_type='siglip_vision_model',
          hidden_size=image['hidden_size'],
          intermediate_size=image['transformer']['mlp_dim'],
          num_attention_heads=image['transformer']['num_heads'],
          num_hidden_layers=image['transformer']['num_layers'],
          image_size=size, patch_size=ph, num_channels=3,
          vision_use_head=True))


def save(path: str, params, config) -> None:
  """Writes two-tower `params` as a SiglipModel state dict, and its
  config.json beside it (together a repository `from_pretrained` loads)."""
  _check_savable(config)
  flat = {'/'.join(k): np.asarray(v, np.float32) for k, v in
          flax.traverse_util.flatten_dict(dict(params)).items()}
  table = _table(config['image']['transformer']['num_layers'],
                 config['text']['num_layers'])
  heads = {'img': config['image']['transformer']['num_heads'],
           'txt': config['text']['num_heads']}
  needed = {p for paths, _ in table.values() for p in paths}
  missing, extra = sorted(needed - set(flat)), sorted(set(flat) - needed)
  if missing or extra:
    raise ValueError('params do not fit the SiglipModel layout of this '
                     f'config: missing {missing[:5]}, extra {extra[:5]}.')
  tensors = {}
  for key, (paths, conversion) in table.items():
    tensor = conversion.to_torch(tuple(flat[p] for p in paths),
                                 heads.get(paths[0][:3]))
    if key in ('logit_scale', 'logit_bias'):
      tensor = tensor.reshape(1)
    tensors[key] = np.ascontiguousarray(tensor)
  # The image size: from the position embeddings (a square grid).
  grid = flat['img/Transformer/posembed_input/pos_embedding'].shape[1]
  side = int(round(grid ** 0.5))
  if side * side != grid:
    raise ValueError(f'{grid} image position embeddings are not a square '
                     'grid; SiglipVisionConfig needs a square image.')
  pp = dict(config.get('pp') or {})
  pp.setdefault('max_len', flat['txt/pos_embedding'].shape[1])
  patch = hub_config.patch_size(config['image'])[0]
  if not pp.get('size') or pp['size'] // patch != side:
    pp['size'] = side * patch
  hub = _hub_config({**dict(config), 'pp': pp})
  atomic_file.write(
      path, safetensors.numpy.save(tensors, metadata={'format': 'pt'}))
  atomic_file.write(hub_config.path_beside(path), json.dumps(hub, indent=2))
