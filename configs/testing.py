"""A tiny job for tests: 2 small blocks at 16 px, a few steps."""
import ml_collections

from vit_jax.configs import common


def get_config(arg=None):
  del arg
  config = common.base_config()
  config.model = common.with_vit_options(ml_collections.ConfigDict(dict(
      model_name='tiny', patches={'size': (4, 4)}, hidden_size=16,
      transformer=dict(mlp_dim=32, num_heads=2, num_layers=2,
                       attention_dropout_rate=0.0, dropout_rate=0.1),
      classifier='token', representation_size=None)))
  config.image_size = 16
  config.pp.train = 'random_crop'
  config.pp.crop_padding = 2
  config.pp.eval = 'resize'
  config.total_steps = 6
  config.batch_size = 16
  config.eval_batch_size = 32
  config.log_every = 1
  config.eval_every = 3
  config.checkpoint_every = 3
  config.lr.warmup_steps = 2
  return config
