"""Pretraining with the paper's recipe (Dosovitskiy et al., Sec. 4.1, App. B).

Adam (b1=0.9, b2=0.999), decoupled weight decay 0.1, global batch 4096,
linear warmup over 10k steps then linear decay, global-norm clipping at 1.
Args: `--config=configs/pretrain.py:variant=B/16,dataset=imagenet2012`
(variant: a size/patch such as B/16, or any preset name).
"""
from vit_jax.configs import common


def get_config(arg=None):
  arg = common.parse_arg(arg, variant='B/16', dataset='imagenet2012',
                         epochs=300, num_train=1_281_167, label_smoothing=0.0,
                         lr=3e-3)
  config = common.base_config()
  config.model = common.model_from_variant(arg.variant)
  config.dataset = arg.dataset
  config.eval_split = 'validation'
  config.image_size = 224
  config.pp.train = 'inception_crop'
  config.pp.eval = 'resize_crop'

  config.batch_size = 4096
  config.eval_batch_size = 4096
  config.total_steps = arg.epochs * arg.num_train // config.batch_size
  config.log_every = 100
  config.eval_every = 5000
  config.checkpoint_every = 1000

  config.optimizer.name = 'adamw'
  config.optimizer.weight_decay = 0.1
  config.optimizer.grad_clip_norm = 1.0
  config.lr.base = arg.lr
  config.lr.warmup_steps = 10_000
  config.lr.decay = 'linear'
  config.label_smoothing = arg.label_smoothing
  return config
