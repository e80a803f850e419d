"""Model families, one module each (``ae``, ``vae``, ``aae``), looked up by name with importlib.

Each module exports ``HYPERPARAMS`` (hp key -> config field) and ``family(config, data_shape) ->
Family`` (``aelab/models/family.py``): init, objective or its own update, eval, reconstruct, encode,
decode, and where defined sample, log-weights and the prior.
"""
import importlib
import pkgutil
from types import ModuleType
from typing import Sequence

import ml_collections

from aelab.models.family import Family, HyperparamFields

__all__ = ['Family', 'available', 'get', 'hyperparam_fields', 'hyperparams', 'module']

_NOT_FAMILIES = ('common', 'family')


def available() -> list[str]:
  """Names of the model families in this package."""
  return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith('_')
                and m.name not in _NOT_FAMILIES)


def module(name: str) -> ModuleType:
  """Imports ``aelab.models.<name>``. Raises ValueError listing the known families."""
  if name not in available():
    raise ValueError(f'Unknown model.name {name!r}; choose one of {available()}.')
  return importlib.import_module(f'aelab.models.{name}')


def get(config: ml_collections.ConfigDict, data_shape: int | Sequence[int]) -> Family:
  """The ``Family`` of ``config.model.name`` bound to ``config`` and one example's ``data_shape``.
  Raises ValueError for an unknown family or a shape the model cannot take."""
  return module(config.model.name).family(config, data_shape)


def hyperparam_fields(name: str) -> HyperparamFields:
  """``{hp key: dotted config field}`` of family ``name``: the fields a sweep may vary in one program."""
  return dict(module(name).HYPERPARAMS)


def field(config: ml_collections.ConfigDict, dotted: str):
  """The value of a dotted config field, e.g. ``field(config, 'model.kl_weight')``."""
  node = config
  for part in dotted.split('.'):
    node = node[part]
  return node


def hyperparams(config: ml_collections.ConfigDict) -> dict[str, float]:
  """The numeric hyperparameters that reach the family's pure functions as traced arrays (``hp``)."""
  return {k: float(field(config, f)) for k, f in hyperparam_fields(config.model.name).items()}
