"""The offline default job: a small ViT on Fashion-MNIST, on a laptop CPU.

Fashion-MNIST comes from Debian's `dataset-fashion-mnist` files (or tfds).
28x28 images cut into 7x7 patches give 16 tokens + the class token; width 128,
6 blocks. Tuned for 10 minutes on 2 CPU cores (see README for the measured
accuracy). In that short a run the model underfits, so the recipe has little
regularisation: horizontal flips only, no label smoothing, small batches
(more updates per epoch). On the same image budget 4x4 patches learned no
faster per image and ran 2-3x slower, and a GAP head did no better.
"""
import ml_collections

from configs import common


def get_config(arg=None):
  del arg
  config = common.base_config()
  config.model = ml_collections.ConfigDict(dict(
      model_name='ViT-fmnist', patches={'size': (7, 7)}, hidden_size=128,
      transformer=dict(mlp_dim=256, num_heads=4, num_layers=6,
                       attention_dropout_rate=0.0, dropout_rate=0.0),
      classifier='token', representation_size=None))
  config.dataset = 'fashion_mnist'
  config.image_size = 28
  config.pp.train = 'resize'  # 28 px stays 28 px.
  config.pp.flip = True
  config.pp.eval = 'resize'

  config.total_steps = 8000
  config.batch_size = 64
  config.eval_batch_size = 1000
  config.log_every = 200
  config.eval_every = 2000
  config.checkpoint_every = 1000

  config.optimizer.weight_decay = 0.05
  config.lr.base = 1.5e-3
  config.lr.warmup_steps = 400
  config.lr.decay = 'cosine'
  config.label_smoothing = 0.0
  return config
