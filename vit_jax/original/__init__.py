"""The original release's API (google-research/vision_transformer's
`vit_jax`), as thin adapters over this package.

Code written against the original (its Colabs, its command line, scripts
importing `vit_jax.input_pipeline`, `vit_jax.utils`, `train.make_update_fn`,
`configs.common.get_config`, ...) runs here unchanged. Every adapter is a few
lines that reshape arguments or results around this package's real code; none
holds logic of its own. The modules at the original's names
(`vit_jax/input_pipeline.py`, `utils.py`, `models_vit.py`, `main.py`, ...) only
re-export from here. README.md "The original release's API" has the table of
what maps to what.

  configs     the original's experiment configs (`common.get_config`,
              `with_dataset`, `vit.py:b16,cifar10`, `augreg.py:NAME`)
  translate   the one translation of such a config into this trainer's config
  data        `input_pipeline`: batches [devices, per_device, ...], one-hot
  train       `make_update_fn`, `train_and_evaluate`, the lr schedule,
              `inference_time`
  lit         the LiT model with its loading and preprocessing methods
  preprocess  `get_pp`, `PreprocessImages`
  checkpoint  `inspect_params`, `copy`, `get_augreg_df`
  main        `python -m vit_jax.main --config=... --workdir=...`
"""
