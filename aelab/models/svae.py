"""Hyperspherical VAE (Davidson et al. 2018, Hyperspherical Variational Auto-Encoders).

The latent lives on the unit sphere ``S^{M-1}`` in ``R^M`` (``M = model.latent_dim``): the posterior is a von
Mises-Fisher ``q(z|x) = vMF(mu(x), kappa(x))`` (the encoder gives ``M`` outputs normalized to the mean
direction ``mu`` and one more, ``kappa = softplus(.) + 1``, as in the authors' code), the prior is uniform on
the sphere. The loss is ``-log p(x|z) + kl_weight * KL(vMF || U)``, one reparameterized sample from Wood's
(1994) rejection sampler (:func:`aelab.nn.distributions.vmf_sample`) and the KL in closed form with Bessel
functions (:func:`aelab.nn.distributions.kl_vmf_uniform`, Eq. 14). ``log_weights`` (``test/nll``) are
``log p(x|z) + log p(z) - log q(z|x)`` with ``log p(z) = -log |S^{M-1}|``. Codes (``encode``) are ``mu``.
"""
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from aelab.errors import check, check_choice
from aelab.models import common
from aelab.models.family import COMMON_HYPERPARAMS, Family
from aelab.nn import distributions, losses, nets

SECTION = 'svae'
CONFIG = {
    'kl_weight': (1.0, 'weight of the KL to the uniform prior on the sphere (1: the negative ELBO)'),
}
LIKELIHOODS = ('bernoulli', 'gaussian')  # the ELBO needs a normalized likelihood p(x|z)
PENALTIES = ('none',)
HYPERPARAMS = {**COMMON_HYPERPARAMS, 'kl_weight': 'svae.kl_weight'}


def validate(config: ml_collections.ConfigDict) -> None:
  """Checks ``config.svae``, the likelihood and a sphere of dimension >= 1. Raises ConfigError naming the field."""
  check_choice(config.model.likelihood, LIKELIHOODS, 'model.likelihood (the ELBO needs a normalized likelihood)')
  check(config.model.latent_dim >= 2, f'model.latent_dim={config.model.latent_dim}: the vMF posterior lives on the '
        'sphere S^(M-1) in R^M, M = latent_dim, which needs latent_dim >= 2.')
  check(config.svae.kl_weight >= 0, f'svae.kl_weight={config.svae.kl_weight} must be >= 0.')


class Model(nn.Module):
  """``encode(x_BxD) -> (mu_BxM, kappa_B)`` (unit mean direction, concentration >= 1); ``decode(z_BxM)``."""
  hidden: tuple[int, ...]
  latent_dim: int
  data_shape: Sequence[int]
  activation: str = 'relu'
  output_activation: str = 'identity'
  net: str = 'mlp'
  conv_channels: tuple[int, ...] = (32, 64)
  dtype: Any = jnp.float32

  def setup(self):
    self.encoder = nets.make_encoder(self.net, self.data_shape, self.hidden, self.latent_dim + 1, self.activation,
                                     'identity', self.conv_channels, self.dtype)
    self.decoder = nets.make_decoder(self.net, self.data_shape, self.hidden[::-1], self.activation,
                                     self.output_activation, self.conv_channels, self.dtype)

  def encode(self, x_BxD: jax.Array) -> tuple[jax.Array, jax.Array]:
    out = self.encoder(x_BxD)
    direction = out[:, :-1]
    mu = direction / (jnp.linalg.norm(direction, axis=-1, keepdims=True) + 1e-8)
    return mu, jax.nn.softplus(out[:, -1]) + 1.0

  def decode(self, z_BxM: jax.Array) -> jax.Array:
    return self.decoder(z_BxM)

  def __call__(self, x_BxD: jax.Array):
    mu, _ = self.encode(x_BxD)
    return self.decode(mu)


def build(config: ml_collections.ConfigDict, data_shape: int | Sequence[int]) -> Model:
  """The model of ``config.model`` with the sphere in ``R^latent_dim``."""
  m = config.model
  return Model(tuple(m.hidden), m.latent_dim, common.as_shape(m, data_shape), m.activation,
               common.output_activation(m), m.net, tuple(m.conv_channels), common.compute_dtype(m))


def sample_terms(model: Model, config: ml_collections.ConfigDict, params, x_BxD, key, hp) -> dict:
  """``recon`` (``-log p(x|z)``, ``z ~ q(z|x_tilde)``), ``kl`` (closed form), ``kappa``: each shape ``B``, nats."""
  corrupt_key, sample_key = jax.random.split(key)
  x_tilde = common.corrupt_fn(config)(corrupt_key, x_BxD, hp)
  mu, kappa = model.apply(params, x_tilde, method=Model.encode)
  z = distributions.vmf_sample(sample_key, mu, kappa)
  recon = common.reconstruction_loss(config.model)(model.apply(params, z, method=Model.decode), x_BxD)
  return {'recon': recon, 'kl': distributions.kl_vmf_uniform(kappa, mu.shape[-1]), 'kappa': kappa}


def make_objective(model: Model, config: ml_collections.ConfigDict) -> Callable:
  """``objective(params, x_BxD, key, hp) -> (loss, metrics)``: ``mean(recon + hp['kl_weight'] * KL)``, nats per
  example. Metrics: ``loss``, ``recon``, ``kl``, ``neg_elbo``, ``kappa`` (the batch mean)."""

  def objective(params, x_BxD, key, hp):
    terms = jax.tree.map(jnp.mean, sample_terms(model, config, params, x_BxD, key, hp))
    loss = terms['recon'] + hp['kl_weight'] * terms['kl']
    return loss, {'loss': loss, **terms, 'neg_elbo': terms['recon'] + terms['kl']}

  return objective


def make_log_weights(model: Model, config: ml_collections.ConfigDict) -> Callable:
  """``log_weights(params, x_BxD, key, k, hp=None) -> k x B``, nats: ``log p(x|z) + w (log p(z) - log q(z|x))``,
  ``z ~ vMF(mu(x), kappa(x))``, ``w = hp['kl_weight']`` with ``hp``, else 1 (the NLL's weights)."""
  recon_loss = common.reconstruction_loss(config.model)
  log_prior = -distributions.log_sphere_area(config.model.latent_dim)

  def log_weights(params, x_BxD, key, k, hp=None):
    mu, kappa = model.apply(params, x_BxD, method=Model.encode)
    mu_KB, kappa_KB = jnp.tile(mu, (k, 1)), jnp.tile(kappa, k)
    z = distributions.vmf_sample(key, mu_KB, kappa_KB)
    log_px = -recon_loss(model.apply(params, z, method=Model.decode), jnp.tile(x_BxD, (k, 1)))
    log_ratio = log_prior - distributions.vmf_log_prob(mu_KB, kappa_KB, z)
    return (log_px + (1.0 if hp is None else hp['kl_weight']) * log_ratio).reshape(k, x_BxD.shape[0])

  return log_weights


def make_encode(model: Model, config: ml_collections.ConfigDict) -> Callable:
  """``encode(params, x_BxD) -> mu_BxM``: the posterior's mean direction (a unit vector)."""
  return lambda params, x_BxD: model.apply(params, x_BxD, method=Model.encode)[0]


def make_decode(model: Model, config: ml_collections.ConfigDict) -> Callable:
  """``decode(params, z_BxM) -> x_BxD``: the likelihood mean ``E[x|z]``."""
  return lambda params, z_BxM: common.mean_of(config.model, model.apply(params, z_BxM, method=Model.decode))


def make_reconstruct(model: Model, config: ml_collections.ConfigDict) -> Callable:
  """``reconstruct(params, x_BxD, key, hp) -> (x_tilde, x_hat)``; ``x_hat`` decodes the mean direction."""
  return common.reconstruct_through_codes(config, make_encode(model, config), make_decode(model, config))


def make_eval(model: Model, config: ml_collections.ConfigDict) -> Callable:
  """``eval_fn(params, x_BxD, key, hp) -> {name: B}``: ``neg_elbo``, ``recon`` (``recon_bce`` for Bernoulli),
  ``kl`` (nats per example, one posterior sample), ``kappa``, ``recon_mse`` (per pixel, decoding ``mu``)."""
  reconstruct = make_reconstruct(model, config)

  def eval_fn(params, x_BxD, key, hp):
    terms = sample_terms(model, config, params, x_BxD, key, hp)
    metrics = {**terms, 'neg_elbo': terms['recon'] + terms['kl'],
               'recon_mse': losses.mse(reconstruct(params, x_BxD, key, hp)[1], x_BxD)}
    if config.model.likelihood == 'bernoulli':
      metrics['recon_bce'] = terms['recon']
    return metrics

  return eval_fn


def family(config: ml_collections.ConfigDict, data_shape: int | Sequence[int]) -> Family:
  """The hyperspherical VAE's ``Family`` (see ``aelab/models/family.py``): samples of the uniform prior."""
  model = build(config, data_shape)
  decode = make_decode(model, config)
  sample_prior = lambda key, num: distributions.uniform_sphere(key, num, config.model.latent_dim)  # noqa: E731
  return Family(model=model, init=lambda key, x_BxD: model.init(key, x_BxD), eval=make_eval(model, config),
                reconstruct=make_reconstruct(model, config), encode=make_encode(model, config), decode=decode,
                objective=make_objective(model, config), log_weights=make_log_weights(model, config),
                sample=lambda params, key, num: decode(params, sample_prior(key, num)), sample_prior=sample_prior)
