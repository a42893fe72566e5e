"""vit_jax: Vision Transformer models, checkpoints and trainer in JAX/Flax."""
from vit_jax import quiet_tf

# TensorFlow's C++ start-up lines (oneDNN, CUDA probing) stay off the console.
quiet_tf.install()
