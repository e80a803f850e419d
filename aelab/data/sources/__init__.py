"""Data sources as plugins: one module per source, named by ``config.data.name``.

A source module (``aelab/data/sources/npz.py`` is a complete example to copy) defines:

- ``SECTION``: the name of its own config section ``config.data.<SECTION>``, or None;
- ``CONFIG``: ``{field: (default, meaning)}``, the fields of that section (empty without one);
- ``PATH``: what ``data.path`` must name for it (shown in errors), or None when it reads no path;
- ``validate(data_config) -> None``: raises ``aelab.errors.ConfigError`` naming a bad field;
- ``adapt(config) -> config``: changes a whole config for this data (e.g. csv: an identity output), or
  returns it as it is;
- ``read(data_config) -> aelab.data.arrays.Read``: the one reader that the in-memory path
  (``aelab.data.load``) and the streamed path (``aelab.data.stream``) both use;
- optionally ``fingerprint(data_config) -> dict``: a JSON-able identity of the data it reads, stored in a
  run's config.json so that a rerun on other data is refused (``aelab.data.fingerprint``; the default for a
  source with a ``PATH``: sizes, times and content hashes of ``data.path`` and ``data.test_path``,
  ``aelab/data/fingerprints.py``).

``data.name`` is a built-in source (:func:`available`), the dotted path of a module with this contract
(``data.name=my_lab.my_source``, its folder on ``PYTHONPATH``), or else a tensorflow-datasets name
(``mnist``, ``fashion_mnist``, ...; read by ``aelab.data.sources.tfds``).
"""
from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

from aelab.errors import ConfigError

BUILTIN = ('digits', 'idx', 'npz', 'csv', 'images', 'tfds', 'shapes2d', 'superposition', 'dsprites', 'shapes3d',
           'mpi3d', 'cars3d', 'activations')
CONTRACT = ('SECTION', 'CONFIG', 'PATH', 'validate', 'adapt', 'read')


def available() -> tuple[str, ...]:
  """The built-in sources' names (``tfds`` stands for every tensorflow-datasets name)."""
  return BUILTIN


def module(name: str) -> ModuleType:
  """The source module that ``data.name=name`` reads with.

  Raises:
    ConfigError: ``name`` is no string, a dotted path that cannot be imported, or a module that lacks
      part of the contract (the message lists what is missing).
  """
  if not isinstance(name, str) or not name:
    raise ConfigError(f'data.name={name!r}: give one of {BUILTIN}, a tfds dataset name or a module path.')
  if name in BUILTIN:
    return importlib.import_module(f'aelab.data.sources.{name}')
  if '.' not in name:
    return importlib.import_module('aelab.data.sources.tfds')
  try:
    found = importlib.import_module(name)
  except ImportError as e:
    raise ConfigError(f'data.name={name!r} is no importable module ({e}); put the folder that holds '
                      f'{name.split(".")[0]}/ on PYTHONPATH, or give one of {BUILTIN}.') from e
  missing = [attr for attr in CONTRACT if not hasattr(found, attr)]
  if missing:
    raise ConfigError(f'data.name={name!r}: module {found.__file__} lacks {missing} of a source\'s contract '
                      f'{CONTRACT} (see aelab/data/sources/npz.py).')
  return found


def defaults() -> dict[str, dict[str, Any]]:
  """``{section: {field: default}}`` of every built-in source that has a section (for the base config)."""
  return {m.SECTION: {k: d for k, (d, _) in m.CONFIG.items()} for m in map(module, BUILTIN) if m.SECTION}


def schema() -> dict[str, dict[str, tuple[Any, str]]]:
  """``{'data': shared fields, 'data.<section>': {field: (default, meaning)}}``: the fields every source shares
  (:data:`SHARED`) and every built-in source's section (for the docs)."""
  return {'data': dict(SHARED), **{f'data.{m.SECTION}': dict(m.CONFIG) for m in map(module, BUILTIN) if m.SECTION}}


# The fields of config.data that every source shares (a source's own fields are in its section).
SHARED: dict[str, tuple[Any, str]] = {
    'name': ('digits', "the source: a built-in one, a tensorflow-datasets name ('mnist', ...) or a module path"),
    'path': (None, 'the file or directory a file source reads (idx, npz, csv, images)'),
    'test_path': (None, 'an optional separate test file (npz, csv); without it data.test_fraction is held out'),
    'test_fraction': (0.2, 'the held-out fraction of a source with a single split, in (0, 1)'),
    'split_seed': (0, 'the seed of the held-out split (jax.random.permutation)'),
    'binarize': ('none', "images: 'none', 'static' (threshold once) or 'dynamic' (Bernoulli sample per batch)"),
    'binarize_threshold': (0.5, "the threshold of data.binarize='static', in [0, 1]"),
    'standardize': (True, 'tabular features: subtract the train mean and divide by the train std'),
    'max_train_examples': (0, 'keep the first N training examples after the split; 0: all'),
    'max_test_examples': (0, 'keep the first N test examples; 0: all'),
    'stream': (False, 'stream the training images from storage through grain instead of holding them in memory'),
    'stream_above_mb': (1024.0, 'stream automatically when reading the data in memory would take more MB '
                        '(stored bytes x 3 copies: file, split, device); 0: never'),
    'stream_chunk': (16, 'batches per compiled call when streaming'),
    'stream_workers': (2, 'grain reader threads when streaming'),
}


def config_defaults() -> dict[str, Any]:
  """``config.data`` of the base config: the shared fields and every built-in source's section with their
  defaults (a default of None is an optional string, ``config_dict.placeholder(str)``)."""
  from ml_collections import config_dict  # noqa: PLC0415
  optional = lambda fields: {k: config_dict.placeholder(str) if v is None else v for k, v in fields.items()}  # noqa: E731
  return {**optional({k: d for k, (d, _) in SHARED.items()}), **{s: optional(f) for s, f in defaults().items()}}
