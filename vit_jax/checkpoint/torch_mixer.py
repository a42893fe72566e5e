"""timm's MLP-Mixer (`mlp_mixer`, e.g. timm/mixer_b16_224.goog_in21k)
.safetensors <-> `models_mixer.MlpMixer` params.

timm's keys: `stem.proj` (the patch Conv2d), `blocks.{i}.norm1`,
`blocks.{i}.mlp_tokens.fc{1,2}`, `blocks.{i}.norm2`,
`blocks.{i}.mlp_channels.fc{1,2}`, `norm`, `head`; converted as
`torch_layouts` converts a ViT's (Linear weights transposed, the conv
OIHW -> HWIO). timm computes the same model with the exact GELU (its
nn.GELU; the original: tanh), LayerNorm eps 1e-6 as flax: the model config
says `gelu='exact'`. The sizes come from the shapes, the name and activation
from config.json.
"""
import json
import re
from typing import Any, Dict

import flax.traverse_util
import ml_collections
import numpy as np
import safetensors.numpy

from vit_jax import atomic_file
from vit_jax.checkpoint import common
from vit_jax.checkpoint import torch_config as hub_config
from vit_jax.checkpoint import torch_layouts

Mismatch = common.CheckpointMismatchError
_STEM = 'stem.proj.weight'
_BLOCK = re.compile(r'^blocks\.(\d+)\.')
_TIMM_ACTS = {'gelu': 'exact', 'gelu_tanh': 'tanh'}
# timm's registered Mixers: (patch, blocks, width) -> architecture.
_REGISTERED = {(p, b, w): f'mixer_{n}{p}_224' for n, b, w in (
    ('s', 8, 512), ('b', 12, 768), ('l', 24, 1024)) for p in (16, 32)}


def _table(num_blocks: int):
  # pylint: disable=protected-access
  linear, norm = torch_layouts._linear, torch_layouts._layer_norm
  table = {**linear('stem.proj', 'stem', kernel=torch_layouts._CONV),
           **norm('norm', 'pre_head_layer_norm'), **linear('head', 'head')}
  for i in range(num_blocks):
    block, path = f'blocks.{i}.', f'MixerBlock_{i}/'
    table.update({
        **norm(block + 'norm1', path + 'LayerNorm_0'),
        **norm(block + 'norm2', path + 'LayerNorm_1'),
        **{k: v for mlp, name in (('mlp_tokens', 'token_mixing'),
                                  ('mlp_channels', 'channel_mixing'))
           for fc in (1, 2) for k, v in linear(
               f'{block}{mlp}.fc{fc}', f'{path}{name}/Dense_{fc - 1}').items()}
    })
  return table


def is_mixer(shapes) -> bool:
  return _STEM in shapes


def _describe(path: str, shapes):
  """(model config, table of the keys present) of a timm Mixer file."""
  num_blocks = 1 + max((int(m.group(1)) for m in map(_BLOCK.match, shapes)
                        if m), default=-1)
  table = _table(num_blocks)
  if 'head.weight' not in shapes:  # num_classes 0: a feature extractor.
    table = {k: v for k, v in table.items() if not k.startswith('head.')}
  unknown = sorted(set(shapes) - set(table))
  missing = sorted(set(table) - set(shapes))
  if unknown or missing or not num_blocks:
    raise Mismatch(
        f'Checkpoint {path!r} is not a timm MLP-Mixer this project computes'
        f' (unknown keys: {", ".join(unknown[:5]) or "none"}; missing: '
        f'{", ".join(missing[:5]) or "none"}).')
  hub = hub_config.read_beside(path)
  act = (hub.get('model_args') or {}).get('act_layer', 'gelu')
  if act not in _TIMM_ACTS:
    raise Mismatch(f'Checkpoint {path!r}: act_layer={act!r}; only '
                   f'{", ".join(_TIMM_ACTS)} have a vit_jax equivalent.')
  hidden, _, ph, pw = shapes[_STEM]
  config = dict(
      model_name=hub.get('architecture') or path.split('/')[-1],
      patches={'size': (ph, pw)}, hidden_dim=hidden, num_blocks=num_blocks,
      tokens_mlp_dim=shapes['blocks.0.mlp_tokens.fc1.weight'][0],
      channels_mlp_dim=shapes['blocks.0.mlp_channels.fc1.weight'][0],
      gelu=_TIMM_ACTS[act])
  return ml_collections.ConfigDict(config), table


def model_config(path: str, shapes) -> ml_collections.ConfigDict:
  return _describe(path, shapes)[0]


def check(path: str, shapes, config) -> None:
  """Raises unless the file's Mixer is `config`'s."""
  file_config = _describe(path, shapes)[0]
  problems = [f'  model.{k}={config.get(k)!r}, the checkpoint: {v!r}'
              for k, v in file_config.items()
              if k not in ('model_name', 'patches') and config.get(
                  k, 'tanh' if k == 'gelu' else None) != v]
  if tuple(hub_config.patch_size(config)) != tuple(
      file_config.patches.size):
    problems.append(f'  model.patches={hub_config.patch_size(config)}, '
                    f'the checkpoint: {file_config.patches.size}')
  if problems:
    raise Mismatch(f'Checkpoint {path!r} does not fit the model config:\n' +
                   '\n'.join(problems))


def load(path: str, tensors, config=None) -> Dict[str, Any]:
  shapes = {k: v.shape for k, v in tensors.items()}
  file_config, table = _describe(path, shapes)
  if config is not None:
    check(path, shapes, config)
  del file_config
  flat = {}
  for key, (paths, conversion) in table.items():
    flat.update(zip(paths, conversion.to_jax(tensors[key], 0)))
  return flax.traverse_util.unflatten_dict(
      {tuple(p.split('/')): v for p, v in flat.items()})


def save(path: str, params, config) -> None:
  """timm's state dict and config.json (`mixer_b16_224`-style)."""
  flat = {'/'.join(k): np.asarray(v, np.float32) for k, v in
          flax.traverse_util.flatten_dict(
              common.unstack_blocks(dict(params))).items()}
  table = _table(config['num_blocks'])
  if 'head/kernel' not in flat:
    table = {k: v for k, v in table.items() if not k.startswith('head.')}
  tensors = {k: np.ascontiguousarray(c.to_torch(tuple(flat[p] for p in ps), 0))
             for k, (ps, c) in table.items()}
  ph, pw = hub_config.patch_size(config)
  if ph != pw:
    raise ValueError(f"timm's Mixer takes square patches; got {ph}x{pw}.")
  tokens = flat['MixerBlock_0/token_mixing/Dense_0/kernel'].shape[0]
  side = int(round(tokens ** 0.5))
  hidden = config['hidden_dim']
  num_classes = flat['head/bias'].shape[0] if 'head/bias' in flat else 0
  gelu = config.get('gelu', 'tanh')
  ratios = [config['tokens_mlp_dim'] / hidden,
            config['channels_mlp_dim'] / hidden]
  registered = _REGISTERED.get((ph, config['num_blocks'], hidden))
  if registered and ratios == [0.5, 4.0] and gelu == 'exact':
    # What timm's own hub files hold: `timm.create_model(architecture,
    # **model_args)` builds it.
    architecture = registered
    args = dict(img_size=side * ph, num_classes=num_classes)
  else:
    # No registered architecture computes it: model_args are the arguments of
    # `timm.models.mlp_mixer.MlpMixer(**model_args)` (its default act_layer
    # is the exact GELU; a tanh one is named here, for this reader, and is
    # `partial(nn.GELU, approximate='tanh')` in timm).
    architecture = f'mixer_b{ph}_224'
    args = dict(img_size=side * ph, patch_size=ph,
                num_blocks=config['num_blocks'], embed_dim=hidden,
                num_classes=num_classes, mlp_ratio=ratios)
    if gelu != 'exact':
      args['act_layer'] = {v: k for k, v in _TIMM_ACTS.items()}[gelu]
  hub = dict(architecture=architecture, num_classes=num_classes,
             num_features=hidden, global_pool='avg', model_args=args,
             pretrained_cfg=dict(input_size=[3, side * ph, side * ph],
                                 mean=[0.5] * 3, std=[0.5] * 3,
                                 num_classes=num_classes,
                                 first_conv='stem.proj', classifier='head'))
  atomic_file.write(
      path, safetensors.numpy.save(tensors, metadata={'format': 'pt'}))
  atomic_file.write(hub_config.path_beside(path), json.dumps(hub, indent=2))
