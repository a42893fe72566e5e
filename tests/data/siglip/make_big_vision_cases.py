"""Writes the big_vision two-tower cases of tests/test_siglip.py (not a test).

Run outside the repo's dependencies, with big_vision's source on the path
(`git archive` of google-research/big_vision into DIR; jax, flax,
ml_collections, tensorflow installed):

  PYTHONPATH=DIR python tests/data/siglip/make_big_vision_cases.py

For each case: big_vision's `two_towers.Model(**kwargs)` is initialised, every
parameter is perturbed (so zero-initialised heads and biases count), and the
file `CASE.npz` holds the params as the released SigLIP files do (flat
`/`-joined keys under `params/`, scanned towers stacked), `input/images`,
`input/tokens` (sticky EOS = pad = 1) and big_vision's outputs `out/zimg`,
`out/ztxt`, `out/t` and, with a bias, `out/b`. `cases.json` holds the kwargs.
"""
import json
import pathlib

import flax
import jax
import jax.numpy as jnp
import numpy as np

from big_vision.models.proj.image_text import two_towers

HERE = pathlib.Path(__file__).parent
CASES = {
    # A MAP image tower with bias_init (SigLIP), both towers scanned, the
    # image embedding being the MAP output (out_dim[0] None).
    'bv_map_bias': dict(
        image_model='vit', text_model='proj.image_text.text_transformer',
        image=dict(patch_size=[4, 4], width=16, depth=2, mlp_dim=24,
                   num_heads=4, pool_type='map', posemb='learn', scan=True),
        text=dict(width=16, depth=2, mlp_dim=20, num_heads=2, vocab_size=32,
                  scan=True),
        out_dim=[None, 16], temperature_init=10.0, bias_init=-10.0),
    # A GAP image tower with fixed sin-cos position embeddings, heads on both
    # towers, no bias (a LiT/CLIP-style softmax model).
    'bv_gap_sincos': dict(
        image_model='vit', text_model='proj.image_text.text_transformer',
        image=dict(patch_size=[4, 4], width=16, depth=2, num_heads=2,
                   pool_type='gap', posemb='sincos2d'),
        text=dict(width=12, depth=1, mlp_dim=None, num_heads=3,
                  vocab_size=30),
        out_dim=8, temperature_init=1 / 0.07),
    # A class-token image tower with a tanh pre-logits layer, a text tower
    # read at its first token.
    'bv_tok_rep': dict(
        image_model='vit', text_model='proj.image_text.text_transformer',
        image=dict(patch_size=[8, 8], width=16, depth=1, num_heads=2,
                   pool_type='tok', posemb='learn', rep_size=True),
        text=dict(width=16, depth=1, mlp_dim=32, num_heads=2, vocab_size=30,
                  pool_type='first'),
        out_dim=[12, 12], bias_init=0.5),
}


def tokens(rng, vocab, n=3, length=8):
  out = np.ones((n, length), np.int32)  # Pad = EOS = 1.
  for i, size in enumerate(rng.integers(1, length, n)):
    out[i, :size] = rng.integers(2, vocab, size)
  return out


def main():
  rng = np.random.default_rng(0)
  for name, kwargs in CASES.items():
    model = two_towers.Model(**kwargs)
    images = rng.uniform(-1, 1, (2, 16, 16, 3)).astype(np.float32)
    toks = tokens(rng, kwargs['text']['vocab_size'])
    params = model.init(jax.random.PRNGKey(0), images, toks)['params']
    flat = flax.traverse_util.flatten_dict(flax.core.unfreeze(params),
                                           sep='/')
    flat = {k: np.asarray(v) + rng.normal(0, 0.1, np.shape(v)).astype(
        np.float32) for k, v in flat.items()}
    params = flax.traverse_util.unflatten_dict(flat, sep='/')
    zimg, ztxt, out = model.apply({'params': params}, images, toks)
    arrays = {f'params/{k}': v for k, v in flat.items()}
    arrays.update({'input/images': images, 'input/tokens': toks,
                   'out/zimg': np.asarray(zimg), 'out/ztxt': np.asarray(ztxt),
                   'out/t': np.asarray(out['t'])})
    if 'b' in out:
      arrays['out/b'] = np.asarray(out['b'])
    np.savez(HERE / f'{name}.npz', **arrays)
  (HERE / 'cases.json').write_text(json.dumps(CASES, indent=1) + '\n')


if __name__ == '__main__':
  jax.config.update('jax_platforms', 'cpu')
  main()
