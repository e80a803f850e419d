"""Variational autoencoder (Kingma & Welling 2014, Auto-Encoding Variational Bayes).

Gaussian posterior ``q(z|x) = N(mean(x), diag exp(log_var(x)))``, standard normal prior ``p(z)``,
Bernoulli or Gaussian likelihood ``p(x|z)``. The loss is ``E_q[-log p(x|z)] + kl_weight * KL(q || p)``
(``kl_weight`` is beta of Higgins et al. 2017; 1 gives the negative ELBO), one reparameterized sample
per example. Corruption of the input gives a denoising VAE (Im et al. 2017).

Objective variants, all with traced hyperparameters in ``hp``: ``kl_weight`` (beta); KL warm-up
(``hp['kl_warmup_steps']``, applied to ``kl_weight`` by ``train.make_train_step``); free bits
(``hp['free_bits']``, a floor in nats on the batch-mean KL of each latent dimension, Kingma et al. 2016,
Improved Variational Inference with Inverse Autoregressive Flow, Appendix C.8); the IWAE bound with
``vae.num_samples = k`` importance samples (Burda et al. 2016, Eq. 8; k = 1 is the ELBO); annealed
capacity (Burgess et al. 2018, Understanding disentangling in beta-VAE, Eq. 8): with
``hp['capacity_weight'] = gamma > 0`` the KL term is ``gamma |KL - C(t)|``, ``C(t)`` rising linearly from 0
to ``hp['capacity_max']`` nats over ``hp['capacity_steps']`` steps (``optimizers.make_train_step``).

:func:`make_regularized_objective` is the ELBO plus a regularizer of the posterior and its sample, the
shape of the disentangling VAEs (``beta_tcvae``, ``dip_vae``, ``factor_vae``).
"""
import math
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from aelab.nn import losses, nets
from aelab.models import common
from aelab.errors import check, check_choice
from aelab.models.family import COMMON_HYPERPARAMS, Family

SECTION = 'vae'
CONFIG = {
    'kl_weight': (1.0, 'weight of the KL term, beta of Higgins et al. 2017 (1: the negative ELBO)'),
    'num_samples': (1, 'importance samples k of the IWAE bound (Burda et al. 2016); 1 is the ELBO'),
    'free_bits': (0.0, "floor on each latent dimension's batch-mean KL, nats (Kingma et al. 2016; 0: off)"),
    'kl_warmup_steps': (0, 'steps over which kl_weight rises linearly from 0 (0: no warm-up)'),
    'capacity_weight': (0.0, 'gamma of the annealed capacity gamma |KL - C| (Burgess et al. 2018; 0: off)'),
    'capacity_max': (25.0, 'the capacity C reached at the end of its ramp, nats'),
    'capacity_steps': (100_000, 'steps over which the capacity rises linearly from 0 to capacity_max'),
}
LIKELIHOODS = ('bernoulli', 'gaussian')  # the ELBO needs a normalized likelihood p(x|z)
HYPERPARAMS = {**COMMON_HYPERPARAMS, **{k: f'vae.{k}' for k in (
    'kl_weight', 'kl_warmup_steps', 'free_bits', 'capacity_weight', 'capacity_max', 'capacity_steps')}}


def validate(config: ml_collections.ConfigDict) -> None:
  """Checks ``config.vae`` and that ``model.likelihood`` is normalized. Raises ConfigError naming the field."""
  v = config.vae
  check_choice(config.model.likelihood, LIKELIHOODS, 'model.likelihood (a VAE needs a normalized likelihood)')
  check(v.kl_weight >= 0, f'vae.kl_weight={v.kl_weight} must be >= 0.')
  check(isinstance(v.num_samples, int) and v.num_samples >= 1,
        f'vae.num_samples={v.num_samples} (IWAE k) must be an integer >= 1; 1 is the ELBO.')
  check(v.free_bits >= 0, f'vae.free_bits={v.free_bits} (nats per latent dimension) must be >= 0.')
  check(not (v.free_bits > 0 and v.num_samples > 1), 'vae.free_bits applies to the ELBO\'s KL term; the IWAE '
        'objective (vae.num_samples > 1) has none: set one of them back (free_bits=0 or num_samples=1).')
  check(v.kl_warmup_steps >= 0, f'vae.kl_warmup_steps={v.kl_warmup_steps} must be >= 0 (0: no warm-up).')
  check(v.capacity_weight >= 0 and v.capacity_max >= 0 and v.capacity_steps >= 0,
        'vae.capacity_weight (gamma, 0: off), vae.capacity_max (nats) and vae.capacity_steps must be >= 0.')


def check_elbo_only(config: ml_collections.ConfigDict) -> None:
  """For a family whose objective is :func:`make_regularized_objective` (the ELBO plus a regularizer):
  raises ConfigError when an option of the plain VAE's objective is set (annealed capacity)."""
  check(config.vae.capacity_weight == 0, f'vae.capacity_weight > 0 (annealed capacity) is an option of the plain '
        f'VAE, not of model.name={config.model.name}: set --config.model.name=vae or vae.capacity_weight=0.')

class Model(nn.Module):
  """``encode(x_BxD) -> (mean_BxZ, log_var_BxZ)``, ``decode(z_BxZ) -> out_BxD`` (likelihood parameters)."""
  hidden: tuple[int, ...]
  latent_dim: int
  data_shape: Sequence[int]
  activation: str = 'relu'
  output_activation: str = 'identity'
  net: str = 'mlp'
  conv_channels: tuple[int, ...] = (32, 64)
  dtype: Any = jnp.float32  # of the computation (model.dtype); parameters and outputs are float32

  def setup(self):
    self.encoder = nets.make_encoder(self.net, self.data_shape, self.hidden, self.encoder_units(), self.activation,
                                     'identity', self.conv_channels, self.dtype)
    self.decoder = nets.make_decoder(self.net, self.data_shape, self.hidden[::-1], self.activation,
                                     self.output_activation, self.conv_channels, self.dtype)

  def encoder_units(self) -> int:
    """The encoder's output units: ``mean`` and ``log_var`` (a subclass may add its own after them)."""
    return 2 * self.latent_dim

  def encode(self, x_BxD: jax.Array) -> tuple[jax.Array, jax.Array]:
    mean, log_var = jnp.split(self.encoder(x_BxD), 2, axis=-1)
    return mean, log_var

  def decode(self, z_BxZ: jax.Array) -> jax.Array:
    return self.decoder(z_BxZ)

  def __call__(self, x_BxD: jax.Array, key: jax.Array):
    mean, log_var = self.encode(x_BxD)
    return mean, log_var, self.decode(reparameterize(key, mean, log_var))


def reparameterize(key: jax.Array, mean_BxZ: jax.Array, log_var_BxZ: jax.Array,
                   num_samples: int | None = None) -> jax.Array:
  """``z = mean + exp(log_var / 2) * eps``, ``eps ~ N(0, I)``: a differentiable sample of ``q(z|x)``
  (Kingma & Welling 2014, Eq. 10). Returns ``z_BxZ``, or ``z_KxBxZ`` with ``num_samples = K``."""
  if num_samples is None:
    return mean_BxZ + jnp.exp(0.5 * log_var_BxZ) * jax.random.normal(key, mean_BxZ.shape, mean_BxZ.dtype)
  eps_KxBxZ = jax.random.normal(key, (num_samples, *mean_BxZ.shape), mean_BxZ.dtype)
  return mean_BxZ[None] + jnp.exp(0.5 * log_var_BxZ)[None] * eps_KxBxZ


def build(config: ml_collections.ConfigDict, data_shape: int | Sequence[int]) -> Model:
  """The model of ``config.model`` for examples of shape ``data_shape`` (an int ``D`` means ``(D,)``).
  Raises ValueError when ``model.net=conv`` and the shape is not an ``H x W x C`` image."""
  m = config.model
  return Model(tuple(m.hidden), m.latent_dim, common.as_shape(m, data_shape), m.activation,
               common.output_activation(m), m.net, tuple(m.conv_channels), common.compute_dtype(m))


def init(model: Model, key: jax.Array, x_BxD: jax.Array):
  """Initial parameters for inputs shaped like ``x_BxD``."""
  return model.init(key, x_BxD, key)


def sample_terms(model: Model, config: ml_collections.ConfigDict, params, x_BxD: jax.Array, key: jax.Array,
                 hp) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
  """``(recon_B, mean_BxZ, log_var_BxZ, z_BxZ)``: ``-log p(x|z)`` (nats per example) of one reparameterized
  sample ``z ~ q(z|x_tilde)`` and the posterior's parameters; the key's halves corrupt and sample."""
  corrupt_key, sample_key = jax.random.split(key)
  x_tilde = common.corrupt_fn(config)(corrupt_key, x_BxD, hp)
  mean, log_var = model.apply(params, x_tilde, method=Model.encode)
  z = reparameterize(sample_key, mean, log_var)
  out = model.apply(params, z, method=Model.decode)
  return common.reconstruction_loss(config.model)(out, x_BxD), mean, log_var, z


def _terms(model, config, params, x_BxD, key, hp):
  """Per-example ``recon`` (-log p(x|z), nats) and the posterior's ``mean_BxZ``, ``log_var_BxZ``."""
  return sample_terms(model, config, params, x_BxD, key, hp)[:3]


def capacity_kl(kl: jax.Array, hp) -> jax.Array:
  """``gamma |KL - C|`` (Burgess et al. 2018, Eq. 8), nats: ``gamma = hp['capacity_weight']``, ``C =
  hp['capacity']`` (set per step by ``optimizers.make_train_step``; ``hp['capacity_max']`` without it)."""
  return hp['capacity_weight'] * jnp.abs(kl - hp.get('capacity', hp['capacity_max']))


def make_regularized_objective(model: Model, config: ml_collections.ConfigDict, regularizer: Callable) -> Callable:
  """``objective(params, x_BxD, key, hp) -> (loss, metrics)``: ``mean(recon) + hp['kl_weight'] * mean(KL) +
  reg``, with ``(reg, reg_metrics) = regularizer(mean_BxZ, log_var_BxZ, z_BxZ, hp)`` on the posterior and
  its reparameterized sample (a scalar in nats per example). Metrics: ``loss``, ``recon``, ``kl``,
  ``neg_elbo`` and the regularizer's."""

  def objective(params, x_BxD, key, hp):
    recon, mean, log_var, z = sample_terms(model, config, params, x_BxD, key, hp)
    kl = jnp.mean(losses.kl_standard_normal(mean, log_var))
    reg, reg_metrics = regularizer(mean, log_var, z, hp)
    loss = jnp.mean(recon) + hp['kl_weight'] * kl + reg
    return loss, {'loss': loss, 'recon': jnp.mean(recon), 'kl': kl, 'neg_elbo': jnp.mean(recon) + kl, **reg_metrics}

  return objective


def free_bits_kl(kl_BxZ: jax.Array, free_bits: jax.Array | float) -> jax.Array:
  """The KL term with free bits: ``sum_j max(free_bits, mean_B KL_j)``, nats per example (a scalar).

  Each latent dimension's KL, averaged over the batch, is floored at ``free_bits`` nats, so the optimizer
  gains nothing from pushing a dimension below it (Kingma et al. 2016, Appendix C.8, one group per
  dimension). With ``free_bits = 0`` this is the batch-mean KL.
  """
  return jnp.sum(jnp.maximum(free_bits, jnp.mean(kl_BxZ, axis=0)))


def make_log_weights(model: Model, config: ml_collections.ConfigDict) -> Callable:
  """``log_weights(params, x_BxD, key, k, hp) -> k x B``: importance log-weights, nats,
  ``log w_i = log p(x|z_i) + kl_weight * (log p(z_i) - log q(z_i|x))`` with ``z_i ~ q(z|x)``.

  ``kl_weight = hp['kl_weight']`` when ``hp`` is given, else 1 (the true weights, for the NLL).
  ``log_mean_exp`` over the ``k`` samples is the IWAE bound ``L_k <= log p(x)`` (Burda et al. 2016, Eq. 8);
  the input is corrupted (with the key's first half) as in training.
  """
  recon_loss = common.reconstruction_loss(config.model)
  corrupt = common.corrupt_fn(config)

  def log_weights(params, x_BxD, key, k, hp=None):
    corrupt_key, sample_key = jax.random.split(key)
    x_tilde = x_BxD if hp is None else corrupt(corrupt_key, x_BxD, hp)
    mean, log_var = model.apply(params, x_tilde, method=Model.encode)
    z_KxBxZ = reparameterize(sample_key, mean, log_var, k)
    out = model.apply(params, z_KxBxZ.reshape(-1, mean.shape[-1]), method=Model.decode)
    log_px = -recon_loss(out.reshape(k, *x_BxD.shape), x_BxD[None])
    log_prior_ratio = losses.gaussian_nll(mean[None], z_KxBxZ, log_var[None]) - losses.gaussian_nll(0.0, z_KxBxZ)
    return log_px + (1.0 if hp is None else hp['kl_weight']) * log_prior_ratio

  return log_weights


def make_objective(model: Model, config: ml_collections.ConfigDict) -> Callable:
  """``objective(params, x_BxD, key, hp) -> (loss, metrics)``; loss in nats per example.

  ``vae.num_samples = 1``: ``mean(recon) + hp['kl_weight'] * KL term + hp['penalty_weight'] * penalty``,
  the KL term being :func:`free_bits_kl` when ``hp['free_bits'] > 0`` and the batch-mean KL otherwise;
  with ``hp['capacity_weight'] > 0`` it is :func:`capacity_kl` of the batch-mean KL instead.
  ``k > 1``: the negative IWAE bound ``-mean_B log mean_k w_k`` (:func:`make_log_weights`) plus the penalty.
  Metrics: ``loss``, ``recon``, ``kl`` (closed form), ``neg_elbo`` and, for ``k > 1``, ``neg_iwae``.
  """
  penalty = common.make_penalty(config, make_encode(model, config))
  k = config.vae.num_samples
  log_weights = make_log_weights(model, config)

  def objective(params, x_BxD, key, hp):
    key, iwae_key = jax.random.split(key) if k > 1 else (key, None)
    recon, mean, log_var = _terms(model, config, params, x_BxD, key, hp)
    pen = penalty(params, x_BxD, mean, hp)
    loss, metrics = elbo_loss(recon, mean, log_var, hp, lambda: log_weights(params, x_BxD, iwae_key, k, hp), k)
    loss = loss + hp['penalty_weight'] * pen
    return loss, common.with_penalty(config, {'loss': loss, **metrics}, pen)

  return objective


def elbo_loss(recon_B: jax.Array, mean_BxZ: jax.Array, log_var_BxZ: jax.Array, hp, log_weights_KxB: Callable,
              k: int = 1) -> tuple[jax.Array, dict[str, jax.Array]]:
  """``(loss, metrics)`` of :func:`make_objective` without the penalty, nats per example, from one sample's
  ``recon_B = -log p(x|z)`` and the Gaussian posterior's parameters: ``k = 1``, ``mean(recon) + hp['kl_weight']
  * KL term`` (:func:`free_bits_kl` when ``hp['free_bits'] > 0``, :func:`capacity_kl` when
  ``hp['capacity_weight'] > 0``); ``k > 1``, ``-mean_B log mean_k w_k`` of ``log_weights_KxB()``. Metrics:
  ``recon``, ``kl`` (closed form), ``neg_elbo`` and, for ``k > 1``, ``neg_iwae``. Shared by families that
  condition the same ELBO (``cvae``)."""
  kl = losses.kl_standard_normal(mean_BxZ, log_var_BxZ)
  metrics = {'recon': jnp.mean(recon_B), 'kl': jnp.mean(kl), 'neg_elbo': jnp.mean(recon_B + kl)}
  if k > 1:
    metrics['neg_iwae'] = neg_iwae = -jnp.mean(log_mean_exp(log_weights_KxB(), axis=0))
    return neg_iwae, metrics
  kl_BxZ = losses.kl_standard_normal_per_dim(mean_BxZ, log_var_BxZ)
  floored = jnp.mean(recon_B) + hp['kl_weight'] * free_bits_kl(kl_BxZ, hp['free_bits'])
  loss = jnp.where(hp['free_bits'] > 0, floored, jnp.mean(recon_B + hp['kl_weight'] * kl))
  capacity_loss = jnp.mean(recon_B) + capacity_kl(jnp.mean(kl), hp)
  return jnp.where(hp['capacity_weight'] > 0, capacity_loss, loss), metrics


def log_mean_exp(a: jax.Array, axis: int = 0) -> jax.Array:
  """``log mean exp(a)`` along ``axis`` without overflow (max-shifted log-sum-exp, float32)."""
  return jax.nn.logsumexp(a.astype(jnp.float32), axis=axis) - math.log(a.shape[axis])


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
    recon, mean, log_var = _terms(model, config, params, x_BxD, key, hp)
    kl = losses.kl_standard_normal(mean, log_var)
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


def sample_prior(config: ml_collections.ConfigDict, key: jax.Array, num: int) -> jax.Array:
  """``num`` samples of the prior ``p(z) = N(0, I)``: ``num x latent_dim``."""
  return jax.random.normal(key, (num, config.model.latent_dim))


def make_sample(model: Model, config: ml_collections.ConfigDict) -> Callable:
  """``sample(params, key, num) -> x_NxD``: means ``E[x|z]`` of decoded prior samples ``z ~ N(0, I)``."""

  def sample(params, key, num):
    z = sample_prior(config, key, num)
    return common.mean_of(config.model, model.apply(params, z, method=Model.decode))

  return sample


def make_encode(model: Model, config: ml_collections.ConfigDict) -> Callable:
  """``encode(params, x_BxD) -> mean_BxZ``: the posterior mean ``E_q[z|x]`` (the code)."""
  return lambda params, x_BxD: model.apply(params, x_BxD, method=Model.encode)[0]


def make_decode(model: Model, config: ml_collections.ConfigDict) -> Callable:
  """``decode(params, z_BxZ) -> x_BxD``: the likelihood mean ``E[x|z]``."""
  return lambda params, z_BxZ: common.mean_of(config.model, model.apply(params, z_BxZ, method=Model.decode))


def family(config: ml_collections.ConfigDict, data_shape: int | Sequence[int],
           regularizer: Callable | None = None) -> Family:
  """The VAE's ``Family`` (see ``aelab/models/family.py``): also ``sample``, ``log_weights`` and the prior.
  With ``regularizer`` the objective is :func:`make_regularized_objective` (the disentangling VAEs)."""
  model = build(config, data_shape)
  objective = (make_objective(model, config) if regularizer is None
               else make_regularized_objective(model, config, regularizer))
  return Family(model=model, init=lambda key, x_BxD: init(model, key, x_BxD), eval=make_eval(model, config),
                reconstruct=make_reconstruct(model, config), encode=make_encode(model, config),
                decode=make_decode(model, config), objective=objective,
                sample=make_sample(model, config), log_weights=make_log_weights(model, config),
                sample_prior=lambda key, num: sample_prior(config, key, num))
