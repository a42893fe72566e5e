"""Supervised image classification: the `classify` task (`tasks.py`).

A ViT, hybrid or Mixer (`steps.create_model`), trained from scratch or
fine-tuned from `config.pretrained_path` (or an AugReg name), on labelled
images (`input_pipeline`) with softmax cross-entropy (`steps`), evaluated by
top-1 accuracy on the eval split and, with `config.fewshot`, by few-shot
linear probes (`fewshot`).
"""
import jax
import ml_collections
import numpy as np

from vit_jax.checkpoint import augreg
from vit_jax.data import input_pipeline
from vit_jax.evaluators import classification
from vit_jax.evaluators import fewshot
from vit_jax.train import optim
from vit_jax.train import steps
from vit_jax.train import validate


def _split_arrays(config, split: str, limit: int):
  """The first `limit` examples of `split`, eval-preprocessed, as arrays."""
  config = ml_collections.ConfigDict(config.to_dict())
  config.eval_split = split
  images, labels, count = [], [], 0
  for batch in input_pipeline.eval_iterator(config):
    mask = batch['mask']
    images.append(batch['image'][mask])
    labels.append(batch['label'][mask])
    count += int(mask.sum())
    if count >= limit:
      break
  return np.concatenate(images)[:limit], np.concatenate(labels)[:limit]


def _fewshot_evaluators(config, model):
  """`config.fewshot` (shots, num_train, num_test) -> [its evaluator], or
  none when `shots` is empty.

  The few-shot pool is the start of the train split, the test set the start
  of the eval split; both go through eval preprocessing.
  """
  c = config.get('fewshot')
  if not c or not c.shots:
    return []
  return [fewshot.FewShotEvaluator(
      *_split_arrays(config, config.train_split, c.num_train),
      *_split_arrays(config, config.eval_split, c.num_test),
      shots=tuple(c.shots), seed=config.seed, model=model)]


class ClassifyTask:
  """`loop.Task` for a classifier config (configs/default.py and kin):
  config.task='classify'."""

  name = 'classify'

  def __init__(self, config: ml_collections.ConfigDict):
    self.config = augreg.resolve(config)  # An AugReg name -> pretrained_path.

  def check(self, workdir: str) -> None:
    del workdir
    self.info = validate.check_classifier(self.config)

  def prepare(self, workdir: str) -> None:
    del workdir  # No files beyond the loop's.
    self.model = steps.create_model(self.config, self.info.num_classes)
    self.tx = optim.make_optimizer(self.config)
    self.evaluators = [classification.SplitEvaluator(self.config, self.model),
                       *_fewshot_evaluators(self.config, self.model)]

  def init_state(self, mesh, key):
    return steps.init_state(self.config, self.model, self.tx, key, mesh)

  def train_step(self, key):
    return steps.make_train_step(self.config, self.model, self.tx, key)

  def train_batches(self, start_step: int):
    return input_pipeline.train_iterator(
        self.config, start_step=start_step, process_index=jax.process_index(),
        process_count=jax.process_count())

  def describe(self):
    config = self.config
    data = config.dataset + (f' ({config.data_dir})' if config.data_dir
                             else '')
    return config.model.get('model_name', 'model'), data
