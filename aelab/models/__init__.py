"""Model families, one module each (a plugin), looked up by name with importlib.

``model.name`` is a family of this package (``ae``, ``vae``, ...: :func:`available`) or the dotted path of a
module outside it with the same contract (``my_lab.my_family``). Each module says everything about itself
(``aelab/models/family.py``): its config section with defaults and meanings, its validation, ``HYPERPARAMS``
and ``family(config, data_shape) -> Family``.
"""
import functools
import importlib
import pkgutil
from types import ModuleType
from typing import Sequence

import ml_collections

from aelab.errors import ConfigError
from aelab.models import common
from aelab.models.family import DEFAULT_PENALTIES, REQUIRED, Family, HyperparamFields, Section

__all__ = ['Family', 'available', 'builds_on', 'check_sections', 'get', 'hyperparam_fields', 'hyperparams',
           'likelihoods', 'module', 'penalties', 'sections', 'validate']

_NOT_FAMILIES = ('common', 'family')


@functools.cache
def available() -> tuple[str, ...]:
  """Names of the model families in this package."""
  return tuple(sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith('_')
                      and m.name not in _NOT_FAMILIES))


def module(name: str) -> ModuleType:
  """The family module of ``model.name``: ``aelab.models.<name>``, or the module at a dotted path outside
  aelab. Raises ConfigError (one line) for an unknown name, a module that fails to import, or one that
  lacks the contract of ``aelab/models/family.py``."""
  if not isinstance(name, str) or not name:
    raise ConfigError(f'model.name={name!r} is not valid; choose one of {available()} or a module path.')
  if '.' not in name:
    if name not in available():
      raise ConfigError(f'model.name={name!r} is not valid; choose one of {available()}, or give the '
                        'dotted path of your own family module (my_lab.my_family).')
    name = f'aelab.models.{name}'
  try:
    found = importlib.import_module(name)
  except Exception as e:  # the user's module: any error in it is reported as a config error
    missing = isinstance(e, ModuleNotFoundError) and e.name and name.startswith(e.name)
    todo = 'put the folder that holds it on PYTHONPATH' if missing else 'fix the module'
    raise ConfigError(f'model.name={name!r} could not be imported ({type(e).__name__}: '
                      f'{(str(e).splitlines() or [""])[0]}): {todo}.') from e
  missing = [attr for attr in REQUIRED if not hasattr(found, attr)]
  if missing:
    raise ConfigError(f'model.name={name!r} is no model family: the module lacks {", ".join(missing)} '
                      '(see aelab/models/family.py for the contract).')
  return found


def builds_on(name: str) -> list[str]:
  """The families ``name`` extends, transitively, the most basic first, then ``name`` itself."""
  order = []
  for parent in getattr(module(name), 'BUILDS_ON', ()):
    order += [n for n in builds_on(parent) if n not in order]
  return order + [name]


def sections(name: str) -> dict[str, Section]:
  """``{section name: {field: (default, meaning)}}`` of family ``name`` and the families it builds on."""
  found = {}
  for family_name in builds_on(name):
    m = module(family_name)
    if m.SECTION is not None:
      found[m.SECTION] = dict(m.CONFIG)
  return found


def penalties(name: str) -> tuple[str, ...]:
  """The ``penalty.name`` values family ``name`` defines (its ``PENALTIES``; ``none`` and ``l1`` by default)."""
  return tuple(getattr(module(name), 'PENALTIES', DEFAULT_PENALTIES))


def likelihoods(name: str) -> tuple[str, ...]:
  """The ``model.likelihood`` values family ``name`` and those it builds on accept (their ``LIKELIHOODS``;
  all of ``common.LIKELIHOODS`` by default)."""
  allowed = common.LIKELIHOODS
  for family_name in builds_on(name):
    allowed = tuple(v for v in allowed if v in getattr(module(family_name), 'LIKELIHOODS', allowed))
  return allowed


def check_sections(config: ml_collections.ConfigDict) -> None:
  """Raises ConfigError when ``config`` lacks a section that its ``model.name`` needs."""
  name = config.model.name
  for section in sections(name):
    if not isinstance(config.get(section), ml_collections.ConfigDict):
      raise ConfigError(f'model.name={name} needs the config section {section}, which this config lacks: start '
                        f'from aelab.config.base({name!r}) or call aelab.config.with_family(config).')


def validate(config: ml_collections.ConfigDict) -> None:
  """Runs the ``validate`` of ``config.model.name`` and of the families it builds on (the most basic
  first). Raises ConfigError for a missing section or a bad value."""
  check_sections(config)
  for family_name in builds_on(config.model.name):
    module(family_name).validate(config)


def get(config: ml_collections.ConfigDict, data_shape: int | Sequence[int]) -> Family:
  """The ``Family`` of ``config.model.name`` bound to ``config`` and one example's ``data_shape``.
  Raises ConfigError for an unknown family, ValueError for a shape the model cannot take."""
  return module(config.model.name).family(config, data_shape)


def hyperparam_fields(name: str) -> HyperparamFields:
  """``{hp key: dotted config field}`` of family ``name``: the fields a sweep may vary in one program."""
  return dict(module(name).HYPERPARAMS)


def field(config: ml_collections.ConfigDict, dotted: str):
  """The value of a dotted config field, e.g. ``field(config, 'vae.kl_weight')``."""
  node = config
  for part in dotted.split('.'):
    node = node[part]
  return node


def hyperparams(config: ml_collections.ConfigDict) -> dict[str, float]:
  """The numeric hyperparameters that reach the family's pure functions as traced arrays (``hp``)."""
  return {k: float(field(config, f)) for k, f in hyperparam_fields(config.model.name).items()}
