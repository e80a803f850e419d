"""InfoVAE with an MMD divergence, the MMD-VAE (Zhao et al. 2019, InfoVAE: Balancing Learning and Inference in
Variational Autoencoders, Eq. 6).

The VAE of ``aelab/models/vae.py`` whose loss adds the MMD between the aggregate posterior ``q(z)`` and the
prior ``p(z) = N(0, I)`` and reweights the KL:

``loss = mean(recon) + (kl_weight - alpha) * KL + (alpha + lambda - 1) * MMD^2(q(z), p(z))``

with ``alpha = hp['info_alpha']`` (``info_vae.alpha``), ``lambda = hp['info_lambda']`` (``info_vae.lambda_``)
and ``kl_weight = 1`` (the default) giving the paper's Eq. 6 exactly, as pythae's ``INFOVAE_MMD``. ``alpha = 1``
is the MMD-VAE (no KL term). ``MMD^2`` is the unbiased estimate between the batch's reparameterized samples
``z ~ q(z|x)`` and as many draws of ``N(0, I)`` (``aelab.nn.losses.mmd``; pythae's term is ``B`` times it), with
the kernel of ``info_vae.kernel`` and scale ``C = 2 * latent_dim * sigma^2``. The model, its ELBO, NLL and
samples are the VAE's.
"""
import dataclasses
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import ml_collections

from aelab.errors import check, check_choice
from aelab.nn import losses
from aelab.models import vae, wae
from aelab.models.family import Family

SECTION = 'info_vae'
CONFIG = {
    'alpha': (1.0, 'alpha of Zhao et al. 2019, Eq. 6: the KL weighs kl_weight - alpha (1: the MMD-VAE, no KL)'),
    'lambda_': (1000.0, 'lambda of Zhao et al. 2019, Eq. 6: the MMD weighs alpha + lambda - 1'),
    'kernel': ('imq', "the MMD's kernel: 'imq' (inverse multiquadratic) or 'rbf'"),
    'kernel_bandwidth': (1.0, 'sigma of the kernel scale C = 2 * latent_dim * sigma^2 (pythae convention)'),
}
BUILDS_ON = ('vae',)
HYPERPARAMS = {**vae.HYPERPARAMS, 'info_alpha': 'info_vae.alpha', 'info_lambda': 'info_vae.lambda_',
               'kernel_bandwidth': 'info_vae.kernel_bandwidth'}


def validate(config: ml_collections.ConfigDict) -> None:
  """Checks ``config.info_vae`` (``vae.validate`` has run). Raises ConfigError naming the field."""
  i = config.info_vae
  check_choice(i.kernel, tuple(losses.KERNELS), 'info_vae.kernel')
  check(i.kernel_bandwidth > 0, f'info_vae.kernel_bandwidth={i.kernel_bandwidth} (sigma) must be > 0.')
  check(i.alpha + i.lambda_ - 1 >= 0, f'info_vae.alpha + info_vae.lambda_ - 1 = {i.alpha + i.lambda_ - 1}: the '
        'MMD weight must be >= 0 (Zhao et al. 2019, Eq. 6).')
  check(config.vae.num_samples == 1 and config.vae.free_bits == 0, 'info_vae trains on one posterior sample '
        'without free bits: set vae.num_samples=1 and vae.free_bits=0.')
  vae.check_elbo_only(config)
  wae.check_mmd_batch(config)


def make_objective(model: vae.Model, config: ml_collections.ConfigDict) -> Callable:
  """``objective(params, x_BxD, key, hp) -> (loss, metrics)`` of Eq. 6 above, nats per example; the key's
  halves go to the VAE's sample (corruption, ``z ~ q(z|x)``) and to the prior draws of the MMD. Metrics:
  ``loss``, ``recon``, ``kl``, ``neg_elbo`` (``recon + KL``), ``mmd``."""
  kernel = config.info_vae.kernel

  def objective(params, x_BxD, key, hp):
    vae_key, prior_key = jax.random.split(key)
    recon, mean, log_var, z = vae.sample_terms(model, config, params, x_BxD, vae_key, hp)
    recon, kl = jnp.mean(recon), jnp.mean(losses.kl_standard_normal(mean, log_var))
    divergence = wae.mmd_to_prior(z, prior_key, kernel, hp['kernel_bandwidth'])
    alpha = hp['info_alpha']
    loss = recon + (hp['kl_weight'] - alpha) * kl + (alpha + hp['info_lambda'] - 1.0) * divergence
    return loss, {'loss': loss, 'recon': recon, 'kl': kl, 'neg_elbo': recon + kl, 'mmd': divergence}

  return objective


def family(config: ml_collections.ConfigDict, data_shape: int | Sequence[int]) -> Family:
  """The InfoVAE's ``Family``: the VAE's, with the objective of this module."""
  fam = vae.family(config, data_shape)
  return dataclasses.replace(fam, objective=make_objective(fam.model, config))
