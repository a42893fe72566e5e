"""Checkpoints: weights files <-> Flax params.

  augreg           AugReg checkpoints ("How to train your ViT?", Steiner et
                   al., arXiv 2106.10270), chosen by name as in the original
                   release.
  big_vision       big_vision's ViT checkpoints (`big_vision/models/vit.py`) ->
                   this project's layout, and the model config that computes
                   what big_vision computes.
  common           What every checkpoint layout shares: files, the mismatch
                   error, blocks.
  hub              `hf-hub:ORG/NAME[@REVISION][/FILE]` checkpoint names ->
                   local files.
  npz              The published checkpoint layout (.npz) <-> Flax params.
  pretrained       Params from any checkpoint file, fitted to a model for fine-
                   tuning.
  torch_config     config.json of timm and transformers ViTs <-> vit_jax model
                   config fields.
  torch_layouts    timm and Hugging Face transformers ViTs (.safetensors) <->
                   params.
  torch_mixer      timm's MLP-Mixer (`mlp_mixer`, e.g.
                   timm/mixer_b16_224.goog_in21k) .safetensors <->
                   `models_mixer.MlpMixer` params.
  torch_siglip     transformers' `SiglipModel` (.safetensors + config.json)
                   <-> two-tower params.

`from vit_jax import checkpoint` gives the names below (the API of the old
`vit_jax/checkpoint.py`).
"""
# pylint: disable=g-importing-member,unused-import
from vit_jax.checkpoint.common import (
    CheckpointMismatchError,
    has_stacked_blocks,
    stack_blocks,
    unstack_blocks)
from vit_jax.checkpoint.npz import (
    load,
    load_npz,
    npz_shapes,
    save_npz,
    to_published)
from vit_jax.checkpoint.pretrained import (
    check_safetensors,
    check_token_count,
    fit_params,
    interpolate_posemb,
    is_safetensors,
    load_params,
    load_pretrained,
    load_safetensors,
    mixer_tokens,
    safetensors_model_config,
    save_safetensors)
