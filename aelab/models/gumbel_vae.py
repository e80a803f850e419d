"""Categorical VAE with the Gumbel-softmax relaxation (Jang et al. 2017, Categorical Reparameterization with
Gumbel-Softmax).

The latent is ``model.latent_dim`` categorical variables of ``gumbel_vae.num_categories`` classes each
(PyTorch-VAE's ``CategoricalVAE`` convention): the encoder gives logits ``N x K`` of ``q(z|x)``, the prior
``p(z)`` is uniform, and the decoder reads the ``N * K`` one-hot (or relaxed) code. Training decodes a
relaxed sample ``softmax((logits + g) / tau)`` (Eq. 2) and minimizes ``-log p(x|z) + kl_weight * KL(q || U(K))``
(KL in closed form, :func:`aelab.nn.distributions.kl_categorical_uniform`); the temperature ``tau`` falls
from ``gumbel_vae.temperature`` as ``max(min_temperature, tau_0 exp(-anneal_rate t))`` (Sec. 4), set per step
in this family's own update. With ``gumbel_vae.straight_through`` the forward pass uses the hard one-hot.

Evaluation uses exact one-hot samples: ``neg_elbo`` is the discrete model's ELBO and ``log_weights`` its
importance weights ``log p(x|z) + log p(z) - log q(z|x)`` (``test/nll``). Codes (``encode``) are the
posterior probabilities ``q(z|x)``, ``N * K`` per example.
"""
import math
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax

from aelab.errors import check, check_choice
from aelab.models import common
from aelab.models.family import COMMON_HYPERPARAMS, Family
from aelab.nn import distributions, losses, nets, schedules

SECTION = 'gumbel_vae'
CONFIG = {
    'num_categories': (10, 'classes K of each of the model.latent_dim categorical latent variables'),
    'temperature': (1.0, 'initial temperature tau_0 of the Gumbel-softmax relaxation'),
    'min_temperature': (0.5, 'the temperature never falls below this (Jang et al. 2017: 0.5)'),
    'anneal_rate': (3e-5, 'r of tau = max(min_temperature, tau_0 exp(-r t)), per training step t'),
    'anneal_interval': (100, 'steps between updates of the temperature (Jang et al. 2017: N)'),
    'kl_weight': (1.0, 'weight of the KL to the uniform prior (1: the negative ELBO)'),
    'straight_through': (False, 'decode the hard one-hot in the forward pass, relaxed gradients (Sec. 2.2)'),
}
LIKELIHOODS = ('bernoulli', 'gaussian')  # the ELBO needs a normalized likelihood p(x|z)
PENALTIES = ('none',)
HYPERPARAMS = {**COMMON_HYPERPARAMS, **{k: f'gumbel_vae.{k}' for k in (
    'temperature', 'min_temperature', 'anneal_rate', 'kl_weight')}}


def validate(config: ml_collections.ConfigDict) -> None:
  """Checks ``config.gumbel_vae`` and the likelihood. Raises ConfigError naming the field."""
  g = config.gumbel_vae
  check_choice(config.model.likelihood, LIKELIHOODS, 'model.likelihood (the ELBO needs a normalized likelihood)')
  check(isinstance(g.num_categories, int) and g.num_categories >= 2,
        f'gumbel_vae.num_categories={g.num_categories} must be an integer >= 2.')
  check(0 < g.min_temperature <= g.temperature and math.isfinite(g.temperature), f'gumbel_vae.min_temperature='
        f'{g.min_temperature} and temperature={g.temperature} must satisfy 0 < min_temperature <= temperature.')
  check(g.anneal_rate >= 0, f'gumbel_vae.anneal_rate={g.anneal_rate} must be >= 0 (0: a fixed temperature).')
  check(isinstance(g.anneal_interval, int) and g.anneal_interval >= 1,
        f'gumbel_vae.anneal_interval={g.anneal_interval} must be an integer >= 1.')
  check(g.kl_weight >= 0, f'gumbel_vae.kl_weight={g.kl_weight} must be >= 0.')


class Model(nn.Module):
  """``encode(x_BxD) -> logits_BxNxK`` of ``q(z|x)``; ``decode(z_BxNxK) -> out_BxD`` (likelihood parameters)."""
  hidden: tuple[int, ...]
  num_variables: int
  num_categories: int
  data_shape: Sequence[int]
  activation: str = 'relu'
  output_activation: str = 'identity'
  net: str = 'mlp'
  conv_channels: tuple[int, ...] = (32, 64)
  dtype: Any = jnp.float32

  def setup(self):
    code_dim = self.num_variables * self.num_categories
    self.encoder = nets.make_encoder(self.net, self.data_shape, self.hidden, code_dim, self.activation,
                                     'identity', self.conv_channels, self.dtype)
    self.decoder = nets.make_decoder(self.net, self.data_shape, self.hidden[::-1], self.activation,
                                     self.output_activation, self.conv_channels, self.dtype)

  def encode(self, x_BxD: jax.Array) -> jax.Array:
    return self.encoder(x_BxD).reshape(x_BxD.shape[0], self.num_variables, self.num_categories)

  def decode(self, z_BxNxK: jax.Array) -> jax.Array:
    return self.decoder(z_BxNxK.reshape(z_BxNxK.shape[0], -1))

  def __call__(self, x_BxD: jax.Array):
    logits = self.encode(x_BxD)
    return logits, self.decode(jax.nn.softmax(logits, axis=-1))


def build(config: ml_collections.ConfigDict, data_shape: int | Sequence[int]) -> Model:
  """The model of ``config.model`` with ``model.latent_dim`` variables of ``gumbel_vae.num_categories`` classes."""
  m = config.model
  return Model(tuple(m.hidden), m.latent_dim, config.gumbel_vae.num_categories, common.as_shape(m, data_shape),
               m.activation, common.output_activation(m), m.net, tuple(m.conv_channels), common.compute_dtype(m))


def temperature(config: ml_collections.ConfigDict, step: jax.Array, hp) -> jax.Array:
  """The temperature at training ``step`` (:func:`aelab.nn.schedules.gumbel_temperature`), from ``hp``."""
  return schedules.gumbel_temperature(step, hp['temperature'], hp['min_temperature'], hp['anneal_rate'],
                                      config.gumbel_vae.anneal_interval)


def make_objective(model: Model, config: ml_collections.ConfigDict) -> Callable:
  """``objective(params, x_BxD, key, hp) -> (loss, metrics)``, nats per example: ``mean(-log p(x|z) +
  hp['kl_weight'] * KL(q || U))`` with ``z`` a Gumbel-softmax sample at temperature ``hp['temperature']``
  (the update sets it from the step). Metrics: ``loss``, ``recon``, ``kl``, ``neg_elbo`` (relaxed) and
  ``temperature``."""
  corrupt, recon_loss = common.corrupt_fn(config), common.reconstruction_loss(config.model)
  straight_through = bool(config.gumbel_vae.straight_through)

  def objective(params, x_BxD, key, hp):
    corrupt_key, sample_key = jax.random.split(key)
    logits = model.apply(params, corrupt(corrupt_key, x_BxD, hp), method=Model.encode)
    z = distributions.gumbel_softmax(sample_key, logits, hp['temperature'], straight_through)
    recon = jnp.mean(recon_loss(model.apply(params, z, method=Model.decode), x_BxD))
    kl = jnp.mean(distributions.kl_categorical_uniform(logits))
    loss = recon + hp['kl_weight'] * kl
    return loss, {'loss': loss, 'recon': recon, 'kl': kl, 'neg_elbo': recon + kl, 'temperature': hp['temperature']}

  return objective


def make_update(model: Model, config: ml_collections.ConfigDict, tx: optax.GradientTransformation):
  """``(tx.init, train_step)``: one gradient step of :func:`make_objective` with ``hp['temperature']`` annealed
  by ``state['step']`` (:func:`temperature`), a pure function."""
  objective = make_objective(model, config)

  def train_step(state, x_BxD, key, hp):
    hp = {**hp, 'temperature': temperature(config, state['step'], hp)}
    grads, metrics = jax.grad(objective, has_aux=True)(state['params'], x_BxD, key, hp)
    updates, opt_state = tx.update(grads, state['opt_state'], state['params'])
    params = optax.apply_updates(state['params'], updates)
    return {'step': state['step'] + 1, 'params': params, 'opt_state': opt_state}, metrics

  return tx.init, train_step


def make_log_weights(model: Model, config: ml_collections.ConfigDict) -> Callable:
  """``log_weights(params, x_BxD, key, k, hp=None) -> k x B``, nats: ``log p(x|z) + w (log p(z) - log q(z|x))``
  with exact one-hot ``z ~ q(z|x)``; ``w = hp['kl_weight']`` with ``hp``, else 1 (the NLL's weights)."""
  recon_loss = common.reconstruction_loss(config.model)
  log_uniform = -config.model.latent_dim * math.log(config.gumbel_vae.num_categories)

  def log_weights(params, x_BxD, key, k, hp=None):
    logits = model.apply(params, x_BxD, method=Model.encode)
    z_KxBxNxK = distributions.sample_categorical(key, logits, k)
    out = model.apply(params, z_KxBxNxK.reshape(-1, *logits.shape[1:]), method=Model.decode)
    log_px = -recon_loss(out.reshape(k, *x_BxD.shape), x_BxD[None])
    log_ratio = log_uniform - distributions.categorical_log_prob(logits[None], z_KxBxNxK)
    return log_px + (1.0 if hp is None else hp['kl_weight']) * log_ratio

  return log_weights


def make_encode(model: Model, config: ml_collections.ConfigDict) -> Callable:
  """``encode(params, x_BxD) -> q_BxZ``: the posterior probabilities, ``Z = latent_dim * num_categories``."""
  def encode(params, x_BxD):
    return jax.nn.softmax(model.apply(params, x_BxD, method=Model.encode), axis=-1).reshape(x_BxD.shape[0], -1)

  return encode


def make_decode(model: Model, config: ml_collections.ConfigDict) -> Callable:
  """``decode(params, z_BxZ) -> x_BxD``: the likelihood mean for codes of ``latent_dim * num_categories``."""
  shape = (config.model.latent_dim, config.gumbel_vae.num_categories)
  return lambda params, z_BxZ: common.mean_of(
      config.model, model.apply(params, z_BxZ.reshape(z_BxZ.shape[0], *shape), method=Model.decode))


def make_reconstruct(model: Model, config: ml_collections.ConfigDict) -> Callable:
  """``reconstruct(params, x_BxD, key, hp) -> (x_tilde, x_hat)``: ``x_hat`` decodes the one-hot of each
  variable's most probable class (the posterior mode)."""
  corrupt, decode = common.corrupt_fn(config), make_decode(model, config)

  def reconstruct(params, x_BxD, key, hp):
    x_tilde = corrupt(jax.random.split(key)[0], x_BxD, hp)
    logits = model.apply(params, x_tilde, method=Model.encode)
    mode = jax.nn.one_hot(jnp.argmax(logits, axis=-1), logits.shape[-1])
    return x_tilde, decode(params, mode.reshape(x_BxD.shape[0], -1))

  return reconstruct


def make_eval(model: Model, config: ml_collections.ConfigDict) -> Callable:
  """``eval_fn(params, x_BxD, key, hp) -> {name: B}``: ``neg_elbo``, ``recon`` (``recon_bce`` for Bernoulli),
  ``kl`` of the discrete model (one exact one-hot sample), nats per example; ``recon_mse`` of the posterior
  mode's reconstruction, per pixel; ``perplexity`` (``exp`` of the posterior entropy per variable)."""
  recon_loss, reconstruct = common.reconstruction_loss(config.model), make_reconstruct(model, config)

  def eval_fn(params, x_BxD, key, hp):
    logits = model.apply(params, x_BxD, method=Model.encode)
    z = distributions.sample_categorical(jax.random.split(key)[1], logits)
    recon = recon_loss(model.apply(params, z, method=Model.decode), x_BxD)
    kl = distributions.kl_categorical_uniform(logits)
    entropy = math.log(logits.shape[-1]) - kl / logits.shape[1]
    metrics = {'neg_elbo': recon + kl, 'recon': recon, 'kl': kl, 'perplexity': jnp.exp(entropy),
               'recon_mse': losses.mse(reconstruct(params, x_BxD, key, hp)[1], x_BxD)}
    if config.model.likelihood == 'bernoulli':
      metrics['recon_bce'] = recon
    return metrics

  return eval_fn


def sample_prior(config: ml_collections.ConfigDict, key: jax.Array, num: int) -> jax.Array:
  """``num`` one-hot samples of the uniform prior, flattened: ``num x (latent_dim * num_categories)``."""
  n, k = config.model.latent_dim, config.gumbel_vae.num_categories
  return jax.nn.one_hot(jax.random.randint(key, (num, n), 0, k), k).reshape(num, n * k)


def family(config: ml_collections.ConfigDict, data_shape: int | Sequence[int]) -> Family:
  """The categorical VAE's ``Family`` (see ``aelab/models/family.py``): its own update (the annealed
  temperature), prior samples, the discrete model's log-weights."""
  model = build(config, data_shape)
  decode = make_decode(model, config)
  return Family(model=model, init=lambda key, x_BxD: model.init(key, x_BxD), eval=make_eval(model, config),
                reconstruct=make_reconstruct(model, config), encode=make_encode(model, config), decode=decode,
                make_update=lambda tx: make_update(model, config, tx), log_weights=make_log_weights(model, config),
                sample=lambda params, key, num: decode(params, sample_prior(config, key, num)),
                sample_prior=lambda key, num: sample_prior(config, key, num))
