r"""Fine-tunes an AugReg checkpoint ("How to train your ViT?") chosen by name.

  python main.py --workdir=/tmp/augreg --config=configs/augreg.py:R_Ti_16 \
      --config.dataset=oxford_iiit_pet [--config.pretrained_dir=DIR]

The argument is an AugReg model name (R_Ti_16, S_16, B_16, L_16, S_32, B_32,
B_8, R26_S_32, R50_L_32, ...: a ViT/hybrid preset name without 'ViT-', with
'_' for '+'), which takes the ImageNet-21k checkpoint with the best
`final_val` in `pretrained_dir`/index.csv, or a full file name without .npz
(R_Ti_16-i21k-300ep-lr_0.001-aug_none-wd_0.03-do_0.0-sd_0.0), which takes
that file. `vit_jax/checkpoint/augreg.py` resolves it when training starts.

As the original: a new head, position embeddings resized to the fine-tuning
resolution (384 px), the AugReg dropout off, SGD with momentum at lr 0.03
for 500 steps (100 warmup). `config.dataset` has no default: set it.
"""
import os

from vit_jax.checkpoint import augreg
from vit_jax.configs import common


def get_config(arg=None):
  if not arg:
    raise ValueError('configs/augreg.py needs a model or file name, e.g. '
                     '--config=configs/augreg.py:R_Ti_16.')
  config = common.config_file(
      os.path.join(os.path.dirname(__file__), 'finetune.py'))
  config.model = augreg.model_config(arg)
  config.model.transformer.dropout_rate = 0.0  # No AugReg when fine-tuning.
  config.model_or_filename = arg
  config.pretrained_dir = augreg.DEFAULT_DIR
  config.dataset = ''  # Must be set on the command line.

  config.total_steps = 500
  config.lr.base = 0.03
  config.lr.warmup_steps = 100
  return config
