"""Contractive autoencoder (Rifai et al. 2011): one sigmoid layer, cross-entropy, penalty weight 0.1 on
the squared Frobenius norm of the encoder's Jacobian ||J_f(x)||_F^2.

  python -m aelab.main --config=configs/cae.py --workdir=/tmp/cae                    # bundled digits, offline
  python -m aelab.main --config=configs/cae.py:idx=../shared/data/mnist --workdir=/tmp/cae_mnist
  python -m aelab.main --config=configs/cae.py --config.model.activation=relu --config.model.hidden="(128,)" \\
      --config.model.code_activation=identity --workdir=/tmp/cae_relu        # any encoder: jax.vjp / jax.jvp

With a sigmoid MLP encoder the penalty is computed in closed form (Rifai et al., Eq. 4); any other encoder
uses exact Jacobian-vector products. train/penalty is the unweighted batch-mean ||J||_F^2.
"""
from aelab import config as aelab_config


def get_config(arg=None):
  config = aelab_config.set_data(aelab_config.base('ae'), arg)
  small = config.data.name in ('digits', 'npz', 'csv')
  config.model.update(hidden=(), latent_dim=64 if small else 256, activation='sigmoid',
                      code_activation='sigmoid', likelihood='bernoulli')
  config.penalty.update(name='contractive', weight=0.1)
  config.train.update(num_epochs=40 if small else 20, batch_size=64 if small else 128)
  return aelab_config.adapt_to_data(config)
