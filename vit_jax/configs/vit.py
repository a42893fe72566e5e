r"""The original release's config: fine-tunes a ViT preset on a dataset.

  python -m vit_jax.main --workdir=/tmp/vit \
      --config=vit_jax/configs/vit.py:b16,cifar10 \
      --config.pretrained_dir=DIR_WITH_ViT-B_16.npz

The argument is MODEL,DATASET: `configs.models.get_MODEL_config()` and a
dataset of `configs.common.DATASET_PRESETS` (`vit_jax/original/configs.py`).
"""
# pylint: disable=g-importing-member,unused-import
from vit_jax.original.configs import vit_config as get_config
