"""Image-text pairs for locked-image tuning: a captions folder or TFDS dataset.

`load(config)` reads `config.captions` (configs/lit.py) into `Pairs`: a
random-access image source (see `data/sources.py`) and every example's
captions. One of:

- `captions.folder`, an image folder with captions, in either layout:
  * `FOLDER/metadata.jsonl` (the Hugging Face `imagefolder` layout): one
    JSON object a line, `{"file_name": "dogs/1.jpg", "text": "a dog."}`,
    the file name relative to FOLDER; "text" is a caption or a list of
    them, and a file may have several lines.
  * a caption file beside each image, `dogs/1.jpg` + `dogs/1.txt`
    (img2dataset's output and most captioned-image sets): each non-empty
    line of it is a caption. Images are found anywhere under FOLDER.
  Every image must have a caption and decode; examples are in file name
  order.
- `captions.tfds`, a prepared TFDS dataset with an image feature
  (`captions.image_key`) and a text feature (`captions.text_key`, '/' for
  nesting: 'captions/text' is coco_captions' list of five), split
  `captions.split`. Prepared as ArrayRecord, images are read lazily;
  TFRecord (`tfds build`'s default) has no random access, so the split's
  encoded images are loaded into memory.

The last `captions.holdout` examples are not trained on: `split_holdout`
makes them the retrieval eval. Captions are tokenized once, on the host
(`tokenize`); each training example takes one of its image's captions,
picked by a hash of (seed, stream position) like the augmentation: the
same on resumption and for any process count.
"""
import dataclasses
import json
import os
from typing import List, Optional, Sequence, Tuple

import numpy as np
import tensorflow_datasets as tfds

from vit_jax.data import input_pipeline
from vit_jax.data import sources

_METADATA = 'metadata.jsonl'
# Keeps the caption choice independent of the augmentation's random numbers.
_CAPTION_SALT = np.uint64(0x6C6954)
# Captions read and tokenized per call (tokenizers build whole tensors).
_CHUNK = 4096


@dataclasses.dataclass(frozen=True)
class Pairs:
  """Images (`images.fetch(indices)` -> 'path' or 'encoded') and captions."""
  images: sources.Source
  captions: List[List[str]]


def _listed(items: Sequence[str], what: str) -> str:
  shown = '\n  '.join(items[:20])
  return f'{len(items)} {what} (up to 20 listed):\n  {shown}'


def _image_files(folder: str) -> List[str]:
  """Image files under `folder`, relative to it, sorted."""
  found = []
  for root, _, names in os.walk(folder):
    found += [os.path.relpath(os.path.join(root, n), folder) for n in names
              if n.lower().endswith(sources.IMAGE_EXTENSIONS)]
  return sorted(found)


def _metadata_captions(folder: str) -> dict:
  """{file name: [captions]} of FOLDER/metadata.jsonl."""
  captions = {}
  with open(os.path.join(folder, _METADATA)) as f:
    for number, line in enumerate(f, 1):
      if not line.strip():
        continue
      try:
        row = json.loads(line)
        name, text = row['file_name'], row['text']
      except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f'{folder}/{_METADATA} line {number}: not a JSON '
                         'object with "file_name" and "text" '
                         f'({type(e).__name__}: {e}).') from e
      texts = [text] if isinstance(text, str) else list(text)
      captions.setdefault(os.path.normpath(name), []).extend(
          t.strip() for t in texts if t.strip())
  return captions


def _sidecar_captions(folder: str, images: List[str]) -> dict:
  """{image: [non-empty lines of its .txt]} for the images that have one."""
  captions = {}
  for image in images:
    path = os.path.join(folder, os.path.splitext(image)[0] + '.txt')
    if os.path.isfile(path):
      with open(path, encoding='utf-8') as f:
        captions[image] = [t.strip() for t in f if t.strip()]
  return captions


def folder_pairs(folder: str) -> Pairs:
  """The pairs of an image folder with captions (module docstring).

  Raises:
    FileNotFoundError: no such folder, or a metadata file name that is not
      a file.
    ValueError: no images, images without captions, or images that do not
      decode; each listed.
  """
  if not os.path.isdir(folder):
    raise FileNotFoundError(f'Captions folder {folder!r} does not exist.')
  if os.path.isfile(os.path.join(folder, _METADATA)):
    captions = _metadata_captions(folder)
    missing = [n for n in captions
               if not os.path.isfile(os.path.join(folder, n))]
    if missing:
      raise FileNotFoundError(
          f'{folder}/{_METADATA}: ' + _listed(missing, 'missing file(s)'))
    images = sorted(captions)
    unlisted = sorted(set(_image_files(folder)) - set(images))
    if unlisted:
      raise ValueError(f'{folder}/{_METADATA} has no caption for ' +
                       _listed(unlisted, 'image(s)'))
  else:
    images = _image_files(folder)
    captions = _sidecar_captions(folder, images)
  if not images:
    raise ValueError(
        f'No {"/".join(sources.IMAGE_EXTENSIONS)} images in {folder!r}.')
  uncaptioned = [i for i in images if not captions.get(i)]
  if uncaptioned:
    raise ValueError(
        f'Images in {folder!r} need captions ({_METADATA}, or NAME.txt beside '
        'NAME.jpg); ' + _listed(uncaptioned, 'have none'))
  paths = np.array([os.path.join(folder, i) for i in images], object)
  sources.check_decodable(list(paths))
  return Pairs(sources.Source(0, len(paths), lambda i: {'path': paths[i]}),
               [captions[i] for i in images])


def _texts(example, text_key: str) -> List[str]:
  """The non-empty captions at `text_key` ('a/b': example['a']['b'])."""
  value = example
  for part in text_key.split('/'):
    value = value[part]
  values = [value] if isinstance(value, (bytes, str)) else list(value)
  texts = (v.decode('utf-8') if isinstance(v, bytes) else str(v)
           for v in values)
  texts = (t.strip() for t in texts)
  return [t for t in texts if t]


def _check_keys(builder, c) -> None:
  """Clear errors for feature keys the dataset does not have."""
  features = builder.info.features
  if c.image_key not in features:
    raise ValueError(f'TFDS dataset {c.tfds!r} has no image feature '
                     f'captions.image_key={c.image_key!r}; its features: '
                     f'{sorted(features)}.')
  feature = features
  for part in c.text_key.split('/') + [None]:
    if isinstance(feature, tfds.features.Sequence):
      feature = feature.feature
    if part is None or not isinstance(feature, tfds.features.FeaturesDict):
      break
    feature = feature[part] if part in feature.keys() else None
  if part is not None or not isinstance(feature, tfds.features.Text):
    raise ValueError(f'TFDS dataset {c.tfds!r} has no text feature '
                     f'captions.text_key={c.text_key!r}; its features: '
                     f'{builder.info.features}.')


def tfds_pairs(c) -> Pairs:
  """The pairs of split `c.split` of TFDS dataset `c.tfds` (`c`: captions).

  Raises:
    ValueError: unknown or unprepared dataset, missing split or feature
      keys, or examples without a caption.
  """
  try:
    builder = tfds.builder(c.tfds, data_dir=c.get('data_dir'))
  except tfds.core.DatasetNotFoundError as e:
    raise ValueError(f'Unknown TFDS dataset captions.tfds={c.tfds!r}.') from e
  if not builder.is_prepared():
    raise ValueError(f'TFDS dataset {c.tfds!r} is not prepared in '
                     f'{builder.data_dir}; run `tfds build {c.tfds} '
                     '--file_format=array_record --data_dir=DIR` first.')
  _check_keys(builder, c)
  if c.split not in builder.info.splits:
    raise ValueError(f'TFDS dataset {c.tfds!r} has no split {c.split!r}; '
                     f'its splits: {sorted(builder.info.splits)}.')
  decoders = {c.image_key: tfds.decode.SkipDecoding()}
  try:
    data = builder.as_data_source(c.split, decoders=decoders)
    examples = (e for start in range(0, len(data), _CHUNK)
                for e in data.__getitems__(
                    list(range(start, min(start + _CHUNK,
                                          len(data))))))
    encoded = None
  except NotImplementedError:  # TFRecord: one pass, into memory.
    examples = list(tfds.as_numpy(builder.as_dataset(c.split,
                                                     decoders=decoders)))
    encoded = np.array([e[c.image_key] for e in examples], object)
  captions = [_texts(e, c.text_key) for e in examples]
  empty = [str(i) for i, texts in enumerate(captions) if not texts]
  if empty:
    raise ValueError(f'TFDS dataset {c.tfds!r}: examples without a caption '
                     f'at {c.text_key!r}: ' + _listed(empty, 'examples'))

  def fetch(indices):
    if encoded is not None:
      return {'encoded': encoded[indices]}
    return {'encoded': np.array(
        [e[c.image_key] for e in data.__getitems__(indices.tolist())], object)}

  return Pairs(sources.Source(0, len(captions), fetch), captions)


def is_configured(config) -> bool:
  """Whether `config.captions` names image-text pairs (else: templates)."""
  return bool(config.captions.get('folder') or config.captions.get('tfds'))


def load(config) -> Pairs:
  """The pairs `config.captions` names (see the module docstring)."""
  c = config.captions
  if c.get('folder') and c.get('tfds'):
    raise ValueError('Set one of config.captions.folder and '
                     'config.captions.tfds, not both.')
  return folder_pairs(c.folder) if c.get('folder') else tfds_pairs(c)


def split_holdout(pairs: Pairs, holdout: int) -> Tuple[Pairs, Optional[Pairs]]:
  """(the first examples, the last `holdout` or None when it is 0)."""
  n = pairs.images.num_examples
  if not 0 <= holdout < n:
    raise ValueError(f'config.captions.holdout={holdout} must be in [0, {n}) '
                     f'for {n} image-text pairs: some are needed to train.')
  if not holdout:
    return pairs, None
  keep = n - holdout
  fetch = pairs.images.fetch
  return (Pairs(sources.Source(0, keep, fetch), pairs.captions[:keep]),
          Pairs(sources.Source(0, holdout, lambda i: fetch(i + keep)),
                pairs.captions[keep:]))


@dataclasses.dataclass(frozen=True)
class Tokens:
  """Every caption's tokens [captions, max_len]; example i's captions are
  rows offsets[i] to offsets[i + 1]."""
  tokens: np.ndarray
  offsets: np.ndarray

  def first(self) -> np.ndarray:
    """Each example's first caption's tokens."""
    return self.tokens[self.offsets[:-1]]

  def pick(self, seed: int, indices: np.ndarray,
           positions: np.ndarray) -> np.ndarray:
    """One caption's tokens for each example `indices` at stream
    `positions`, chosen by a hash of (seed, position)."""
    start, count = self.offsets[indices], np.diff(self.offsets)[indices]
    state = input_pipeline.splitmix64(
        np.array([seed], np.uint64) ^ _CAPTION_SALT)
    bits = input_pipeline.splitmix64(state ^ positions.astype(np.uint64))
    return self.tokens[start + (bits % count.astype(np.uint64)).astype(
        np.int64)]


def tokenize(tokenizer, captions: List[List[str]]) -> Tokens:
  """`Tokens` of every caption, tokenized in chunks."""
  flat = [t for texts in captions for t in texts]
  tokens = np.concatenate([tokenizer(flat[i:i + _CHUNK])
                           for i in range(0, len(flat), _CHUNK)])
  offsets = np.cumsum([0] + [len(texts) for texts in captions])
  return Tokens(tokens, offsets)
