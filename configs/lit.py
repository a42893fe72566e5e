"""Locked-image tuning (LiT): a text tower learns to match a frozen ViT.

  python main.py --config=configs/lit.py --workdir=WORKDIR \
      --config.image_checkpoint=notebooks/models/fashion_mnist_vit/params.npz

Offline default: Fashion-MNIST images paired with captions made from their
class names and `captions.templates` ("a picture of a {}." ...); the image
tower is the ViT of configs/fashion_mnist_vit.py, trained here and shipped
in notebooks/models/fashion_mnist_vit/ (any published-layout ViT .npz
whose architecture is `model.image` works). Only the text tower, the projection
head(s) and the temperature train, with the symmetric contrastive loss; the
image tower runs frozen, in eval mode. Each eval reports zero-shot test
accuracy with the prompts of `zeroshot_templates` (chance: 10%), none of
which is a training template.
`image_checkpoint='random'` keeps the randomly initialised image tower (for
tests and baselines). Without `vocab_path` a BERT WordPiece vocabulary of
the caption and prompt words is written to WORKDIR/vocab.txt.

Real image-text pairs instead of the templates (vit_jax/data/captions.py):
- `captions.folder=DIR`: an image folder with captions, either
  DIR/metadata.jsonl (Hugging Face imagefolder: lines of {"file_name":
  "x/1.jpg", "text": "a caption" or [several]}) or a caption file beside
  each image (x/1.jpg + x/1.txt, one caption a line).
- `captions.tfds=NAME`: a prepared TFDS dataset, split `captions.split`,
  its image at `captions.image_key` and caption(s) at `captions.text_key`
  (default: coco_captions' 'captions/text'); `captions.data_dir` is its
  TFDS data dir.
Each step takes one caption per image, picked from (seed, position). The
last `captions.holdout` pairs are held out: each eval reports image->text
and text->image recall@1 among them (eval/retrieval_*). `dataset` then only
names the zero-shot eval (its eval split); set it to '' for none:

  python main.py --config=configs/lit.py --workdir=WORKDIR \
      --config.image_checkpoint=VIT.npz --config.captions.folder=DIR \
      --config.captions.holdout=500 --config.dataset=
"""
import os

import ml_collections

from vit_jax.configs import common
from vit_jax.evaluators import zeroshot


def get_config(arg=None):
  del arg
  config = common.base_config('lit')  # vit_jax/train/task_lit.py runs it.
  image = common.config_file(os.path.join(
      os.path.dirname(__file__), 'fashion_mnist_vit.py')).model
  config.model = ml_collections.ConfigDict(dict(
      model_name='LiT-fmnist', image=image.to_dict(), text_model='bert',
      text=dict(config=dict(
          hidden_size=128, intermediate_dim=256, num_hidden_layers=2,
          num_attention_heads=2, vocab_size=128, max_length=16,
          dropout_rate=0.0)),
      pp=dict(tokenizer_name='bert', max_len=16, size=28),
      # No image head: the locked tower's own features, as the LiT paper's
      # best setting; the text head projects to their width.
      out_dim=(None, image.hidden_size), temperature_init=10.0))
  config.captions.templates = (
      'a product photo of a {}.', 'a picture of a {}.',
      'an image of the {}.', 'a {} in grayscale.',
      'a small photo of a {}.', 'this is a {}.')
  config.zeroshot_templates = zeroshot.TEMPLATES

  config.dataset = 'fashion_mnist'
  config.image_size = 28
  config.pp.train = 'resize'
  config.pp.flip = True
  config.pp.eval = 'resize'

  config.total_steps = 1500
  config.batch_size = 128
  config.eval_batch_size = 1000
  config.log_every = 100
  config.eval_every = 500
  config.checkpoint_every = 500
  config.optimizer.weight_decay = 1e-4
  config.lr.base = 1e-3
  config.lr.warmup_steps = 100
  config.lr.decay = 'cosine'
  return config
