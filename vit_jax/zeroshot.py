r"""Zero-shot classification with a LiT or SigLIP model: classes named, not
trained.

Each class name is put into prompt templates ("a photo of a {}.", ...), the
text embeddings of its prompts are averaged (then re-normalised), and an
image is assigned the class whose embedding is nearest (largest dot product
with the image embedding), as in the LiT paper. For single images a LiT
model prints the predicted class and its softmax probability; a SigLIP model
(one with a bias `b`) prints every label's own sigmoid probability,
sigmoid(t * zimg . ztxt + b), as SigLIP defines it (labels are not
exclusive).

  # SigLIP from the Hugging Face hub (transformers' SiglipModel repository:
  # its config.json, weights and spiece.model are all it needs):
  python -m vit_jax.zeroshot --checkpoint=hf-hub:google/siglip-base-patch16-224 \
      --labels=dog,cat,car a.jpg b.png
  # A big_vision SigLIP file, by preset (vocabulary: the preset's pp.vocab):
  python -m vit_jax.zeroshot --model=SigLIP-B_16-224 \
      --checkpoint=webli_en_b16_224_63724782.npz \
      --vocab=cc_en.32000/sentencepiece.model --labels=dog,cat a.jpg

  # A published LiT model on an image folder (DIR/test/<class>/<images>):
  python -m vit_jax.zeroshot --model=LiT-B16B --checkpoint=LiT-B16B.npz \
      --vocab=LiT-B16B.txt --dataset=imagefolder --data_dir=DIR --split=test
  # A locked-image tuning run (vit_jax/train/lit.py) on Fashion-MNIST:
  python -m vit_jax.zeroshot --workdir=WORKDIR --dataset=fashion_mnist
  # Single images (classes: --classes=dog,cat, or a workdir's dataset's):
  python -m vit_jax.zeroshot --workdir=WORKDIR a.jpg b.png

The model comes from a preset (`--model`), a JSON file (`--config_json=
FILE[:KEY]`, an object with the LitModel fields or holding them under
'model'), or a tuning workdir (its config.json, params.npz and vocab.txt).
Datasets are those of the trainer (`input_pipeline`): 'fashion_mnist',
'imagefolder' or a prepared TFDS dataset; class names come from the dataset
(folder names with '_' read as spaces) unless `--classes` gives them; a
workdir's prompts are its run's `zeroshot_templates`.
Bad inputs end with one `error:` line on stderr and exit status 1.
"""
import json
import os
import sys
import time
from typing import Optional

from absl import app
from absl import flags
import ml_collections
import numpy as np

from vit_jax import inference
from vit_jax.workdir import layout
# The library half of this tool is `evaluators.zeroshot` and
# `inference.load_lit_model`; their names are used, and stay importable
# (`zeroshot.load`), from here.
from vit_jax.evaluators.zeroshot import (  # pylint: disable=unused-import,g-importing-member
    FASHION_MNIST_CLASSES, TEMPLATES, class_embeddings, classify,
    dataset_class_names, embed_images, embed_texts, make_eval_step,
    retrieval_recall, zero_shot_accuracy)
from vit_jax.inference import load_lit_model as load  # pylint: disable=unused-import,g-importing-member

# What `--workdir` reads of a locked-image tuning run (train/lit.py).
WORKDIR_FILES = {'config': layout.CONFIG,
                 'params': layout.PARAMS, 'vocab': layout.VOCAB}


def _dataset_config(size: int) -> ml_collections.ConfigDict:
  """The input pipeline's config for evaluating `--dataset` at `size`."""
  return ml_collections.ConfigDict(dict(
      dataset=FLAGS.dataset, data_dir=FLAGS.data_dir, train_split=FLAGS.split,
      eval_split=FLAGS.split, image_size=size, eval_batch_size=FLAGS.batch_size,
      pp=dict(train='resize', eval='resize')))


def _batches(config, limit: Optional[int]):
  from vit_jax.data import input_pipeline  # pylint: disable=g-import-not-at-top
  seen = 0
  for batch in input_pipeline.eval_iterator(config):
    if limit is not None:
      batch['mask'] = batch['mask'] & (
          np.arange(seen, seen + len(batch['mask'])) < limit)
      if not batch['mask'].any():
        return
    seen += len(batch['mask'])
    yield batch


def _run_config(path: str) -> ml_collections.ConfigDict:
  with open(path) as f:
    return ml_collections.ConfigDict(json.load(f))


FLAGS = flags.FLAGS


def main(argv):
  paths = argv[1:]
  try:
    if FLAGS.workdir:
      files = {k: os.path.join(FLAGS.workdir, v)
               for k, v in WORKDIR_FILES.items()}
      model, params, tokenizer, config = inference.load_lit_model(
          checkpoint_path=files['params'], vocab_path=files['vocab'],
          config_json=files['config'])
    else:
      if not FLAGS.checkpoint:
        raise ValueError('Pass --workdir, or --checkpoint (with --vocab and '
                         'one of --model / --config_json unless it is a '
                         'transformers SigLIP repository).')
      model, params, tokenizer, config = inference.load_lit_model(
          checkpoint_path=FLAGS.checkpoint, vocab_path=FLAGS.vocab,
          model_name=FLAGS.model, config_json=FLAGS.config_json)
    data = None if paths else _dataset_config(config.pp.size)
    # A tuning run's own classes and prompts are the defaults for its workdir.
    run = _run_config(files['config']) if FLAGS.workdir else None
    names = (FLAGS.classes.split(',') if FLAGS.classes else
             dataset_class_names(data) if data else
             dataset_class_names(run) if run and run.get('dataset') else None)
    if not names:
      raise ValueError('Pass --classes=NAME,NAME,... to classify image files.')
    templates = (FLAGS.templates.split('|') if FLAGS.templates else
                 run.zeroshot_templates if run else TEMPLATES)
    t0 = time.time()
    classes = class_embeddings(model, params, tokenizer, names, templates)
    if paths:
      images = np.stack([inference.load_image(p, config.pp.size)
                         for p in paths])
    else:
      metrics = zero_shot_accuracy(model, params, classes,
                                   _batches(data, FLAGS.limit))
  except (OSError, ValueError) as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(1)
  if paths:
    probs, predicted = classify(model, params, images, classes)
    for path, p, i in zip(paths, probs, predicted):
      if config.get('bias_init') is None:
        print(f'{path}\t{names[i]}\t{p[i]:.4f}')
      else:  # SigLIP: every label's own probability.
        print('\t'.join([path] + [f'{n}={q:.4f}' for n, q in zip(names, p)]))
    return
  print(f'zero-shot accuracy {metrics["eval/accuracy"]:.4f} on '
        f'{metrics["eval/num_examples"]} images of {FLAGS.dataset}:'
        f'{FLAGS.split}, {len(names)} classes, {len(templates)} templates '
        f'({time.time() - t0:.1f} s)')


def define_flags():
  flags.DEFINE_string('workdir', None, 'A locked-image tuning workdir (its '
                      'config.json, params.npz and vocab.txt).')
  flags.DEFINE_string('model', None, 'LiT preset, e.g. LiT-B16B.')
  flags.DEFINE_string('config_json', None, 'LiT model config as FILE[:KEY].')
  flags.DEFINE_string('checkpoint', None, 'LiT / SigLIP .npz file, or a '
                      "transformers SigLIP repository's model.safetensors or "
                      'hub name (hf-hub:ORG/NAME).')
  flags.DEFINE_string('vocab', None, 'Its vocabulary: NAME.txt (BERT) or '
                      'NAME.model (SentencePiece); default: spiece.model / '
                      'tokenizer.model beside the checkpoint.')
  flags.DEFINE_string('dataset', 'fashion_mnist', "'fashion_mnist', "
                      "'imagefolder' or a prepared TFDS dataset.")
  flags.DEFINE_string('data_dir', None, 'Image folder root / TFDS data dir.')
  flags.DEFINE_string('split', 'test', 'Split to classify.')
  flags.DEFINE_integer('limit', None, 'Classify only the first N images.')
  flags.DEFINE_integer('batch_size', 256, 'Images per batch.')
  flags.DEFINE_string('classes', None, 'Comma-separated class names (default:'
                      " the dataset's).")
  flags.DEFINE_alias('labels', 'classes')
  flags.DEFINE_string('templates', None, "'|'-separated prompts with {} for "
                      'the class name (default: zeroshot.TEMPLATES).')


if __name__ == '__main__':
  define_flags()
  app.run(main)
