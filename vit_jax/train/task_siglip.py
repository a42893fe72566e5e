"""SigLIP: image-text training with the pairwise sigmoid loss, the `siglip`
task (`SiglipTask`, `tasks.py`; configs/siglip.py).

SigLIP (Zhai et al., arXiv 2303.15343) scores every image of the global
batch against every text: logits = t * zimg @ ztxt.T + b, with t = exp of a
learned log-temperature and b a learned bias (the two-tower model's
`t` and `b`, `models/two_towers.py`), and each pair is its own binary
question, "does this text go with this image?": +1 on the diagonal (the
true pairs), -1 everywhere else,

  loss = -sum_ij log_sigmoid(label_ij * logit_ij) / n,

as big_vision's `trainers/proj/image_text/siglip.py` computes it. Unlike
the softmax loss (LiT, `task_lit.py`) no row or column is normalised, so
the loss of a pair needs no other pair.

Across devices: the batch is split over the mesh's data axes; each device
keeps its n/d image embeddings and gathers the text embeddings of the whole
batch (`sharded_sigmoid_loss`: a sharding constraint, so XLA all-gathers
ztxt only: n x D floats, never the images or their activations), computes
its n/d rows of the logits (n/d x n floats, and as many for their gradient)
and the sum of their loss terms; the sums are added over the devices. Per
device that is n*D + 2*n*n/d floats beyond the towers' activations: for
n = 32768 over d = 256 devices and D = 1152, 151 MB of embeddings and 34 MB
of logits. big_vision passes the text embeddings around a ring of devices
instead (n/d x D at a time, d steps with a ppermute each), which saves the
n x D gather at the cost of d sequential steps; here the gather is one
collective XLA schedules, and at this project's batch sizes its memory is
small next to the towers'.

Everything else is LiT's task (`task_lit.LitTask`): the data (captions from
class-name templates or real pairs), the tokenizer, the image tower from
`image_checkpoint` ('random': from scratch), locked unless
`model.train_image` (SigLiT: locked; from scratch: trained), the zero-shot
and retrieval evaluators (here with sigmoid probabilities:
`evaluators/zeroshot.py`), and the step every task shares
(`steps.make_step`).
"""
import jax
import jax.numpy as jnp

from vit_jax.train import sharding
from vit_jax.train import steps
from vit_jax.train import task_lit


def sigmoid_loss(zimg, ztxt, t, b):
  """-sum log_sigmoid(labels * (t * zimg @ ztxt.T + b)) / n, labels +1 on
  the diagonal (image i with text i) and -1 elsewhere."""
  logits = zimg @ ztxt.T * t + b
  n = logits.shape[0]
  labels = 2 * jnp.eye(n, logits.shape[1], dtype=logits.dtype) - 1
  return -jnp.sum(jax.nn.log_sigmoid(labels * logits)) / n


def sharded_sigmoid_loss(zimg, ztxt, t, b, mesh):
  """`sigmoid_loss` with the images' rows kept where they are on `mesh` and
  the text embeddings gathered (see the module docstring)."""
  zimg = jax.lax.with_sharding_constraint(zimg, sharding.batch_sharding(mesh))
  ztxt = jax.lax.with_sharding_constraint(ztxt, sharding.replicated(mesh))
  return sigmoid_loss(zimg, ztxt, t, b)


def make_loss(model, mesh) -> steps.Loss:
  """`steps.Loss`: the sigmoid loss of a batch of 'image' and 'tokens' (the
  step key's second half drives dropout), the temperature and the bias."""

  def loss(params, batch, rng):
    zimg, ztxt, out = model.apply(
        {'params': params}, images=batch['image'], tokens=batch['tokens'],
        train=True, rngs={'dropout': jax.random.split(rng)[1]})
    return (sharded_sigmoid_loss(zimg, ztxt, out['t'], out['b'], mesh),
            {'train/temperature': out['t'][0], 'train/bias': out['b'][0]})

  return loss


class SiglipTask(task_lit.LitTask):
  """`loop.Task` for a SigLIP config (configs/siglip.py):
  config.task='siglip'. LiT's task with the sigmoid loss."""

  name = 'siglip'

  def check_model(self) -> None:
    bias = self.config.model.get('bias_init')
    if bias is None:
      raise ValueError(
          "config.model.bias_init is not set: the 'siglip' task learns a bias "
          'b on the logits; set it (SigLIP: -10), or train the softmax loss '
          "(task='lit').")

  def loss(self) -> steps.Loss:
    return make_loss(self.model, self.mesh)
