"""The original's `models_lit.LitModel`: this package's LiT model
(`models/lit.py`) with the original's methods for loading its published
weights, tokenizer and preprocessing (gs://vit_models/lit)."""
import os

from vit_jax.checkpoint import npz
from vit_jax.models import lit as models_lit
from vit_jax.original import checkpoint
from vit_jax.original import preprocess

BASE_PATH = 'gs://vit_models/lit'
_VOCAB_EXTENSIONS = {'bert': 'txt', 'sentencepiece': 'model'}


class LitModel(models_lit.LitModel):
  """`models.lit.LitModel` with the original's `load_variables`,
  `vocab_path`, `get_tokenizer`, `get_pp` and `get_image_preprocessing`."""

  def load_variables(self, path=None, cache: bool = True):
    """{'params': ...} from `path`; by default MODEL_NAME.npz in the working
    directory, copied there from gs://vit_models/lit first (`cache`)."""
    if path is None:
      local = f'{self.model_name}.npz'
      path = local
      if not os.path.exists(local):
        path = f'{BASE_PATH}/{self.model_name}.npz'
        if cache:
          checkpoint.copy(path, local)
          path = local
    return {'params': npz.load(path)}

  @property
  def vocab_path(self) -> str:
    ext = _VOCAB_EXTENSIONS[self.pp['tokenizer_name']]
    return f'{BASE_PATH}/{self.model_name}.{ext}'

  def _config(self) -> dict:
    return dict(text_model=self.text_model, text=self.text, pp=self.pp,
                model_name=self.model_name)

  def get_tokenizer(self):
    """The tokenizer of `vocab_path`, checked against the text tower."""
    return models_lit.get_tokenizer(self._config(), self.vocab_path)

  def get_image_preprocessing(self, crop: bool = False):
    return preprocess.PreprocessImages(size=self.pp['size'], crop=crop)

  def get_pp(self, crop: bool = False):
    """A `tf.data.Dataset.map` function (`preprocess.get_pp`)."""
    return preprocess.get_pp(
        tokenizer_name=self.pp['tokenizer_name'], vocab_path=self.vocab_path,
        max_len=self.pp['max_len'], size=self.pp['size'], crop=crop)
