"""Fine-tuning a published checkpoint at a higher resolution (paper App. B.1).

SGD with momentum 0.9, no weight decay, global-norm clipping at 1, cosine
decay, batch 512, 384 px: the same patch size gives a longer sequence, so
`load_pretrained` resizes the position embeddings in 2-D.
Args: `--config=configs/finetune.py:model=ViT-B_16,dataset=cifar10`, then
`--config.pretrained_path=ViT-B_16.npz`. From a timm / transformers ViT, the
model is the one the file describes: `model=FILE.safetensors` and
`--config.pretrained_path=FILE.safetensors`; the same for a big_vision ViT
(`model=FILE.npz`, `--config.pretrained_path=FILE.npz`). From the Hugging Face
hub, `model=hf-hub:timm/vit_base_patch16_224.augreg_in21k` is both: the model
its repo describes, and the checkpoint (`config.pretrained_path`). A SigLIP
(`model=hf-hub:google/siglip-base-patch16-224`, or a big_vision SigLIP
`model=FILE.npz`) gives its image tower (MAP pooling) and a new head. Layer-wise
lr decay (`--config.optimizer.layer_decay=0.75`) and an EMA of the params
(`--config.ema_decay=0.9999`) are options (vit_jax/train/optim.py, ema.py).
"""
from vit_jax.configs import common


def get_config(arg=None):
  arg = common.parse_arg(arg, model='ViT-B_16', dataset='cifar10', steps=10_000,
                         image_size=384, lr=0.03)
  config = common.base_config()
  config.model = common.with_vit_options(common.model_from_variant(arg.model))
  if arg.model.startswith('hf-hub:'):
    config.pretrained_path = arg.model
  config.dataset = arg.dataset
  config.image_size = arg.image_size
  config.pp.train = 'inception_crop'
  config.pp.eval = 'resize'

  config.total_steps = arg.steps
  config.batch_size = 512
  config.eval_batch_size = 512
  config.log_every = 50
  config.eval_every = 1000
  config.checkpoint_every = 1000

  config.optimizer.name = 'sgd'
  config.optimizer.momentum = 0.9
  config.optimizer.weight_decay = 0.0
  config.optimizer.grad_clip_norm = 1.0
  config.lr.base = arg.lr
  config.lr.warmup_steps = 500
  config.lr.decay = 'cosine'
  return config
