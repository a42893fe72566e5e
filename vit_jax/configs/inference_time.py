r"""The original release's config: times a preset's forward pass.

  python -m vit_jax.main --workdir=/tmp/time \
      --config=vit_jax/configs/inference_time.py --config.batch=64 \
      --config.num_classes=1000 --config.image_size=224
"""
# pylint: disable=g-importing-member,unused-import
from vit_jax.original.configs import inference_time_config as get_config
