"""Model families, one module each (``ae``, ``vae``, ``aae``), looked up by name with importlib.

Each module exports ``build(config, data_shape) -> model`` (``data_shape``: one example's shape, an int
``D`` meaning ``(D,)``), ``init`` and the pure functions made from the model: ``make_objective`` (or
``make_train_step``, see ``aelab/models/aae.py``), ``make_eval``, ``make_reconstruct``, ``make_encode``,
``make_decode``, and where defined ``make_sample`` (prior samples) and ``make_log_weights`` (importance
weights, for the NLL); see ``aelab/models/ae.py``.
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
      'kl_warmup_steps': float(config.model.kl_warmup_steps),
      'free_bits': float(config.model.free_bits),
      'adversarial_weight': float(config.aae.adversarial_weight),
  }
