"""Model families, one module each (``ae``, ``vae``), looked up by name with importlib.

Each module exports ``build(config, data_dim) -> flax Model`` and the pure functions made from it:
``make_objective``, ``make_eval`` and ``make_reconstruct`` (see ``aelab/models/ae.py``).
"""
import importlib
import pkgutil
from types import ModuleType

import ml_collections


def available() -> list[str]:
  """Names of the model families in this package."""
  return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith('_')
                and m.name != 'common')


def get(name: str) -> ModuleType:
  """Imports ``aelab.models.<name>``. Raises ValueError listing the known families."""
  if name not in available():
    raise ValueError(f'Unknown model.name {name!r}; choose one of {available()}.')
  return importlib.import_module(f'aelab.models.{name}')


def hyperparams(config: ml_collections.ConfigDict) -> dict[str, float]:
  """The numeric hyperparameters that reach the objective as traced arrays (``hp``).

  Every model receives the same keys, so one compiled step serves a sweep over any of them.
  """
  return {
      'kl_weight': float(config.model.kl_weight),
      'penalty_weight': float(config.penalty.weight),
      'sparsity_target': float(config.penalty.target),
      'corruption_std': float(config.corruption.std),
      'corruption_rate': float(config.corruption.rate),
  }
