r"""The original release's config: fine-tunes an AugReg checkpoint.

  python -m vit_jax.main --workdir=/tmp/vit \
      --config=vit_jax/configs/augreg.py:R_Ti_16 \
      --config.dataset=oxford_iiit_pet --config.pp.train='train[:90%]'

The argument is an AugReg model (its best i21k checkpoint by final_val) or a
full file name without .npz (`vit_jax/original/configs.py`).
"""
# pylint: disable=g-importing-member,unused-import
from vit_jax.original.configs import augreg_config as get_config
