"""Writes hf_tiny/ for tests/test_siglip.py, or checks a saved repo (not a test).

Needs torch and transformers (never the project's dependencies):

  python tests/data/siglip/make_transformers_case.py write
      A tiny transformers `SiglipModel` (every parameter drawn at random),
      saved with `save_pretrained` to hf_tiny/ (model.safetensors +
      config.json), and hf_tiny_refs.npz: its inputs (`images` NHWC in
      [-1, 1], `tokens` with sticky EOS = pad = 1) and outputs (`image_embeds`,
      `text_embeds`: unit-norm; `logit_scale`, `logit_bias`).
  python tests/data/siglip/make_transformers_case.py check DIR
      Loads DIR (written by vit_jax's `save_safetensors(...,
      layout='transformers')`) with `SiglipModel.from_pretrained`, fails on
      any missing / unexpected key, and prints the largest difference of its
      embeddings from hf_tiny_refs.npz.
"""
import pathlib
import sys

import numpy as np
import torch
import transformers

HERE = pathlib.Path(__file__).parent
REFS = HERE / 'hf_tiny_refs.npz'


def embed(model, refs):
  with torch.no_grad():
    out = model(input_ids=torch.from_numpy(refs['tokens']).long(),
                pixel_values=torch.from_numpy(
                    refs['images'].transpose(0, 3, 1, 2).copy()))
  return out.image_embeds.numpy(), out.text_embeds.numpy()


def write():
  torch.manual_seed(0)
  config = transformers.SiglipConfig(
      text_config=dict(hidden_size=16, intermediate_size=24,
                       num_hidden_layers=2, num_attention_heads=2,
                       vocab_size=32, max_position_embeddings=8,
                       projection_size=16, pad_token_id=1, eos_token_id=1,
                       bos_token_id=None),
      vision_config=dict(hidden_size=16, intermediate_size=24,
                         num_hidden_layers=2, num_attention_heads=4,
                         image_size=16, patch_size=4))
  model = transformers.SiglipModel(config).eval()
  with torch.no_grad():
    for p in model.parameters():
      p.copy_(torch.randn_like(p) * 0.3)
  rng = np.random.default_rng(0)
  tokens = np.ones((3, 8), np.int32)
  for i, n in enumerate((3, 7, 8)):
    tokens[i, :n] = rng.integers(2, 32, n)
  tokens[:, -1] = 1
  refs = {'images': rng.uniform(-1, 1, (2, 16, 16, 3)).astype(np.float32),
          'tokens': tokens}
  image_embeds, text_embeds = embed(model, refs)
  model.save_pretrained(HERE / 'hf_tiny')
  np.savez(REFS, **refs, image_embeds=image_embeds, text_embeds=text_embeds,
           logit_scale=model.logit_scale.detach().numpy(),
           logit_bias=model.logit_bias.detach().numpy())


def check(path):
  refs = dict(np.load(REFS))
  model, info = transformers.SiglipModel.from_pretrained(
      path, output_loading_info=True)
  bad = {k: v for k, v in info.items() if v}
  assert not bad, bad
  image_embeds, text_embeds = embed(model.eval(), refs)
  print('strict load OK; max |diff|: image',
        np.abs(image_embeds - refs['image_embeds']).max(), 'text',
        np.abs(text_embeds - refs['text_embeds']).max(), 'logit_scale',
        abs(float(model.logit_scale) - float(refs['logit_scale'][0])),
        'logit_bias',
        abs(float(model.logit_bias) - float(refs['logit_bias'][0])))


if __name__ == '__main__':
  if sys.argv[1] == 'write':
    write()
  else:
    check(sys.argv[2])
