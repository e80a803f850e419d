"""Shared helpers: small configs on the bundled digits, and the real MNIST folder when it exists."""
import importlib.util
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
MNIST_DIR = ROOT.parent / 'shared' / 'data' / 'mnist'
CONFIG_NAMES = ('ae', 'deep_ae', 'sparse', 'dae', 'vae')


def load_config(name: str, arg: str | None = None):
  """``configs/<name>.py``'s ``get_config(arg)``, as ``--config=configs/<name>.py:arg`` would load it."""
  spec = importlib.util.spec_from_file_location(f'config_{name}', ROOT / 'configs' / f'{name}.py')
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


def small(config, epochs: int = 3):
  """Few epochs, no per-epoch figures, a 100-sample NLL: fast enough for the test suite."""
  config.train.update(num_epochs=epochs, figures_every=0)
  config.eval.nll_samples = 100
  return config


@pytest.fixture
def mnist_dir():
  if not (MNIST_DIR / 't10k-images-idx3-ubyte.gz').exists():
    pytest.skip(f'real MNIST not found at {MNIST_DIR}')
  return str(MNIST_DIR)
