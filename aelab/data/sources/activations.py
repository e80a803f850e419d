"""``data.name=activations``: a model's activations saved as shards, ``data.path=DIR``: a folder of ``.npy``
or ``.safetensors`` files, each ``tokens x d_in`` (float32, float16 or bfloat16), read as one table of
tokens in the shards' name order, without loading the folder.

Rows are read in place with ``os.pread`` (:class:`Shards`; an ``.npy`` through ``aelab.data.sources.npz``'s
``NpyFile``, a ``.safetensors`` from its JSON header): a memory map would count every page it touches as
resident memory, so a shuffled epoch over a 4 GB folder would look like a 4 GB process. A streamed run
(``data.stream``, or more than ``data.stream_above_mb`` MB) shuffles the tokens of all shards together with
grain (``aelab.data.stream.epoch_batches``: one seeded permutation of every token of the folder).

``data.activations.test_fraction`` of the tokens (a seeded choice, ``data.split_seed``) are held out for
evaluation and kept in memory (cap them with ``data.max_test_examples``). Tokens are not standardized per
feature; with ``data.activations.normalize`` every token is multiplied by one fixed scale ``s`` so that the
mean squared norm of the tokens is ``d_in`` (``s = sqrt(d_in / mean ||x||^2)`` over
``data.activations.scale_tokens`` tokens drawn with ``data.split_seed``; SAELens's
``expected_average_only_in``, Anthropic's April 2024 update), or by ``data.activations.scale`` when that is
set. The scale goes into summary.json as ``data/activation_scale`` and ``python -m aelab.export`` folds it
into the exported weights (:func:`activation_scale`).

A bfloat16 ``.npy`` is the ``'<V2'`` array that ``np.save`` writes for ``ml_dtypes.bfloat16``. A shard of
another width or dtype than the first, or one that cannot be read, is a ``DataError`` naming the file.
"""
from __future__ import annotations

import json
import os
import pathlib
import struct
import weakref
from typing import Any

import ml_dtypes
import numpy as np

from aelab.data import arrays
from aelab.data.sources.npz import NpyFile
from aelab.errors import ConfigError, DataError

SECTION = 'activations'
CONFIG: dict[str, tuple[Any, str]] = {
    'test_fraction': (0.01, 'the held-out fraction of the tokens, for evaluation, in (0, 1)'),
    'normalize': (False, 'multiply the tokens by one fixed scale so that their mean squared norm is d_in'),
    'scale': (0.0, 'that scale when > 0; 0: estimated on data.activations.scale_tokens tokens'),
    'scale_tokens': (65536, 'tokens sampled (seeded by data.split_seed) to estimate the scale'),
}
PATH = 'a folder of .npy or .safetensors shards, each tokens x d_in (float32, float16 or bfloat16)'
SUFFIXES = ('.npy', '.safetensors')
SAFETENSORS_DTYPES = {'F32': np.dtype(np.float32), 'F16': np.dtype(np.float16),
                      'BF16': np.dtype(ml_dtypes.bfloat16)}
BFLOAT16 = np.dtype(ml_dtypes.bfloat16)


def validate(data_config: Any) -> None:
  """Raises ConfigError for a field of ``data.activations`` out of range."""
  s = arrays.section(data_config, SECTION, CONFIG)
  if not isinstance(s['test_fraction'], (int, float)) or not 0 < s['test_fraction'] < 1:
    raise ConfigError(f'data.activations.test_fraction={s["test_fraction"]!r} must lie in (0, 1), e.g. 0.01.')
  if not isinstance(s['scale'], (int, float)) or not s['scale'] >= 0 or not np.isfinite(s['scale']):
    raise ConfigError(f'data.activations.scale={s["scale"]!r} must be a number >= 0 (0: estimated).')
  if not isinstance(s['scale_tokens'], int) or s['scale_tokens'] < 1:
    raise ConfigError(f'data.activations.scale_tokens={s["scale_tokens"]!r} must be an integer >= 1.')


def adapt(config: Any) -> Any:
  """Activations are real vectors: an identity output and an MSE likelihood (a Gaussian one for a family
  that needs a normalized likelihood, see ``aelab.config.adapt_to_data``)."""
  config.model.output_activation = 'identity'
  config.model.likelihood = 'mse'
  return config


def read(data_config: Any) -> arrays.Read:
  """The folder's tokens as one split (``data.activations.test_fraction`` of them held out), not
  standardized, scaled per ``data.activations.normalize``; ``extras['evaluators']`` writes the scale into
  summary.json. Raises DataNotFoundError for a missing folder, DataError for a folder without shards, or a
  shard that is damaged or of another width or dtype (naming it)."""
  shards = Shards(arrays.required_path(data_config, PATH))
  shards.scale = activation_scale(data_config, shards)
  record = lambda ctx: {'data/activation_scale': shards.scale}  # noqa: E731
  return arrays.Read(arrays.Split(shards, shards.where), None, 'tabular', standardize=False,
                     extras={'evaluators': (record,)}, streams=True,
                     test_fraction=arrays.section(data_config, SECTION, CONFIG)['test_fraction'])


def activation_scale(data_config: Any, shards: Shards | None = None) -> float:
  """The factor the tokens are multiplied by: 1 without ``data.activations.normalize``, else
  ``data.activations.scale`` if > 0, else ``sqrt(d_in / mean ||x||^2)`` over ``scale_tokens`` tokens drawn
  with ``data.split_seed`` (the same number every time for the same folder)."""
  s = arrays.section(data_config, SECTION, CONFIG)
  if not s['normalize']:
    return 1.0
  if s['scale'] > 0:
    return float(s['scale'])
  shards = shards or Shards(arrays.required_path(data_config, PATH))
  rng = np.random.default_rng(data_config.get('split_seed') or 0)
  rows = np.sort(rng.choice(len(shards), min(len(shards), s['scale_tokens']), replace=False))
  x = shards.raw(rows).astype(np.float64)
  mean_sq = float(np.mean(np.sum(np.square(x), axis=1)))
  if not mean_sq > 0:
    raise DataError(f'{shards.where}: the sampled tokens are all zero; data.activations.normalize cannot scale '
                    'them (set it False).')
  return float(np.sqrt(shards.dim / mean_sq))


def stored_megabytes(data_config: Any) -> float:
  """The tokens' size in memory (float32) in MB, from the shards' headers (for ``data.stream_above_mb``); 0
  when the folder cannot be read (reading it then says why)."""
  try:
    shards = Shards(arrays.required_path(data_config, PATH))
  except DataError:
    return 0.0
  return len(shards) * shards.dim * 4 / 2**20


class SafetensorsFile:
  """Random access to the rows of the one tensor of a ``.safetensors`` file (or its tensor named
  ``activations``), read with ``os.pread`` from the offsets of its JSON header (the format: an 8-byte
  little-endian header length, the header, then the data). Raises DataError for a damaged file."""

  def __init__(self, path: pathlib.Path):
    self.path = path
    size = os.path.getsize(path)
    with open(path, 'rb') as f:
      start = f.read(8)
      if len(start) < 8:
        raise DataError(f'{path}: {len(start)} bytes, too short for a .safetensors file: truncated or damaged.')
      (header_len,) = struct.unpack('<Q', start)
      if header_len > size - 8:
        raise DataError(f'{path}: its header says {header_len} bytes, the file has {size}: not .safetensors, '
                        'or truncated.')
      try:
        header = json.loads(f.read(header_len))
      except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f'{path}: the .safetensors header is no JSON ({e}): damaged or of another format.') from e
    name, info = self._tensor(header)
    if info.get('dtype') not in SAFETENSORS_DTYPES:
      raise DataError(f'{path}: tensor {name!r} of dtype {info.get("dtype")}; store F32, F16 or BF16.')
    self.dtype, self.shape = SAFETENSORS_DTYPES[info['dtype']], tuple(info['shape'])
    begin, end = info['data_offsets']
    self.start = 8 + header_len + begin
    self.row_bytes = int(np.prod(self.shape[1:])) * self.dtype.itemsize
    if end - begin != int(np.prod(self.shape)) * self.dtype.itemsize or self.start + end - begin > size:
      raise DataError(f'{path}: tensor {name!r} of shape {list(self.shape)} does not fit its bytes: truncated or '
                      'damaged.')
    self._fd = os.open(path, os.O_RDONLY)
    weakref.finalize(self, os.close, self._fd)

  def _tensor(self, header: dict) -> tuple[str, dict]:
    tensors = {k: v for k, v in header.items() if k != '__metadata__'}
    if len(tensors) == 1:
      return next(iter(tensors.items()))
    if 'activations' in tensors:
      return 'activations', tensors['activations']
    raise DataError(f'{self.path} holds tensors {sorted(tensors)}; a shard holds one tensor (tokens x d_in), or '
                    "one named 'activations'.")

  def __len__(self) -> int:
    return self.shape[0]

  def __getitem__(self, rows: np.ndarray) -> np.ndarray:
    buffer = b''.join(os.pread(self._fd, self.row_bytes, self.start + int(r) * self.row_bytes) for r in rows)
    return np.frombuffer(buffer, self.dtype).reshape(len(rows), *self.shape[1:])


def open_shard(path: pathlib.Path) -> NpyFile | SafetensorsFile:
  """One shard, its header checked (rows are read later). Raises DataError naming a damaged file."""
  try:
    with arrays.reading(f'activation shard {path}', PATH):
      shard = SafetensorsFile(path) if path.suffix == '.safetensors' else NpyFile(path)
  except DataError as e:
    raise DataError(str(e) if str(e).startswith('activation shard') else f'activation shard {e}') from e
  if isinstance(shard, NpyFile) and shard.dtype == np.dtype('V2'):
    shard.dtype = BFLOAT16  # what np.save writes for ml_dtypes.bfloat16
  return shard


class Shards(arrays.Reader):
  """The tokens of a folder of shards as one table: ``len`` (tokens of every shard), ``dim`` (``d_in``),
  ``read(rows_R)``: float32 ``R x d_in`` times ``scale``, checked finite; ``raw(rows_R)`` as stored.
  ``rows_read`` counts the tokens ``read`` has returned (the benchmark's count of what was read from disk).

  Raises DataError for a folder without shards, and naming the shard for one that is damaged, not 2-D, or
  of another width or dtype than the first."""

  def __init__(self, folder: pathlib.Path):
    if not folder.is_dir():
      raise DataError(f'{folder} is a file; data.name=activations reads {PATH}: give the folder.')
    paths = sorted(p for p in folder.iterdir() if p.suffix in SUFFIXES)
    self.where, self.scale, self.rows_read = f'activations {folder}', 1.0, 0
    if not paths:
      raise DataError(f'{folder} holds no .npy or .safetensors shards; expected {PATH}.')
    self.shards = [open_shard(p) for p in paths]
    first = self.shards[0]
    for path, shard in zip(paths, self.shards):
      _check_shard(path, shard, paths[0], first)
    self.dim, self.dtype = first.shape[1], first.dtype
    self.ends = np.cumsum([len(s) for s in self.shards])

  def __len__(self) -> int:
    return int(self.ends[-1])

  def raw(self, rows_R: np.ndarray) -> np.ndarray:
    """Tokens ``rows_R`` (ints in ``[0, len)``, in that order) as stored: ``R x d_in``."""
    rows_R = np.asarray(rows_R, np.int64)
    shard_R = np.searchsorted(self.ends, rows_R, side='right')
    local_R = rows_R - np.concatenate([[0], self.ends])[shard_R]
    out = np.empty((len(rows_R), self.dim), self.dtype)
    for s in np.unique(shard_R):
      at = np.flatnonzero(shard_R == s)
      out[at] = self.shards[s][local_R[at]]
    return out

  def read(self, rows_R: np.ndarray | None = None) -> tuple[np.ndarray, None]:
    rows_R = np.arange(len(self)) if rows_R is None else rows_R
    self.rows_read += len(rows_R)
    x = self.raw(rows_R).astype(np.float32)
    if self.scale != 1.0:
      x *= np.float32(self.scale)
    arrays.check_finite(x, self.where)
    return x, None


def _check_shard(path: pathlib.Path, shard: Any, first_path: pathlib.Path, first: Any) -> None:
  """Raises DataError naming ``path`` when its shard is not tokens x d_in of the first shard's width and dtype."""
  if len(shard.shape) != 2 or shard.shape[0] == 0:
    raise DataError(f'activation shard {path}: shape {list(shard.shape)}; a shard is tokens x d_in (2-D, '
                    'at least one token).')
  if shard.dtype not in SAFETENSORS_DTYPES.values():
    raise DataError(f'activation shard {path}: dtype {shard.dtype}; store float32, float16 or bfloat16.')
  if shard.shape[1] != first.shape[1]:
    raise DataError(f'activation shard {path}: d_in={shard.shape[1]}, but {first_path.name} has '
                    f'd_in={first.shape[1]}; every shard of the folder must have the same width.')
  if shard.dtype != first.dtype:
    raise DataError(f'activation shard {path}: dtype {shard.dtype}, but {first_path.name} has {first.dtype}; '
                    'save every shard of the folder in one dtype.')
