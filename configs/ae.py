"""Undercomplete MLP autoencoder with mean squared error.

  python -m aelab.main --config=configs/ae.py --workdir=/tmp/ae            # bundled digits, offline
  python -m aelab.main --config=configs/ae.py:idx=../shared/data/mnist --workdir=/tmp/ae_mnist
  python -m aelab.main --config=configs/ae.py:mnist --workdir=/tmp/ae_mnist  # tensorflow-datasets

The arg picks the data: digits (default), a tfds name, or idx=DIR / npz=FILE / csv=FILE.
"""
from aelab import config as aelab_config


def get_config(arg=None):
  config = aelab_config.set_data(aelab_config.base('ae'), arg)
  small = config.data.name in ('digits', 'npz', 'csv')
  config.model.update(hidden=(128,) if small else (512,), latent_dim=16 if small else 32,
                      activation='relu', likelihood='mse', output_activation='sigmoid')
  config.train.update(num_epochs=40 if small else 20, batch_size=64 if small else 128)
  return aelab_config.adapt_to_data(config)
