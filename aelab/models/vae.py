"""Variational autoencoder (Kingma & Welling 2014, Auto-Encoding Variational Bayes).

Gaussian posterior ``q(z|x) = N(mean(x), diag exp(log_var(x)))``, standard normal prior ``p(z)``,
Bernoulli or Gaussian likelihood ``p(x|z)``. The loss is ``E_q[-log p(x|z)] + kl_weight * KL(q || p)``
(``kl_weight`` is beta of Higgins et al. 2017; 1 gives the negative ELBO), one reparameterized sample
per example. Corruption of the input gives a denoising VAE (Im et al. 2017).
"""
from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from aelab import losses, nets
from aelab.models import common


class Model(nn.Module):
  """``encode(x_BxD) -> (mean_BxZ, log_var_BxZ)``, ``decode(z_BxZ) -> out_BxD`` (likelihood parameters)."""
  hidden: tuple[int, ...]
  latent_dim: int
  data_dim: int
  activation: str = 'relu'
  output_activation: str = 'identity'

  def setup(self):
    self.encoder = nets.Encoder(self.hidden, 2 * self.latent_dim, self.activation)
    self.decoder = nets.Decoder(self.hidden[::-1], self.data_dim, self.activation, self.output_activation)

  def encode(self, x_BxD: jax.Array) -> tuple[jax.Array, jax.Array]:
    mean, log_var = jnp.split(self.encoder(x_BxD), 2, axis=-1)
    return mean, log_var

  def decode(self, z_BxZ: jax.Array) -> jax.Array:
    return self.decoder(z_BxZ)

  def __call__(self, x_BxD: jax.Array, key: jax.Array):
    mean, log_var = self.encode(x_BxD)
    return mean, log_var, self.decode(reparameterize(key, mean, log_var))


def reparameterize(key: jax.Array, mean: jax.Array, log_var: jax.Array) -> jax.Array:
  """``z = mean + exp(log_var / 2) * eps``, ``eps ~ N(0, I)``: a differentiable sample of ``q(z|x)``
  (Kingma & Welling 2014, Eq. 10). Shapes ``B x Z``."""
  return mean + jnp.exp(0.5 * log_var) * jax.random.normal(key, mean.shape, mean.dtype)


def build(config: ml_collections.ConfigDict, data_dim: int) -> Model:
  m = config.model
  return Model(tuple(m.hidden), m.latent_dim, data_dim, m.activation, common.output_activation(m))


def init(model: Model, key: jax.Array, x_BxD: jax.Array):
  """Initial parameters for inputs shaped like ``x_BxD``."""
  return model.init(key, x_BxD, key)


def _terms(model, config, params, x_BxD, key, hp):
  """Per-example ``recon`` (-log p(x|z), nats), ``kl`` (nats), and the posterior mean (the code)."""
  corrupt_key, sample_key = jax.random.split(key)
  x_tilde = common.corrupt_fn(config)(corrupt_key, x_BxD, hp)
  mean, log_var, out = model.apply(params, x_tilde, sample_key)
  recon = common.reconstruction_loss(config.model)(out, x_BxD)
  return recon, losses.kl_standard_normal(mean, log_var), mean


def make_objective(model: Model, config: ml_collections.ConfigDict) -> Callable:
  """``objective(params, x_BxD, key, hp) -> (loss, metrics)``; loss in nats per example:
  ``mean(recon + hp['kl_weight'] * kl) + hp['penalty_weight'] * penalty(mean)``."""
  penalty = common.penalty(config.penalty.name)

  def objective(params, x_BxD, key, hp):
    recon, kl, mean = _terms(model, config, params, x_BxD, key, hp)
    pen = penalty(mean, hp)
    loss = jnp.mean(recon + hp['kl_weight'] * kl) + hp['penalty_weight'] * pen
    metrics = {'loss': loss, 'recon': jnp.mean(recon), 'kl': jnp.mean(kl), 'neg_elbo': jnp.mean(recon + kl)}
    return loss, common.with_penalty(config, metrics, pen)

  return objective


def _decode_posterior_mean(model, config, params, x_BxD):
  mean, _ = model.apply(params, x_BxD, method=Model.encode)
  return common.mean_of(config.model, model.apply(params, mean, method=Model.decode))


def make_reconstruct(model: Model, config: ml_collections.ConfigDict) -> Callable:
  """``reconstruct(params, x_BxD, key, hp) -> (x_tilde, x_hat)``; ``x_hat`` decodes the posterior mean."""
  corrupt = common.corrupt_fn(config)

  def reconstruct(params, x_BxD, key, hp):
    x_tilde = corrupt(jax.random.split(key)[0], x_BxD, hp)
    return x_tilde, _decode_posterior_mean(model, config, params, x_tilde)

  return reconstruct


def make_eval(model: Model, config: ml_collections.ConfigDict) -> Callable:
  """``eval_fn(params, x_BxD, key, hp) -> dict of per-example metrics`` (each shape ``B``).

  ``neg_elbo``, ``recon`` (= ``recon_bce`` for Bernoulli) and ``kl``: nats per example, one posterior
  sample; ``recon_mse``: per pixel, decoding the posterior mean of the (corrupted) input, against the
  clean ``x``; ``recon_mse_clean_input`` with corruption. The corruption uses the same key as the
  objective, so ``recon_mse`` and ``neg_elbo`` see the same ``x_tilde``.
  """
  reconstruct = make_reconstruct(model, config)

  def eval_fn(params, x_BxD, key, hp):
    recon, kl, mean = _terms(model, config, params, x_BxD, key, hp)
    x_hat = reconstruct(params, x_BxD, key, hp)[1]
    metrics = {'neg_elbo': recon + kl, 'recon': recon, 'kl': kl, 'recon_mse': losses.mse(x_hat, x_BxD),
               **common.code_stats(mean)}
    if config.model.likelihood == 'bernoulli':
      metrics['recon_bce'] = recon
    if config.corruption.name != 'none':
      clean_hat = _decode_posterior_mean(model, config, params, x_BxD)
      metrics['recon_mse_clean_input'] = losses.mse(clean_hat, x_BxD)
    return metrics

  return eval_fn


def make_sample(model: Model, config: ml_collections.ConfigDict) -> Callable:
  """``sample(params, key, num) -> x_NxD``: means ``E[x|z]`` of decoded prior samples ``z ~ N(0, I)``."""

  def sample(params, key, num):
    z = jax.random.normal(key, (num, config.model.latent_dim))
    return common.mean_of(config.model, model.apply(params, z, method=Model.decode))

  return sample
