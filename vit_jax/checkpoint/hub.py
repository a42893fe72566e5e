"""`hf-hub:ORG/NAME[@REVISION][/FILE]` checkpoint names -> local files.

The published weights moved to the Hugging Face hub (timm's and
transformers' copies) when gs://vit_models stopped serving anonymous reads.
A name with timm's own `hf-hub:` prefix may stand wherever a checkpoint path
does; `resolve` turns it into a file in huggingface_hub's cache, downloading
it with that library (resumable, its progress bar, `HF_TOKEN` for gated
repos) unless it is cached. Without FILE the name means the repo's
`model.safetensors`; its `config.json` (the architecture) is fetched too
(`resolve_config`, which `torch_config.read_beside` calls for
hub names).

The environment is read when a name is resolved, not when huggingface_hub
was imported: `HF_HUB_OFFLINE=1` (cache only), `HF_HUB_CACHE` / `HF_HOME`.
Failures raise `HubError`, one sentence naming the repo and what to do.
"""
import os
import re
from typing import NamedTuple, Optional

import huggingface_hub
# `import huggingface_hub` alone does not load its `constants` (2.4.0).
from huggingface_hub import constants as hub_constants
from huggingface_hub import errors as hub_errors

PREFIX = 'hf-hub:'
DEFAULT_FILE = 'model.safetensors'
CONFIG_FILE = 'config.json'
_NAME = re.compile(r'^hf-hub:(?P<repo>[\w.-]+/[\w.-]+)(@(?P<rev>[\w.-]+))?'
                   r'(/(?P<file>.+))?$')


class HubError(ValueError):
  """A hub name that cannot be resolved; the message says what to do."""


class HubName(NamedTuple):
  repo_id: str
  revision: Optional[str]
  filename: Optional[str]  # None: the repo's model.safetensors.

  def __str__(self):
    return (f'{PREFIX}{self.repo_id}' +
            (f'@{self.revision}' if self.revision else '') +
            (f'/{self.filename}' if self.filename else ''))


def is_hub_name(path) -> bool:
  return isinstance(path, str) and path.startswith(PREFIX)


def parse(name: str) -> HubName:
  match = _NAME.match(name)
  if not match:
    raise HubError(f'{name!r} is not a hub name: write '
                   'hf-hub:ORG/NAME[@REVISION][/FILE], e.g. '
                   'hf-hub:timm/vit_base_patch16_224.augreg_in21k.')
  return HubName(match['repo'], match['rev'], match['file'])


def _env_true(name: str) -> bool:
  return os.environ.get(name, '').strip().upper() in ('1', 'ON', 'YES',
                                                      'TRUE')


def _cache_dir() -> Optional[str]:
  if os.environ.get('HF_HUB_CACHE'):
    return os.environ['HF_HUB_CACHE']
  if os.environ.get('HF_HOME'):
    return os.path.join(os.environ['HF_HOME'], 'hub')
  return None  # huggingface_hub's default (~/.cache/huggingface/hub).


def _offline() -> bool:
  return _env_true('HF_HUB_OFFLINE') or hub_constants.HF_HUB_OFFLINE


_LINK_TEXT = re.compile(r'^(\.\./)+blobs/[0-9a-f]{40,64}$')


def _followed(path: str) -> str:
  """The blob a snapshot entry names.

  huggingface_hub makes snapshot entries symlinks into blobs/; a cache that
  was copied without symlink support can hold, instead, small files whose
  text is the link's target. Those are followed here, so such a copy still
  reads as the cache it was.
  """
  if os.path.islink(path) or os.path.getsize(path) > 200:
    return path
  with open(path, 'rb') as f:
    text = f.read().decode('ascii', 'replace').strip()
  if _LINK_TEXT.match(text):
    target = os.path.normpath(os.path.join(os.path.dirname(path), text))
    if os.path.isfile(target):
      return target
  return path


def _what_to_do(name: HubName, e: Exception) -> str:
  """One sentence for a huggingface_hub failure."""
  repo = name.repo_id
  if isinstance(e, hub_errors.GatedRepoError):
    return (f'hub repo {repo!r} is gated: accept its terms on '
            f'https://huggingface.co/{repo} and set HF_TOKEN to a token of '
            'that account (or run `hf auth login`).')
  if isinstance(e, hub_errors.RepositoryNotFoundError):
    return (f'hub repo {repo!r} does not exist (or is private: set '
            'HF_TOKEN); check the name, e.g. '
            'hf-hub:timm/vit_base_patch16_224.augreg_in21k.')
  if isinstance(e, hub_errors.RevisionNotFoundError):
    return (f'hub repo {repo!r} has no revision {name.revision!r}; use a '
            'branch, tag or commit of the repo, or leave @REVISION out.')
  if isinstance(e, hub_errors.LocalEntryNotFoundError):
    where = _cache_dir() or hub_constants.HF_HUB_CACHE
    if _offline():
      return (f'{name} is not in the hub cache {where} and HF_HUB_OFFLINE '
              'is set: download it once online (unset HF_HUB_OFFLINE), or '
              'point HF_HUB_CACHE at a cache that holds it.')
    return (f'cannot reach the Hugging Face hub for {name}, and it is not '
            f'in the hub cache {where}: check the network (or proxy), or '
            'download it elsewhere and copy the cache.')
  if isinstance(e, (hub_errors.EntryNotFoundError,
                    hub_errors.RemoteEntryNotFoundError)):
    return (f'hub repo {repo!r} has no file {name.filename or DEFAULT_FILE!r}'
            '; name one it has as hf-hub:ORG/NAME/FILE (this project reads '
            '.safetensors and .npz checkpoints).')
  first_line = (str(e).strip().splitlines() or [''])[0]
  return f'{name}: {type(e).__name__}: {first_line}'


def _download(name: HubName, filename: str) -> str:
  path = huggingface_hub.hf_hub_download(
      name.repo_id, filename, revision=name.revision, cache_dir=_cache_dir(),
      local_files_only=_offline(), library_name='vit_jax')
  return _followed(path)


def _fetch(name: HubName, filename: str) -> str:
  try:
    return _download(name, filename)
  except (hub_errors.HfHubHTTPError, hub_errors.EntryNotFoundError,
          OSError, ValueError) as e:
    raise HubError(_what_to_do(name, e)) from None


def is_safetensors(path: str) -> bool:
  """Whether a hub name means a .safetensors file (the default file)."""
  filename = parse(path).filename
  return filename is None or filename.endswith('.safetensors')


def resolve(path: str) -> str:
  """The local file of a hub name (downloaded if needed); other paths as
  they are."""
  if not is_hub_name(path):
    return path
  name = parse(path)
  return _fetch(name, name.filename or DEFAULT_FILE)


def is_cached(path: str) -> bool:
  """Whether the hub cache holds a hub name's file (so it loads offline)."""
  name = parse(path)
  found = huggingface_hub.try_to_load_from_cache(
      name.repo_id, name.filename or DEFAULT_FILE, cache_dir=_cache_dir(),
      revision=name.revision)
  return isinstance(found, str)


def resolve_config(path: str) -> Optional[str]:
  """The local config.json of a hub name's repo, None where the repo has
  none (then the tensors' shapes alone describe the model)."""
  return resolve_beside(path, CONFIG_FILE)


def resolve_beside(path: str, filename: str) -> Optional[str]:
  """The local copy of file `filename` of a hub name's repo (a tokenizer
  model, the config), None where the repo has none."""
  name = parse(path)
  try:
    return _download(name, filename)
  except (hub_errors.HfHubHTTPError, hub_errors.EntryNotFoundError,
          OSError):
    return None
