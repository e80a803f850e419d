"""Shared helpers: small configs on the bundled digits, and the real MNIST folder when it exists.

Every test runs with ``jax_numpy_rank_promotion='raise'``, so that arrays named by their shapes
(``z_BxZ``) meet only arrays of the same rank unless a test or the code broadcasts on purpose.
"""
import importlib
import os
import pathlib
import sys
import tempfile

import jax
import pytest

from aelab import config as config_lib

ROOT = pathlib.Path(__file__).resolve().parents[1]
MNIST_DIR = ROOT.parent / 'shared' / 'data' / 'mnist'
CONFIG_NAMES = ('ae', 'deep_ae', 'sparse', 'dae', 'vae')

jax.config.update('jax_numpy_rank_promotion', 'raise')
# One persistent compilation cache for the whole suite (and its subprocesses): the many small runs of the
# same configs compile once.
CACHE_DIR = os.environ.setdefault('AELAB_TEST_CACHE', os.path.join(tempfile.gettempdir(), 'aelab-test-jax-cache'))


def forget_modules(package: str) -> None:
  """Drops ``package`` and its submodules from ``sys.modules``, so that a test's own ``my_lab`` folder (a
  user's plugin package) is imported from its path, not from another test's folder seen earlier in the same
  worker process."""
  for name in [m for m in sys.modules if m == package or m.startswith(package + '.')]:
    del sys.modules[name]
  importlib.invalidate_caches()


def load_config(name: str, arg: str | None = None):
  """``configs/<name>.py``'s ``get_config(arg)``, as ``--config=configs/<name>.py:arg`` would load it."""
  config = config_lib.load(str(ROOT / 'configs' / f'{name}.py') + (f':{arg}' if arg else ''))
  config.train.compilation_cache_dir = CACHE_DIR
  return config


def small(config, epochs: int = 3):
  """Few epochs, no figures, a 100-sample NLL: fast enough for the test suite."""
  config.train.update(num_epochs=epochs, figures_every=0)
  config.eval.nll_samples = 100
  return config


@pytest.fixture
def mnist_dir():
  if not (MNIST_DIR / 't10k-images-idx3-ubyte.gz').exists():
    pytest.skip(f'real MNIST not found at {MNIST_DIR}')
  return str(MNIST_DIR)
