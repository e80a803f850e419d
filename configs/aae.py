"""Adversarial autoencoder (Makhzani et al. 2016) on a 2-D latent with a mixture of 10 Gaussians prior.

  python -m aelab.main --config=configs/aae.py --workdir=/tmp/aae                 # bundled digits, offline
  python -m aelab.main --config=configs/aae.py:idx=../shared/data/mnist --workdir=/tmp/aae_mnist
  python -m aelab.main --config=configs/aae.py --config.aae.prior=gaussian --workdir=/tmp/aae_gauss
  # the plain autoencoder of the same size, for comparison:
  python -m aelab.main --config=configs/aae.py:idx=../shared/data/mnist --config.model.name=ae --workdir=/tmp/ae2d

Reconstruction phase: Bernoulli cross-entropy (``model.likelihood``) with ``config.optimizer``;
regularization phase: discriminator (``aae.disc_hidden``) and encoder, each with its own Adam.
figures/latent_scatter.png shows the test codes over prior samples. Where the data source sets another
latent size (shapes2d and dsprites: 10, as Locatello et al. 2019), the prior is N(0, I).
"""
from aelab import config as aelab_config


def get_config(arg=None):
  config = aelab_config.set_data(aelab_config.base('aae'), arg)
  small = config.data.name in ('digits', 'npz', 'csv')
  config.model.update(hidden=(256, 128) if small else (512, 256), latent_dim=2, activation='relu',
                      likelihood='bernoulli')
  config.aae.update(prior='mixture', disc_hidden=(128, 128) if small else (256, 256), disc_learning_rate=1e-3,
                    gen_learning_rate=1e-3, adversarial_weight=1.0, mixture_components=10, mixture_radius=4.0,
                    mixture_std=0.5)
  config.train.update(num_epochs=40 if small else 20, batch_size=64 if small else 100)
  config = aelab_config.adapt_to_data(config)
  if config.model.latent_dim != 2:  # a source's setting (shapes2d, dsprites: 10 latents): the circle is 2-D
    config.aae.prior = 'gaussian'
  return config
