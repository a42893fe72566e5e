"""AugReg's pre-training settings, by the names its file names use.

"How to train your ViT?" (Steiner et al., arXiv 2106.10270) names every
pre-training run by its settings, e.g. `B_16-i21k-300ep-lr_0.001-
aug_medium1-wd_0.1-do_0.0-sd_0.0`: an augmentation level (`aug_*`), the
weight decay (`wd_*`, AdamW's: scaled by the lr, so big_vision's `wd` is it
times the lr), dropout (`do_*`) and stochastic depth (`sd_*`).
`configs/pretrain.py` takes them as arguments (`aug=medium1,wd=0.1,...`, or
the file-name form `augreg=aug_medium1-wd_0.1-do_0.0-sd_0.0`).

The augmentation levels are those of big_vision's AugReg config
(configs/vit_i1k.py: RANDAUG_DEF, MIXUP_DEF): RandAugment with 2 layers at a
magnitude (light1's magnitude 0 still applies the operations that have no
magnitude: equalize, autocontrast, ...) and Mixup with probability p.
"""
from typing import Dict, Optional, Tuple

import ml_collections

# name -> (RandAugment (num_layers, magnitude) or None, Mixup p).
AUGMENTATIONS: Dict[str, Tuple[Optional[Tuple[int, int]], float]] = {
    'none': (None, 0.0),
    'light1': ((2, 0), 0.0),
    'light2': ((2, 10), 0.2),
    'medium1': ((2, 15), 0.2),
    'medium2': ((2, 15), 0.5),
    'strong1': ((2, 20), 0.5),
    'strong2': ((2, 20), 0.8),
}
# File-name keys -> pretrain.py argument names.
_KEYS = {'aug': 'aug', 'wd': 'wd', 'do': 'do', 'sd': 'sd', 'lr': 'lr'}


def parse(spec: str) -> Dict[str, object]:
  """'aug_medium1-wd_0.1-do_0.0-sd_0.0' (or a whole AugReg file name: the
  parts without `key_value` form are skipped) -> {'aug': 'medium1', 'wd':
  0.1, 'do': 0.0, 'sd': 0.0}; `lr_` too."""
  out = {}
  for part in spec.split('-'):
    key, sep, value = part.partition('_')
    if not sep or key not in _KEYS or not value:
      continue
    out[_KEYS[key]] = value if key == 'aug' else float(value)
  if not out:
    raise ValueError(f'augreg={spec!r} names no AugReg setting; write it as '
                     'in the file names, e.g. aug_medium1-wd_0.1-do_0.0-'
                     'sd_0.0.')
  return out


def set_augmentation(config: ml_collections.ConfigDict,
                     randaug: Optional[Tuple[int, int]],
                     mixup_p: float) -> None:
  """Sets `config.pp.randaug` and `config.mixup.p` (fields the input
  pipeline reads), keeping any other `mixup` fields there are."""
  config.pp.randaug = randaug
  if 'mixup' in config:
    config.mixup.p = mixup_p
  else:
    config.mixup = ml_collections.ConfigDict(dict(p=mixup_p))


def apply(config: ml_collections.ConfigDict, *, aug: str, wd: float,
          do: float, sd: float) -> None:
  """AugReg's settings on a pre-training config (AdamW weight decay)."""
  if aug not in AUGMENTATIONS:
    raise ValueError(f'aug={aug!r} is not an AugReg augmentation; use one of '
                     f'{", ".join(AUGMENTATIONS)}.')
  set_augmentation(config, *AUGMENTATIONS[aug])
  config.optimizer.weight_decay = wd
  if 'transformer' in config.model:
    config.model.transformer.dropout_rate = do
    config.model.transformer.stochastic_depth = sd
  elif do or sd:
    raise ValueError(f'do={do}, sd={sd}: dropout and stochastic depth are '
                     "ViT options; this model (a Mixer) has neither.")
