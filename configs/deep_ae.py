"""Deep MLP autoencoder with cross-entropy reconstruction (Bernoulli likelihood on grey levels).

  python -m aelab.main --config=configs/deep_ae.py --workdir=/tmp/deep_ae
  python -m aelab.main --config=configs/deep_ae.py:idx=../shared/data/mnist --workdir=/tmp/deep_ae_mnist

784-1000-500-250-30 after Hinton & Salakhutdinov (2006) on 28x28 images; 64-256-128-64-16 on digits.
"""
from aelab import config as aelab_config


def get_config(arg=None):
  config = aelab_config.set_data(aelab_config.base('ae'), arg)
  small = config.data.name in ('digits', 'npz', 'csv')
  config.model.update(hidden=(256, 128, 64) if small else (1000, 500, 250),
                      latent_dim=16 if small else 30, activation='relu', likelihood='bernoulli')
  config.train.update(num_epochs=40 if small else 20, batch_size=64 if small else 128)
  return aelab_config.adapt_to_data(config)
