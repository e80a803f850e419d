"""VAE with a VampPrior (Tomczak & Welling 2018, VAE with a VampPrior, Eq. 9).

The prior is the mixture of the posteriors of ``K`` learned pseudo-inputs ``u_k`` (``vamp.num_components``):

``p(z) = 1/K sum_k q(z | u_k)``

so the KL term has no closed form: the loss is ``mean(recon) + kl_weight * mean(log q(z|x) - log p(z))`` on one
reparameterized sample ``z ~ q(z|x)`` (an unbiased estimate of the negative ELBO for ``kl_weight = 1``), or the
IWAE bound with ``vae.num_samples = k > 1``. The pseudo-inputs are parameters (``params['params']
['pseudo_inputs']``, ``K x D``), initialized ``N(0.05, 0.01^2)`` as in the authors' code and, for a Bernoulli
likelihood (data in [0, 1]), clipped to [0, 1] (the hardtanh of the authors and pythae). ``log_weights`` use this
prior, so ``test/nll`` is the NLL of the VampPrior model; ``sample`` draws a component, then ``z`` from it.
"""
import math
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import ml_collections

from aelab.errors import check
from aelab.nn import losses
from aelab.models import common, vae
from aelab.models.family import Family

SECTION = 'vamp'
CONFIG = {
    'num_components': (500, 'K, the number of pseudo-inputs whose posteriors make the prior (Tomczak & Welling 2018)'),
}
BUILDS_ON = ('vae',)
PENALTIES = ('none',)
HYPERPARAMS = dict(vae.HYPERPARAMS)
PSEUDO_INPUT_MEAN, PSEUDO_INPUT_STD = 0.05, 0.01  # the initialization of the authors' code (vae_vampprior)


def validate(config: ml_collections.ConfigDict) -> None:
  """Checks ``config.vamp`` (``vae.validate`` has run). Raises ConfigError naming the field."""
  k = config.vamp.num_components
  check(isinstance(k, int) and k >= 1, f'vamp.num_components={k} (K pseudo-inputs) must be an integer >= 1.')
  check(config.vae.free_bits == 0, 'vae.free_bits applies to a closed-form KL per dimension, which the VampPrior '
        'has not: set vae.free_bits=0.')
  vae.check_elbo_only(config)


class Model(vae.Model):
  """The VAE's encoder and decoder and ``K`` pseudo-inputs; ``prior()`` gives the prior's components."""
  num_components: int = 500
  clip_pseudo_inputs: bool = True

  def setup(self):
    super().setup()
    init = lambda key, shape: PSEUDO_INPUT_MEAN + PSEUDO_INPUT_STD * jax.random.normal(key, shape)  # noqa: E731
    self.pseudo_inputs = self.param('pseudo_inputs', init, (self.num_components, math.prod(self.data_shape)))

  def prior(self) -> tuple[jax.Array, jax.Array]:
    """``(means_KxZ, log_vars_KxZ)``: the posteriors ``q(z|u_k)`` of the pseudo-inputs."""
    u_KxD = jnp.clip(self.pseudo_inputs, 0.0, 1.0) if self.clip_pseudo_inputs else self.pseudo_inputs
    return self.encode(u_KxD)

  def __call__(self, x_BxD: jax.Array, key: jax.Array):
    self.prior()
    return super().__call__(x_BxD, key)


def build(config: ml_collections.ConfigDict, data_shape: int | Sequence[int]) -> Model:
  """The VampPrior VAE of ``config.model`` and ``config.vamp`` for examples of shape ``data_shape``."""
  m = config.model
  return Model(tuple(m.hidden), m.latent_dim, common.as_shape(m, data_shape), m.activation,
               common.output_activation(m), m.net, tuple(m.conv_channels), common.compute_dtype(m),
               num_components=config.vamp.num_components, clip_pseudo_inputs=m.likelihood == 'bernoulli')


def log_prior(model: Model, params, z: jax.Array) -> jax.Array:
  """``log p(z)`` of the VampPrior for ``z_...xZ`` (any leading shape), nats."""
  means, log_vars = model.apply(params, method=Model.prior)
  z_NxZ = z.reshape(-1, z.shape[-1])
  return losses.gaussian_mixture_log_density(z_NxZ, means, log_vars).reshape(z.shape[:-1])


def sample_terms(model: Model, config: ml_collections.ConfigDict, params, x_BxD, key, hp):
  """``(recon_B, kl_B, mean_BxZ)``: ``-log p(x|z)`` and ``log q(z|x) - log p(z)`` (the one-sample KL
  estimate), nats per example, of ``z ~ q(z|x_tilde)``; the key's halves corrupt and sample."""
  recon, mean, log_var, z = vae.sample_terms(model, config, params, x_BxD, key, hp)
  log_q = -losses.gaussian_nll(mean, z, log_var)
  return recon, log_q - log_prior(model, params, z), mean


def make_log_weights(model: Model, config: ml_collections.ConfigDict) -> Callable:
  """``log_weights(params, x_BxD, key, k, hp) -> k x B``: ``log p(x|z_i) + kl_weight * (log p(z_i) - log
  q(z_i|x))`` with the VampPrior's ``log p``, ``z_i ~ q(z|x)``, nats; ``kl_weight = 1`` without ``hp`` (the
  true weights, for ``test/nll``)."""
  recon_loss = common.reconstruction_loss(config.model)
  corrupt = common.corrupt_fn(config)

  def log_weights(params, x_BxD, key, k, hp=None):
    corrupt_key, sample_key = jax.random.split(key)
    x_tilde = x_BxD if hp is None else corrupt(corrupt_key, x_BxD, hp)
    mean, log_var = model.apply(params, x_tilde, method=Model.encode)
    z_KxBxZ = vae.reparameterize(sample_key, mean, log_var, k)
    out = model.apply(params, z_KxBxZ.reshape(-1, mean.shape[-1]), method=Model.decode)
    log_px = -recon_loss(out.reshape(k, *x_BxD.shape), x_BxD[None])
    log_ratio = log_prior(model, params, z_KxBxZ) + losses.gaussian_nll(mean[None], z_KxBxZ, log_var[None])
    return log_px + (1.0 if hp is None else hp['kl_weight']) * log_ratio

  return log_weights


def make_objective(model: Model, config: ml_collections.ConfigDict) -> Callable:
  """``objective(params, x_BxD, key, hp) -> (loss, metrics)``, nats per example: ``mean(recon) +
  hp['kl_weight'] * mean(log q(z|x) - log p(z))`` (``vae.num_samples = 1``), else the negative IWAE bound
  of :func:`make_log_weights`. Metrics: ``loss``, ``recon``, ``kl`` (the one-sample estimate), ``neg_elbo``
  and, for ``k > 1``, ``neg_iwae``."""
  k = config.vae.num_samples
  log_weights = make_log_weights(model, config)

  def objective(params, x_BxD, key, hp):
    key, iwae_key = jax.random.split(key)
    recon, kl, _ = sample_terms(model, config, params, x_BxD, key, hp)
    metrics = {'recon': jnp.mean(recon), 'kl': jnp.mean(kl), 'neg_elbo': jnp.mean(recon + kl)}
    if k > 1:
      metrics['neg_iwae'] = loss = -jnp.mean(vae.log_mean_exp(log_weights(params, x_BxD, iwae_key, k, hp)))
    else:
      loss = jnp.mean(recon + hp['kl_weight'] * kl)
    return loss, {'loss': loss, **metrics}

  return objective


def make_eval(model: Model, config: ml_collections.ConfigDict) -> Callable:
  """``eval_fn(params, x_BxD, key, hp) -> per-example metrics``: ``neg_elbo``, ``recon``, ``kl`` (one-sample
  estimates with the VampPrior, nats per example), ``recon_mse`` (per pixel), ``recon_bce`` (Bernoulli)."""
  reconstruct = vae.make_reconstruct(model, config)

  def eval_fn(params, x_BxD, key, hp):
    recon, kl, mean = sample_terms(model, config, params, x_BxD, key, hp)
    x_hat = reconstruct(params, x_BxD, key, hp)[1]
    metrics = {'neg_elbo': recon + kl, 'recon': recon, 'kl': kl, 'recon_mse': losses.mse(x_hat, x_BxD),
               **common.code_stats(mean)}
    if config.model.likelihood == 'bernoulli':
      metrics['recon_bce'] = recon
    return metrics

  return eval_fn


def make_sample_prior(model: Model) -> Callable:
  """``sample_prior(params, key, num) -> z_NxZ``: draws of the VampPrior (a uniform component ``k``, then
  ``z ~ q(z|u_k)``). It needs the parameters, so it is not ``Family.sample_prior`` (``(key, num)``)."""

  def sample_prior(params, key, num):
    means, log_vars = model.apply(params, method=Model.prior)
    pick_key, normal_key = jax.random.split(key)
    k_N = jax.random.randint(pick_key, (num,), 0, means.shape[0])
    return vae.reparameterize(normal_key, means[k_N], log_vars[k_N])

  return sample_prior


def family(config: ml_collections.ConfigDict, data_shape: int | Sequence[int]) -> Family:
  """The VampPrior VAE's ``Family``: objective, eval, ``log_weights`` and ``sample`` with the VampPrior."""
  model = build(config, data_shape)
  decode = vae.make_decode(model, config)
  sample_prior = make_sample_prior(model)
  return Family(model=model, init=lambda key, x_BxD: vae.init(model, key, x_BxD), eval=make_eval(model, config),
                reconstruct=vae.make_reconstruct(model, config), encode=vae.make_encode(model, config),
                decode=decode, objective=make_objective(model, config),
                sample=lambda params, key, num: decode(params, sample_prior(params, key, num)),
                log_weights=make_log_weights(model, config))
