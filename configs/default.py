"""The offline default job: a small ViT on Fashion-MNIST, on a laptop CPU.

Fashion-MNIST comes from Debian's `dataset-fashion-mnist` files (or tfds).
28x28 images cut into 4x4 patches give 49 tokens + the class token. Tuned to
pass 90% test accuracy within 10 minutes on 2 CPU cores (see README).
"""
import ml_collections

from configs import common


def get_config(arg=None):
  del arg
  config = common.base_config()
  config.model = ml_collections.ConfigDict(dict(
      model_name='ViT-fmnist', patches={'size': (4, 4)}, hidden_size=64,
      transformer=dict(mlp_dim=128, num_heads=4, num_layers=6,
                       attention_dropout_rate=0.0, dropout_rate=0.0),
      classifier='token', representation_size=None))
  config.dataset = 'fashion_mnist'
  config.image_size = 28
  config.pp.train = 'random_crop'
  config.pp.crop_padding = 2
  config.pp.flip = True
  config.pp.eval = 'resize'

  config.total_steps = 2000
  config.batch_size = 128
  config.eval_batch_size = 1000
  config.log_every = 100
  config.eval_every = 1000
  config.checkpoint_every = 500

  config.optimizer.weight_decay = 0.05
  config.lr.base = 2e-3
  config.lr.warmup_steps = 200
  config.lr.decay = 'cosine'
  config.label_smoothing = 0.1
  return config
