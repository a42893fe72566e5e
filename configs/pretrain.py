"""Pretraining with the paper's recipe (Dosovitskiy et al., Sec. 4.1, App. B).

Adam (b1=0.9, b2=0.999), decoupled weight decay 0.1, global batch 4096,
linear warmup over 10k steps then linear decay, global-norm clipping at 1.
Args: `--config=configs/pretrain.py:variant=B/16,dataset=imagenet2012`
(variant: a size/patch such as B/16, or any preset name).

AugReg's settings ("How to train your ViT?",
vit_jax/configs/augreg_settings.py), named as in its file names:
`aug=none|light1|light2|medium1|medium2|strong1|strong2` (RandAugment + Mixup
levels), `wd=` (AdamW weight decay), `do=` (dropout; default: the preset's),
`sd=` (stochastic depth), or all at once in the file-name form
`augreg=aug_medium1-wd_0.1-do_0.0-sd_0.0` (also takes `lr_`). E.g.
`configs/pretrain.py:variant=B/16,aug=medium1,wd=0.1,do=0.0,sd=0.0,lr=0.001`.
The defaults are the paper's plain recipe (aug none, wd 0.1, no stochastic
depth).
"""
from vit_jax.configs import augreg_settings
from vit_jax.configs import common


def get_config(arg=None):
  arg = common.parse_arg(arg, variant='B/16', dataset='imagenet2012',
                         epochs=300, num_train=1_281_167, label_smoothing=0.0,
                         lr=3e-3, aug='none', wd=0.1, do=-1.0, sd=0.0,
                         augreg='')
  if arg.augreg:
    arg.update(augreg_settings.parse(arg.augreg))
  config = common.base_config()
  config.model = common.with_vit_options(
      common.model_from_variant(arg.variant))
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
  config.optimizer.grad_clip_norm = 1.0
  augreg_settings.apply(
      config, aug=arg.aug, wd=arg.wd, sd=arg.sd,
      do=(config.model.get('transformer', {}).get('dropout_rate', 0.0)
          if arg.do < 0 else arg.do))
  config.lr.base = arg.lr
  config.lr.warmup_steps = 10_000
  config.lr.decay = 'linear'
  config.label_smoothing = arg.label_smoothing
  return config
