"""Model presets (`vit_jax.configs.models`)."""
