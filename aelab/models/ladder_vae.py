"""Ladder VAE (Sonderby et al. 2016, Ladder Variational Autoencoders): a hierarchy of ``L >= 2`` Gaussian levels.

Levels ``z_1 .. z_L`` of sizes ``(model.latent_dim, *ladder_vae.upper_latent_dims)``. Generative model, top
down: ``p(z_L) = N(0, I)``, ``p(z_i|z_{i+1}) = N(mu_p, diag sigma_p^2)`` (an MLP of width
``ladder_vae.level_hidden[i]``), ``p(x|z_1)`` the decoder of ``model.hidden``. Inference: a deterministic
bottom-up pass (the encoder of ``model.hidden``, then one dense layer per level) gives ``(mu_hat_i,
sigma_hat_i)``; the top-down pass merges each with the generative ``p(z_i|z_{i+1})`` by precision weighting,
``q(z_i|.) = N(mu_q, sigma_q^2)`` (Eq. 17-19), and samples ``z_i`` from it. The loss is ``-log p(x|z_1) +
kl_weight * sum_i KL_i``, each level's KL to its prior in closed form given the sampled level above
(Eq. 5-6); ``vae.kl_weight`` and its warm-up (``vae.kl_warmup_steps``, Sec. 2.3) are the VAE's. Codes
(``encode``) are the posterior means of all levels, concatenated (``z_1`` first); ``decode`` reads ``z_1``.
Batch normalization of the paper is left out.
"""
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from aelab.errors import check
from aelab.models import common, vae
from aelab.models.family import COMMON_HYPERPARAMS, Family
from aelab.nn import distributions, losses, nets

SECTION = 'ladder_vae'
CONFIG = {
    'upper_latent_dims': ((16,), 'sizes of the levels above z_1 (whose size is model.latent_dim), bottom up'),
    'level_hidden': ((256,), 'width of the MLP between consecutive levels, one per upper level, bottom up'),
}
BUILDS_ON = ('vae',)
PENALTIES = ('none',)
HYPERPARAMS = {**COMMON_HYPERPARAMS, 'kl_weight': 'vae.kl_weight', 'kl_warmup_steps': 'vae.kl_warmup_steps'}


def validate(config: ml_collections.ConfigDict) -> None:
  """Checks ``config.ladder_vae`` and the VAE options it supports. Raises ConfigError naming the field."""
  c, v = config.ladder_vae, config.vae
  check(len(c.upper_latent_dims) >= 1 and all(isinstance(d, int) and d >= 1 for d in c.upper_latent_dims),
        f'ladder_vae.upper_latent_dims={c.upper_latent_dims} must name at least one level of a positive size.')
  check(len(c.level_hidden) == len(c.upper_latent_dims) and all(isinstance(w, int) and w >= 1 for w in c.level_hidden),
        f'ladder_vae.level_hidden={c.level_hidden} must give one positive width per upper level '
        f'({len(c.upper_latent_dims)}).')
  check(v.num_samples == 1 and v.free_bits == 0 and v.capacity_weight == 0, 'vae.num_samples, vae.free_bits and '
        'vae.capacity_weight are options of model.name=vae, not of the ladder VAE: set them to 1, 0 and 0.')
  check(len(config.model.hidden) >= 1, 'model.hidden must have at least one width (the bottom-up features).')


class Model(nn.Module):
  """Bottom-up ``encoder`` + heads, top-down ``prior`` steps, ``decoder``: see the module docstring."""
  hidden: tuple[int, ...]
  latent_dims: tuple[int, ...]
  level_hidden: tuple[int, ...]
  data_shape: Sequence[int]
  activation: str = 'relu'
  output_activation: str = 'identity'
  net: str = 'mlp'
  conv_channels: tuple[int, ...] = (32, 64)
  dtype: Any = jnp.float32

  def setup(self):
    self.encoder = nets.make_encoder(self.net, self.data_shape, self.hidden[:-1], self.hidden[-1], self.activation,
                                     self.activation, self.conv_channels, self.dtype)
    self.up = [nn.Dense(w, name=f'up_{i}') for i, w in enumerate(self.level_hidden)]
    self.heads = [nn.Dense(2 * z, name=f'q_head_{i}') for i, z in enumerate(self.latent_dims)]
    self.down = [nn.Dense(w, name=f'down_{i}') for i, w in enumerate(self.level_hidden)]
    self.prior_heads = [nn.Dense(2 * z, name=f'p_head_{i}') for i, z in enumerate(self.latent_dims[:-1])]
    self.decoder = nets.make_decoder(self.net, self.data_shape, self.hidden[::-1], self.activation,
                                     self.output_activation, self.conv_channels, self.dtype)

  def bottom_up(self, x_BxD: jax.Array) -> list[tuple[jax.Array, jax.Array]]:
    """``[(mu_hat_i, log_var_hat_i)]`` of every level, bottom first."""
    d = self.encoder(x_BxD)
    out = [tuple(jnp.split(self.heads[0](d), 2, axis=-1))]
    for i, layer in enumerate(self.up):
      d = nets.activation(self.activation)(layer(d))
      out.append(tuple(jnp.split(self.heads[i + 1](d), 2, axis=-1)))
    return out

  def prior_step(self, i: int, z_above_BxZ: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(mu_p, log_var_p)`` of ``p(z_i|z_{i+1})`` (``i`` counts from 0 at the bottom)."""
    h = nets.activation(self.activation)(self.down[i](z_above_BxZ))
    mean, log_var = jnp.split(self.prior_heads[i](h), 2, axis=-1)
    return mean, log_var

  def infer(self, x_BxD: jax.Array, key: jax.Array, sample: bool = True) -> dict:
    """The top-down inference pass: ``z`` (levels concatenated, ``B x sum Z_i``), per-level ``kl`` (``L x B``),
    ``log_q`` and ``log_p`` (``B``, nats); with ``sample=False`` each level takes its posterior mean."""
    ups, keys = self.bottom_up(x_BxD), jax.random.split(key, len(self.latent_dims))
    mean, log_var = ups[-1]
    z = vae.reparameterize(keys[-1], mean, log_var) if sample else mean
    zs, kls = [z], [losses.kl_standard_normal(mean, log_var)]
    log_q, log_p = -losses.gaussian_nll(mean, z, log_var), -losses.gaussian_nll(0.0, z)
    for i in reversed(range(len(self.latent_dims) - 1)):
      mean_p, log_var_p = self.prior_step(i, z)
      mean, log_var = distributions.precision_weighted_merge(*ups[i], mean_p, log_var_p)
      z = vae.reparameterize(keys[i], mean, log_var) if sample else mean
      zs.insert(0, z)
      kls.insert(0, distributions.kl_gaussians(mean, log_var, mean_p, log_var_p))
      log_q, log_p = log_q - losses.gaussian_nll(mean, z, log_var), log_p - losses.gaussian_nll(mean_p, z, log_var_p)
    return {'z': jnp.concatenate(zs, axis=-1), 'kl': jnp.stack(kls), 'log_q': log_q, 'log_p': log_p}

  def decode(self, z_BxZ: jax.Array) -> jax.Array:
    """Likelihood parameters from the bottom level ``z_1`` (the first ``latent_dims[0]`` entries)."""
    return self.decoder(z_BxZ[:, :self.latent_dims[0]])

  def sample_levels(self, key: jax.Array, num: int) -> jax.Array:
    """Ancestral samples of ``p(z_L) p(z_{L-1}|z_L) ...``, levels concatenated: ``num x sum Z_i``."""
    keys = jax.random.split(key, len(self.latent_dims))
    zs = [jax.random.normal(keys[-1], (num, self.latent_dims[-1]))]
    for i in reversed(range(len(self.latent_dims) - 1)):
      zs.insert(0, vae.reparameterize(keys[i], *self.prior_step(i, zs[0])))
    return jnp.concatenate(zs, axis=-1)

  def __call__(self, x_BxD: jax.Array, key: jax.Array):
    terms = self.infer(x_BxD, key)
    return terms, self.decode(terms['z']), self.sample_levels(key, 1)


def build(config: ml_collections.ConfigDict, data_shape: int | Sequence[int]) -> Model:
  """The ladder of ``config.model`` (bottom level ``model.latent_dim``) and ``config.ladder_vae``."""
  m, c = config.model, config.ladder_vae
  return Model(tuple(m.hidden), (m.latent_dim, *c.upper_latent_dims), tuple(c.level_hidden),
               common.as_shape(m, data_shape), m.activation, common.output_activation(m), m.net,
               tuple(m.conv_channels), common.compute_dtype(m))


def make_objective(model: Model, config: ml_collections.ConfigDict) -> Callable:
  """``objective(params, x_BxD, key, hp) -> (loss, metrics)``: ``mean(-log p(x|z_1) + hp['kl_weight'] * sum_i
  KL_i)``, nats per example. Metrics: ``loss``, ``recon``, ``kl`` (all levels), ``kl_<i>`` (level ``i``, 1 at
  the bottom), ``neg_elbo``."""
  recon_loss, corrupt = common.reconstruction_loss(config.model), common.corrupt_fn(config)

  def objective(params, x_BxD, key, hp):
    corrupt_key, sample_key = jax.random.split(key)
    terms = model.apply(params, corrupt(corrupt_key, x_BxD, hp), sample_key, method=Model.infer)
    recon = jnp.mean(recon_loss(model.apply(params, terms['z'], method=Model.decode), x_BxD))
    kl_L = jnp.mean(terms['kl'], axis=-1)
    loss = recon + hp['kl_weight'] * jnp.sum(kl_L)
    levels = {f'kl_{i + 1}': kl for i, kl in enumerate(kl_L)}
    return loss, {'loss': loss, 'recon': recon, 'kl': jnp.sum(kl_L), 'neg_elbo': recon + jnp.sum(kl_L), **levels}

  return objective


def make_log_weights(model: Model, config: ml_collections.ConfigDict) -> Callable:
  """``log_weights(params, x_BxD, key, k, hp=None) -> k x B``, nats: ``log p(x|z_1) + w (log p(z) - log q(z|x))``
  over all levels, ``w = hp['kl_weight']`` with ``hp``, else 1 (the NLL's weights)."""
  recon_loss = common.reconstruction_loss(config.model)

  def log_weights(params, x_BxD, key, k, hp=None):
    x_KB = jnp.tile(x_BxD, (k, 1))
    terms = model.apply(params, x_KB, key, method=Model.infer)
    log_px = -recon_loss(model.apply(params, terms['z'], method=Model.decode), x_KB)
    log_w = log_px + (1.0 if hp is None else hp['kl_weight']) * (terms['log_p'] - terms['log_q'])
    return log_w.reshape(k, x_BxD.shape[0])

  return log_weights


def make_encode(model: Model, config: ml_collections.ConfigDict) -> Callable:
  """``encode(params, x_BxD) -> z_BxZ``: the posterior means of all levels (top-down with means), concatenated."""
  return lambda params, x_BxD: model.apply(params, x_BxD, jax.random.key(0), False, method=Model.infer)['z']


def make_decode(model: Model, config: ml_collections.ConfigDict) -> Callable:
  """``decode(params, z_BxZ) -> x_BxD``: the likelihood mean given the codes' bottom level."""
  return lambda params, z_BxZ: common.mean_of(config.model, model.apply(params, z_BxZ, method=Model.decode))


def make_reconstruct(model: Model, config: ml_collections.ConfigDict) -> Callable:
  """``reconstruct(params, x_BxD, key, hp) -> (x_tilde, x_hat)``; ``x_hat`` decodes the posterior means."""
  return common.reconstruct_through_codes(config, make_encode(model, config), make_decode(model, config))


def make_eval(model: Model, config: ml_collections.ConfigDict) -> Callable:
  """``eval_fn(params, x_BxD, key, hp) -> {name: B}``: ``neg_elbo``, ``recon`` (``recon_bce`` for Bernoulli),
  ``kl`` and ``kl_<i>`` per level (nats per example, one sample), ``recon_mse`` (per pixel)."""
  recon_loss, reconstruct = common.reconstruction_loss(config.model), make_reconstruct(model, config)

  def eval_fn(params, x_BxD, key, hp):
    terms = model.apply(params, x_BxD, jax.random.split(key)[1], method=Model.infer)
    recon = recon_loss(model.apply(params, terms['z'], method=Model.decode), x_BxD)
    kl = jnp.sum(terms['kl'], axis=0)
    metrics = {'neg_elbo': recon + kl, 'recon': recon, 'kl': kl,
               'recon_mse': losses.mse(reconstruct(params, x_BxD, key, hp)[1], x_BxD),
               **{f'kl_{i + 1}': level for i, level in enumerate(terms['kl'])}}
    if config.model.likelihood == 'bernoulli':
      metrics['recon_bce'] = recon
    return metrics

  return eval_fn


def family(config: ml_collections.ConfigDict, data_shape: int | Sequence[int]) -> Family:
  """The ladder VAE's ``Family`` (see ``aelab/models/family.py``): ancestral samples of its learned prior."""
  model = build(config, data_shape)
  decode = make_decode(model, config)

  def sample(params, key, num):
    return decode(params, model.apply(params, key, num, method=Model.sample_levels))

  return Family(model=model, init=lambda key, x_BxD: model.init(key, x_BxD, key), eval=make_eval(model, config),
                reconstruct=make_reconstruct(model, config), encode=make_encode(model, config), decode=decode,
                objective=make_objective(model, config), log_weights=make_log_weights(model, config), sample=sample)
