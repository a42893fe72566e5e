"""vit_jax: Vision Transformer models, checkpoints and trainer in JAX/Flax."""
