"""timm and Hugging Face transformers ViTs (.safetensors) <-> params.

Most ViT weights today are PyTorch state dicts in `.safetensors` files, in
timm's layout (`blocks.{i}.attn.qkv`, ...) or in transformers' layout
(`vit.encoder.layer.{i}.attention.attention.query`, ...). Both hold the same
model as `models_vit.VisionTransformer` (pre-LayerNorm blocks, class token,
learned position embeddings) with these differences, each converted here:

1. Linear weights are `[out, in]` (PyTorch computes x @ W.T); flax kernels
   are `[in, out]`: transposed.
2. The patch embedding is a Conv2d weight `[out, in, kh, kw]` (OIHW); the
   flax kernel is `[kh, kw, in, out]` (HWIO).
3. Attention projections are per head here: query/key/value kernels
   `[hidden, heads, head_dim]`, biases `[heads, head_dim]`, the output kernel
   `[heads, head_dim, hidden]`. PyTorch lays the heads out head-major along
   the Linear's feature axis (feature h * head_dim + d), so it is a reshape
   after the transpose. timm fuses query, key and value into one `qkv`
   Linear whose outputs are stacked in that order.
4. Activations: both libraries use the exact (erf) GELU, and transformers a
   LayerNorm epsilon of 1e-12: the model options `transformer.gelu` and
   `transformer.layer_norm_eps` say so (read from config.json).

`cls`, `pos_embedding` ([1, tokens, hidden]), LayerNorm scales and biases
keep their shapes. One key table per layout (`_TIMM`, `_TRANSFORMERS`)
serves both directions. Anything else in a file (timm's fc_norm, register
tokens, layer scale, ...) is a model this ViT cannot express: an error names
the keys, never a silently different model.

The architecture comes from the shapes, plus a `config.json` beside the file
in the library's hub format for what shapes cannot tell (the head count, the
activation, the epsilon; `torch_config.py`); `save` writes one
there.
"""
import collections
import json
import math
import os
import re
from typing import Any, Callable, Dict, NamedTuple, Tuple

import flax.traverse_util
import ml_collections
import ml_dtypes
import numpy as np
import safetensors
import safetensors.numpy

from vit_jax import atomic_file
from vit_jax.checkpoint import common
from vit_jax.checkpoint import hub
from vit_jax.checkpoint import torch_config as hub_config
from vit_jax.models import vit

Mismatch = common.CheckpointMismatchError


class _Conversion(NamedTuple):
  """One PyTorch tensor <-> the params leaves it holds.

  `to_jax(tensor, heads)` returns one array per params path of the table
  entry; `to_torch(arrays, heads)` is its inverse.
  """
  to_jax: Callable[[np.ndarray, int], Tuple[np.ndarray, ...]]
  to_torch: Callable[[Tuple[np.ndarray, ...], int], np.ndarray]


_SAME = _Conversion(lambda t, h: (t,), lambda a, h: a[0])
# nn.Linear weight [out, in] -> kernel [in, out].
_LINEAR = _Conversion(lambda t, h: (t.T,), lambda a, h: a[0].T)
# nn.Conv2d weight [out, in, kh, kw] -> kernel [kh, kw, in, out].
_CONV = _Conversion(lambda t, h: (t.transpose(2, 3, 1, 0),),
                    lambda a, h: a[0].transpose(3, 2, 0, 1))


def _standardized(kernel: np.ndarray) -> np.ndarray:
  """timm's StdConv2d standardisation, (w - mean) / sqrt(var + 1e-8) per
  output channel, of an HWIO kernel (computed in float64)."""
  w = kernel.astype(np.float64)
  w = (w - w.mean(axis=(0, 1, 2))) / np.sqrt(w.var(axis=(0, 1, 2)) + 1e-8)
  return w.astype(kernel.dtype)


# A hybrid's ResNet kernels are stored standardised the way timm's StdConv2d
# standardises them at every call. Standardising a standardised kernel again
# changes it by ~eps/var only, so the model then computes timm's function
# (within ~4e-6 on the shared hub case) with either formula of
# `resnet.std_conv`: timm's, or the original's (std + 1e-5), which a model
# config without that field (or an AugReg preset) uses. Written back, the
# kernel is the standardised one: timm computes the same function from it.
_STD_CONV = _Conversion(lambda t, h: (_standardized(t.transpose(2, 3, 1, 0)),),
                        _CONV.to_torch)
# [heads * head_dim, hidden] -> [hidden, heads, head_dim], and the bias.
_HEADS_KERNEL = _Conversion(
    lambda t, h: (t.T.reshape(t.shape[1], h, -1),),
    lambda a, h: a[0].reshape(a[0].shape[0], -1).T)
_HEADS_BIAS = _Conversion(lambda t, h: (t.reshape(h, -1),),
                          lambda a, h: a[0].reshape(-1))
# The output projection reads the heads: [hidden, heads * head_dim] ->
# [heads, head_dim, hidden].
_OUT_KERNEL = _Conversion(lambda t, h: (t.T.reshape(h, -1, t.shape[0]),),
                          lambda a, h: a[0].reshape(-1, a[0].shape[-1]).T)


def _fused(part: _Conversion) -> _Conversion:
  """timm's `qkv` Linear: query, key and value outputs stacked on axis 0."""
  return _Conversion(
      lambda t, h: tuple(part.to_jax(x, h)[0] for x in np.split(t, 3)),
      lambda a, h: np.concatenate([part.to_torch((x,), h) for x in a]))


# Params paths ('/'-joined; {i}: the block).
_BLOCK = 'Transformer/encoderblock_{i}/'
_ATTN = _BLOCK + 'MultiHeadDotProductAttention_0/'
_QKV = ('query', 'key', 'value')
_POSEMB = 'Transformer/posembed_input/pos_embedding'
# Params roots a file may lack as a whole: no head (num_classes=0), no class
# token (timm's global average pooling), no pre-logits layer.
_OPTIONAL = ('head', 'cls', 'pre_logits')


def _linear(torch_name, params_path, kernel=_LINEAR, bias=_SAME):
  """Table entries of a Linear/Conv: weight -> kernel, bias -> bias."""
  return {f'{torch_name}.weight': ((f'{params_path}/kernel',), kernel),
          f'{torch_name}.bias': ((f'{params_path}/bias',), bias)}


def _layer_norm(torch_name, params_path):
  return {f'{torch_name}.weight': ((f'{params_path}/scale',), _SAME),
          f'{torch_name}.bias': ((f'{params_path}/bias',), _SAME)}


# torch key -> (params paths, conversion).
_TIMM = {
    'cls_token': (('cls',), _SAME),
    'pos_embed': ((_POSEMB,), _SAME),
    **_linear('patch_embed.proj', 'embedding', kernel=_CONV),
    **_layer_norm('blocks.{i}.norm1', _BLOCK + 'LayerNorm_0'),
    'blocks.{i}.attn.qkv.weight': (
        tuple(f'{_ATTN}{n}/kernel' for n in _QKV), _fused(_HEADS_KERNEL)),
    'blocks.{i}.attn.qkv.bias': (
        tuple(f'{_ATTN}{n}/bias' for n in _QKV), _fused(_HEADS_BIAS)),
    **_linear('blocks.{i}.attn.proj', _ATTN + 'out', kernel=_OUT_KERNEL),
    **_layer_norm('blocks.{i}.norm2', _BLOCK + 'LayerNorm_1'),
    **_linear('blocks.{i}.mlp.fc1', _BLOCK + 'MlpBlock_0/Dense_0'),
    **_linear('blocks.{i}.mlp.fc2', _BLOCK + 'MlpBlock_0/Dense_1'),
    **_layer_norm('norm', 'Transformer/encoder_norm'),
    **_linear('head', 'head'),
}

# timm's hybrids (vision_transformer_hybrid): a ResNetV2 backbone (no
# pre-activation, StdConv2dSame, GroupNorm(32)) under patch_embed.backbone,
# then patch_embed.proj and the ViT above. Its stem alone (no stages, as in
# R+ViT-Ti) has the stem's keys without `stem.`.
_BACKBONE = 'patch_embed.backbone.'
_STAGE_BLOCK = re.compile(
    r'^patch_embed\.backbone\.stages\.(\d+)\.blocks\.(\d+)\.')
# timm's Bottleneck module -> the original's ResidualUnit (conv, norm).
_UNIT = (('conv1', 'norm1', 'conv1', 'gn1'), ('conv2', 'norm2', 'conv2', 'gn2'),
         ('conv3', 'norm3', 'conv3', 'gn3'),
         ('downsample.conv', 'downsample.norm', 'conv_proj', 'gn_proj'))


def _conv_norm(conv, norm, conv_path, norm_path):
  """A bias-free StdConv and its GroupNorm."""
  return {f'{conv}.weight': ((f'{conv_path}/kernel',), _STD_CONV),
          **_layer_norm(norm, norm_path)}


def _timm_backbone(num_layers) -> Dict[str, Tuple[Tuple[str, ...],
                                                   _Conversion]]:
  """The keys of a ResNetV2 backbone with `num_layers` units per stage; the
  first unit of every stage projects its input (downsample), as the
  original's does (its channels or stride change there)."""
  stem = _BACKBONE + ('stem.' if num_layers else '')
  table = _conv_norm(stem + 'conv', stem + 'norm', 'conv_root', 'gn_root')
  for s, units in enumerate(num_layers):
    for m in range(units):
      for conv, norm, conv_path, norm_path in _UNIT[:4 if m == 0 else 3]:
        key = f'{_BACKBONE}stages.{s}.blocks.{m}.'
        path = f'block{s + 1}/unit{m + 1}/'
        table.update(_conv_norm(key + conv, key + norm, path + conv_path,
                                path + norm_path))
  return table


def _timm_resnet_layers(shapes):
  """Units per stage of a timm hybrid's backbone; None for a plain ViT."""
  if _BACKBONE + 'conv.weight' in shapes:
    return ()
  if _BACKBONE + 'stem.conv.weight' not in shapes:
    return None
  units = {}
  for key in shapes:
    match = _STAGE_BLOCK.match(key)
    if match:
      stage, block = int(match.group(1)), int(match.group(2))
      units[stage] = max(units.get(stage, 0), block + 1)
  return tuple(units.get(s, 0) for s in range(max(units, default=-1) + 1))


# Keys as in ViTModel; ViTForImageClassification (the hub's classifiers)
# puts the backbone under `vit.` (_Layout.prefix), the head beside it.
_HF_LAYER = 'encoder.layer.{i}.'
_TRANSFORMERS = {
    'embeddings.cls_token': (('cls',), _SAME),
    'embeddings.position_embeddings': ((_POSEMB,), _SAME),
    **_linear('embeddings.patch_embeddings.projection', 'embedding',
              kernel=_CONV),
    **_layer_norm(_HF_LAYER + 'layernorm_before', _BLOCK + 'LayerNorm_0'),
    **{k: v for n in _QKV for k, v in _linear(
        f'{_HF_LAYER}attention.attention.{n}', _ATTN + n,
        kernel=_HEADS_KERNEL, bias=_HEADS_BIAS).items()},
    **_linear(_HF_LAYER + 'attention.output.dense', _ATTN + 'out',
              kernel=_OUT_KERNEL),
    **_layer_norm(_HF_LAYER + 'layernorm_after', _BLOCK + 'LayerNorm_1'),
    **_linear(_HF_LAYER + 'intermediate.dense', _BLOCK + 'MlpBlock_0/Dense_0'),
    **_linear(_HF_LAYER + 'output.dense', _BLOCK + 'MlpBlock_0/Dense_1'),
    **_layer_norm('layernorm', 'Transformer/encoder_norm'),
    # ViTModel's pooler (dense + tanh on the class token) is the pre-logits.
    **_linear('pooler.dense', 'pre_logits'),
    **_linear('classifier', 'head'),
}

# What the standard ViT cannot express: key pattern -> what it is.
_TIMM_UNSUPPORTED = {
    r'(^|\.)fc_norm\.': "fc_norm (a LayerNorm after pooling; timm's "
                        "global_pool='avg' default)",
    r'^reg_token': 'register tokens (reg_token)',
    r'\.ls[12]\.': 'layer scale (ls1/ls2, init_values)',
    r'\.[qk]_norm\.': 'qk-norm (q_norm/k_norm)',
    r'^norm_pre\.': "a LayerNorm before the blocks (norm_pre, as in CLIP)",
    r'^attn_pool\.': "attention pooling (attn_pool, global_pool='map')",
    r'^(dist_token|head_dist)': 'a distillation token (dist_token)',
    r'\.attn\.norm\.|\.mlp\.norm\.': 'extra norms inside the blocks',
    r'\.mlp\.fc1_[gx]\.': 'a gated (SwiGLU) MLP',
    r'^patch_embed\.norm\.': 'a LayerNorm in the patch embedding',
}
_TRANSFORMERS_UNSUPPORTED = {
    r'embeddings\.mask_token': 'a mask token (ViTForMaskedImageModeling)',
    r'^decoder\.': 'a masked-image-modeling decoder',
    r'\.lambda[12]$|layer_scale': 'layer scale',
}


class _Layout(NamedTuple):
  name: str
  table: Dict[str, Tuple[Tuple[str, ...], _Conversion]]
  unsupported: Dict[str, str]
  block: str  # The regex of a block key's index.
  prefix: str  # Of the backbone keys, as written (read: with or without).


_LAYOUTS = {
    'timm': _Layout('timm', _TIMM, _TIMM_UNSUPPORTED, r'blocks\.(\d+)\.', ''),
    'transformers': _Layout('transformers', _TRANSFORMERS,
                            _TRANSFORMERS_UNSUPPORTED,
                            r'encoder\.layer\.(\d+)\.', 'vit.'),
}


def _expanded(layout: _Layout, num_layers: int, prefix: str):
  """The table with `{i}` filled in for every block, and backbone keys
  (all but the head's) prefixed."""
  out = {}
  for key, (paths, conversion) in layout.table.items():
    if paths[0].split('/')[0] != 'head':
      key = prefix + key
    for i in range(num_layers) if '{i}' in key else [None]:
      out[key.format(i=i)] = (tuple(p.format(i=i) for p in paths), conversion)
  return out


# safetensors.numpy knows no bfloat16; ml_dtypes (a JAX dependency) does.
_FLOAT_DTYPES = {'F64': np.float64, 'F32': np.float32, 'F16': np.float16,
                 'BF16': ml_dtypes.bfloat16}


def _unreadable(path: str, error) -> ValueError:
  return ValueError(f'Checkpoint file {path!r} is not a readable '
                    f'.safetensors file ({error}); it may be truncated or in '
                    'another format (published .npz files: use a path '
                    'ending in .npz).')


def read_tensors(name: str, skip=None) -> Dict[str, np.ndarray]:
  """{key: float32 array} of a .safetensors file (or hub name), with clear
  errors; keys matching the regex `skip` (buffers, not weights) are left
  out."""
  path = hub.resolve(name)
  if '://' not in path and not os.path.isfile(path):
    raise FileNotFoundError(f'Checkpoint file {path!r} does not exist.')
  with common.open_file(path, 'rb') as f:
    data = f.read()
  try:
    entries = safetensors.deserialize(data)
  except Exception as e:  # pylint: disable=broad-except  (SafetensorError)
    raise _unreadable(name, e) from None
  tensors = {}
  for key, entry in entries:
    if skip is not None and re.search(skip, key):
      continue
    if entry['dtype'] not in _FLOAT_DTYPES:
      raise ValueError(f'Checkpoint {path!r}: {key} has dtype '
                       f'{entry["dtype"]}; a ViT checkpoint holds floats.')
    array = np.frombuffer(entry['data'], _FLOAT_DTYPES[entry['dtype']])
    tensors[key] = array.reshape(entry['shape']).astype(np.float32)
  if not tensors:
    raise ValueError(f'Checkpoint file {path!r} holds no tensors.')
  return tensors


def read_shapes(name: str) -> Dict[str, Tuple[int, ...]]:
  """{key: shape} from the file's header alone where the file is local (a
  model config without reading the weights)."""
  path = hub.resolve(name)
  if '://' in path:
    return {k: v.shape for k, v in read_tensors(path).items()}
  if not os.path.isfile(path):
    raise FileNotFoundError(f'Checkpoint file {path!r} does not exist.')
  try:
    with safetensors.safe_open(path, 'numpy') as f:
      return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
  except Exception as e:  # pylint: disable=broad-except  (SafetensorError)
    raise _unreadable(name, e) from None


def _detect(shapes, path: str) -> Tuple[_Layout, str]:
  """The layout of a state dict and its prefix, by the patch embedding."""
  for layout in _LAYOUTS.values():
    key = next(k for k, (p, _) in layout.table.items() if p[0] ==
               'embedding/kernel')
    for prefix in (layout.prefix, ''):
      if prefix + key in shapes:
        return layout, prefix
  raise ValueError(
      f'Checkpoint {path!r} is neither a timm ViT (patch_embed.proj.weight) '
      'nor a transformers ViT (vit.embeddings.patch_embeddings.projection.'
      f'weight); its first keys: {", ".join(sorted(shapes)[:5])}.')


def _check_keys(layout: _Layout, prefix: str, shapes, path: str):
  """Raises on keys of models this ViT cannot express, unknown keys and
  missing keys; returns the expanded table of the keys present, and the
  number of blocks."""
  num_layers = 1 + max((int(m.group(1)) for m in (
      re.match(re.escape(prefix) + layout.block, k) for k in shapes) if m),
                       default=-1)
  if not num_layers:
    raise Mismatch(f'Checkpoint {path!r} ({layout.name} layout) has no '
                   'transformer blocks.')
  table = _expanded(layout, num_layers, prefix)
  resnet = _timm_resnet_layers(shapes) if layout.name == 'timm' else None
  if resnet is not None:
    table.update(_timm_backbone(resnet))
  unsupported, unknown = {}, []
  for key in sorted(set(shapes) - set(table)):
    what = next((w for p, w in layout.unsupported.items()
                 if re.search(p, key)), None)
    if what:
      unsupported.setdefault(what, []).append(key)
    else:
      unknown.append(key)
  lines = [f'  {what}: {", ".join(keys[:3])}' +
           (f' (+{len(keys) - 3} more)' if len(keys) > 3 else '')
           for what, keys in unsupported.items()]
  if unknown:
    lines.append(f'  unknown keys: {", ".join(unknown[:5])}' +
                 (f' (+{len(unknown) - 5} more)' if len(unknown) > 5 else ''))
  if lines:
    raise Mismatch(f'Checkpoint {path!r} ({layout.name} layout) holds what '
                   "vit_jax's ViT cannot express:\n" + '\n'.join(lines))
  absent_roots = {r for r in _OPTIONAL if not any(
      paths[0].split('/')[0] == r
      for k, (paths, _) in table.items() if k in shapes)}
  table = {k: v for k, v in table.items()
           if v[0][0].split('/')[0] not in absent_roots}
  missing = [k for k in table if k not in shapes]
  if missing:
    raise Mismatch(f'Checkpoint {path!r} ({layout.name} layout) lacks these '
                   f'keys ({len(missing)}): {", ".join(missing[:8])}' +
                   (' ...' if len(missing) > 8 else '') +
                   '; is the file complete?')
  return table, num_layers


def _file_config(layout, table, num_layers, shapes, hub, path: str) -> Dict:
  """The model config of a checked state dict: shapes + the hub config."""
  try:
    fields = hub_config.READERS[layout.name](hub)
  except ValueError as e:
    raise Mismatch(f'Checkpoint {path!r}: config.json: {e}') from None
  by_path = {paths[0]: shapes[k] for k, (paths, _) in table.items()}
  hidden, _, ph, pw = by_path['embedding/kernel']
  has_cls = 'cls' in by_path
  tokens = by_path[_POSEMB][1]
  if has_cls and math.isqrt(tokens) ** 2 == tokens:
    raise Mismatch(f'Checkpoint {path!r}: the position embeddings have no '
                   "class-token slot (timm's no_embed_class=True); "
                   "vit_jax's ViT adds them to the class token too.")
  # No config.json (pool None): the caller's config and the shapes decide.
  if fields['pool'] is not None and has_cls != (fields['pool'] == 'token'):
    raise Mismatch(f'Checkpoint {path!r}: global_pool={fields["pool"]!r} '
                   f'{"with" if has_cls else "without"} a class token; '
                   "vit_jax's ViT pools with the class token ('token') or "
                   "averages all tokens when there is none ('avg').")
  pre_logits = by_path.get('pre_logits/kernel')
  resnet = None
  if 'conv_root/kernel' in by_path:
    units = collections.Counter(
        p.split('/')[0] for p in by_path if p.endswith('/conv1/kernel'))
    resnet = dict(num_layers=tuple(units[f'block{s + 1}']
                                   for s in range(len(units))),
                  width_factor=by_path['conv_root/kernel'][0] / 64,
                  std_conv='timm')
    if resnet['width_factor'] == int(resnet['width_factor']):
      resnet['width_factor'] = int(resnet['width_factor'])
  return dict(
      model_name=fields['model_name'] or '/'.join(path.split('/')[-2:]),
      patches={'size': (ph, pw)}, hidden_size=hidden,
      transformer=dict(
          mlp_dim=by_path[_BLOCK.format(i=0) + 'MlpBlock_0/Dense_0/kernel'][0],
          num_heads=fields['num_heads'], num_layers=num_layers,
          attention_dropout_rate=fields['attention_dropout_rate'],
          dropout_rate=fields['dropout_rate'], gelu=fields['gelu'],
          layer_norm_eps=fields['layer_norm_eps']),
      classifier='token' if has_cls else 'gap',
      representation_size=None if pre_logits is None else pre_logits[0],
      **({} if resnet is None else {'resnet': resnet}))


_COMPARED = ('hidden_size', 'patches', 'classifier',
             'transformer.num_layers', 'transformer.mlp_dim',
             'transformer.num_heads', 'transformer.gelu',
             'transformer.layer_norm_eps')
_DEFAULTS = {'classifier': 'token',
             'transformer.gelu': vit.Encoder.gelu,
             'transformer.layer_norm_eps': vit.Encoder.layer_norm_eps}


def _field(config, name):
  *parents, leaf = name.split('.')
  for parent in parents:
    config = config[parent]
  return config.get(leaf, _DEFAULTS.get(name))


def holds_original_weights(path: str) -> bool:
  """Whether a timm file is its conversion of the original's published
  weights (tag `augreg_*` / `orig_*`, in config.json or the hub repo's
  name): those compute as the original did too, with its tanh GELU."""
  tag = (hub_config.read_beside(path).get('pretrained_cfg') or {}).get(
      'tag') or (path.split('.')[-1] if hub.is_hub_name(path) else '')
  return tag.startswith(('augreg', 'orig'))


def _check_matches(model_config, file_config, path: str):
  """Every field the file fixes equals the model config's (else the model
  would compute something else than the checkpoint's library, or, for the
  original's weights, than the original)."""
  problems = []
  original = None
  for name in _COMPARED:
    want, got = _field(file_config, name), _field(model_config, name)
    if name == 'transformer.gelu' and got == 'tanh' and want != got:
      original = holds_original_weights(path) if original is None else original
      if original:
        continue
    if name == 'patches':
      want, got = want['size'], hub_config.patch_size(model_config)
    if want is not None and tuple(np.atleast_1d(want)) != tuple(
        np.atleast_1d(got)):
      problems.append(f'  model.{name}={got!r}, the checkpoint: {want!r}')
  if problems:
    raise Mismatch(f'Checkpoint {path!r} does not fit the model config:\n' +
                   '\n'.join(problems) + '\nUse the config the checkpoint '
                   'describes (checkpoint.safetensors_model_config, or '
                   '--config=configs/finetune.py:model=FILE.safetensors).')


def _describe(path: str, shapes):
  """A .safetensors file's keys checked: (the model config it describes,
  layout, expanded table of its keys)."""
  layout, prefix = _detect(shapes, path)
  table, num_layers = _check_keys(layout, prefix, shapes, path)
  config = _file_config(layout, table, num_layers, shapes,
                        hub_config.read_beside(path), path)
  return config, layout, table


def _complete(config, path: str) -> ml_collections.ConfigDict:
  if config['transformer']['num_heads'] is None:
    raise ValueError(
        f'Cannot tell the head count of {path!r}: put the config.json of its '
        "hub repository beside it (timm: 'architecture' such as "
        "vit_base_patch16_224, or model_args.num_heads; transformers: "
        'num_attention_heads), or pass a model config.')
  return ml_collections.ConfigDict(config)


def model_config(path: str) -> ml_collections.ConfigDict:
  """The model config a .safetensors file and its config.json describe."""
  return _complete(_describe(path, read_shapes(path))[0], path)


def check(path: str, config) -> None:
  """Raises unless `load(path, config)` would load (from the header)."""
  _check_matches(config, _describe(path, read_shapes(path))[0], path)


def load(path: str, config=None) -> Dict[str, Any]:
  """Params of a timm or transformers ViT .safetensors for
  `models.create(config, ...)` (default: `model_config(path)`)."""
  tensors = read_tensors(path)
  file_config, layout, table = _describe(
      path, {k: v.shape for k, v in tensors.items()})
  if config is None:
    config = _complete(file_config, path)
  _check_matches(config, file_config, path)
  heads = config['transformer']['num_heads']
  flat = {}
  for key, (paths, conversion) in table.items():
    try:
      arrays = conversion.to_jax(tensors[key], heads)
    except ValueError as e:
      raise Mismatch(f'Checkpoint {path!r} ({layout.name} layout): {key} of '
                     f'shape {tensors[key].shape} does not split into '
                     f'{heads} heads ({e}).') from None
    flat.update(zip(paths, arrays))
  return flax.traverse_util.unflatten_dict(
      {tuple(p.split('/')): v for p, v in flat.items()})


def _check_savable(layout: _Layout, flat, config):
  """What a layout's library cannot hold: clear errors before writing."""
  if config.get('resnet') is not None and layout.name != 'timm':
    raise ValueError('Hybrid (ResNet + ViT) models have no transformers '
                     "layout; save them with layout='timm'.")
  if layout.name == 'timm' and 'pre_logits/kernel' in flat:
    raise ValueError("timm's VisionTransformer has no pre-logits layer "
                     '(representation_size); save without it.')
  eps = hub_config.layer_norm_eps(config)
  if layout.name == 'timm' and eps != hub_config.TIMM_LAYER_NORM_EPS:
    raise ValueError(f'timm ViTs use LayerNorm eps '
                     f'{hub_config.TIMM_LAYER_NORM_EPS}, the model {eps}.')
  if layout.name == 'transformers' and (
      not {'cls', 'head/kernel'} <= set(flat) or 'pre_logits/kernel' in flat):
    raise ValueError("transformers' ViTForImageClassification needs a class "
                     "token (classifier='token') and a head, and has no "
                     'pre-logits layer (representation_size).')


def _backbone_stride(config) -> int:
  """Pixels per feature of a hybrid's ResNet (the stem's 4, x2 for every
  stage after the first); 1 for a ViT."""
  if config.get('resnet') is None:
    return 1
  return 4 * 2 ** max(len(config['resnet']['num_layers']) - 1, 0)


def save(path: str, params, config, layout: str = 'timm'):
  """Writes `params` of `VisionTransformer(**config)` as `layout`'s state
  dict, and the library's config.json beside it."""
  if layout not in _LAYOUTS:
    raise ValueError(f'layout={layout!r}: use one of {", ".join(_LAYOUTS)}.')
  layout = _LAYOUTS[layout]
  flat = {'/'.join(k): np.asarray(v, np.float32) for k, v in
          flax.traverse_util.flatten_dict(
              common.unstack_blocks(dict(params))).items()}
  _check_savable(layout, flat, config)
  t = config['transformer']
  heads, used, tensors = t['num_heads'], set(), {}
  table = _expanded(layout, t['num_layers'], layout.prefix)
  if config.get('resnet') is not None:
    table.update(_timm_backbone(tuple(config['resnet']['num_layers'])))
  missing = sorted(p for paths, _ in table.values() for p in paths
                   if p not in flat and p.split('/')[0] not in _OPTIONAL)
  if missing:
    raise ValueError(f'params lack what the model config has: '
                     f'{", ".join(missing[:5])}; are they this model\'s?')
  for key, (paths, conversion) in table.items():
    if paths[0].split('/')[0] in _OPTIONAL and paths[0] not in flat:
      continue
    tensors[key] = np.ascontiguousarray(
        conversion.to_torch(tuple(flat[p] for p in paths), heads))
    used.update(paths)
  if set(flat) - used:
    raise ValueError(f'params hold what the {layout.name} layout has no key '
                     f'for: {", ".join(sorted(set(flat) - used)[:5])}.')
  num_classes = flat['head/bias'].shape[0] if 'head/bias' in flat else 0
  grid = flat[_POSEMB].shape[1] - ('cls' in flat)
  side = math.isqrt(grid)
  if side * side != grid:
    raise ValueError(f'{grid} position embeddings are not a square grid; '
                     'timm and transformers configs need a square image.')
  image_size = [side * p * _backbone_stride(config)
                for p in hub_config.patch_size(config)]
  hub = hub_config.WRITERS[layout.name](config, num_classes, image_size)
  atomic_file.write(
      path, safetensors.numpy.save(tensors, metadata={'format': 'pt'}))
  atomic_file.write(hub_config.path_beside(path), json.dumps(hub, indent=2))
