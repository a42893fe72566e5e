"""The offline default job: a small ViT on Fashion-MNIST, on a laptop CPU.

Fashion-MNIST comes from Debian's `dataset-fashion-mnist` files (or tfds).
28x28 images cut into 7x7 patches give 16 tokens + the class token; width 96,
4 blocks, MLP 192. Tuned for 10 minutes of wall time on 2 CPU cores, when
jobs ran on one CPU device (now split into one device per core, it takes
under 6 minutes; the README has the measured accuracy and time). In a
budget that short the number of epochs matters more than model size: this
model runs ~1.7x the images/s of a width-128, 6-block one (12.8 epochs
instead of 8.5) and ended higher: 90.2% in 7.5-8.5 minutes against 88.5% in
9; 4x4 patches (49 tokens, width 96, 4 blocks) reached 87.9% in 9.5
minutes (all on one device); on 2 devices, 4x4 patches at width 64, MLP
128 took ~2.4x the CPU time per train step and reached 89.74% in 9000 steps
(82.7% at 2000, 86.0% at 4000, 88.1% at 6000, 89.6% at 8000; that model is
the notebook's, configs/fashion_mnist_vit.py). The model underfits, so
there is little regularisation: flips only, no label smoothing, small
batches (more updates per epoch).
"""
import ml_collections

from configs import common


def get_config(arg=None):
  del arg
  config = common.base_config()
  config.model = ml_collections.ConfigDict(dict(
      model_name='ViT-fmnist', patches={'size': (7, 7)}, hidden_size=96,
      transformer=dict(mlp_dim=192, num_heads=4, num_layers=4,
                       attention_dropout_rate=0.0, dropout_rate=0.0),
      classifier='token', representation_size=None))
  config.dataset = 'fashion_mnist'
  config.image_size = 28
  config.pp.train = 'resize'  # 28 px stays 28 px.
  config.pp.flip = True
  config.pp.eval = 'resize'

  config.total_steps = 12000
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
