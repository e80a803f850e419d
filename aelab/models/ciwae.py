"""CIWAE: the combination importance weighted autoencoder (Rainforth et al. 2018, Tighter Variational Bounds are
Not Necessarily Better, Sec. 4).

The VAE of ``aelab/models/vae.py`` trained on a convex combination of the ELBO and the IWAE bound of the same
``K = vae.num_samples`` samples ``z_k ~ q(z|x)``:

``CIWAE(beta) = beta * 1/K sum_k log w_k + (1 - beta) * log (1/K sum_k w_k)``

with ``beta = hp['ciwae_beta']`` (``ciwae.beta``, in [0, 1]; 1 is the ELBO estimated with ``K`` samples, 0 the
IWAE bound). The log-weights are the VAE's; the bound is ``miwae.ciwae_bound``. Metrics: ``loss``,
``neg_iwae``, ``neg_elbo``.
"""
import dataclasses
from typing import Sequence

import ml_collections

from aelab.errors import check
from aelab.models import miwae, vae
from aelab.models.family import Family

SECTION = 'ciwae'
CONFIG = {'beta': (0.5, 'beta of CIWAE = beta ELBO + (1 - beta) IWAE, in [0, 1] (Rainforth et al. 2018)')}
BUILDS_ON = ('vae',)
PENALTIES = ('none',)
HYPERPARAMS = {**vae.HYPERPARAMS, 'ciwae_beta': 'ciwae.beta'}


def validate(config: ml_collections.ConfigDict) -> None:
  """Checks ``config.ciwae`` (``vae.validate`` has run). Raises ConfigError naming the field."""
  b = config.ciwae.beta
  check(0 <= b <= 1, f'ciwae.beta={b} must lie in [0, 1] (1: the ELBO, 0: the IWAE bound).')
  miwae.check_bound_only(config)


def family(config: ml_collections.ConfigDict, data_shape: int | Sequence[int]) -> Family:
  """The CIWAE's ``Family``: the VAE's, trained on ``CIWAE(beta)`` of ``K = vae.num_samples`` samples."""
  fam = vae.family(config, data_shape)
  objective = miwae.make_bound_objective(fam.log_weights, 1, config.vae.num_samples,
                                         lambda log_w_1xKxB, hp: miwae.ciwae_bound(log_w_1xKxB[0], hp['ciwae_beta']))
  return dataclasses.replace(fam, objective=objective)
