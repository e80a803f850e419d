"""FactorVAE (Kim & Mnih 2018, Disentangling by Factorising, Sec. 2).

The VAE of ``aelab/models/vae.py`` plus ``gamma * TC`` (``gamma = hp['tc_weight']``, ``factor_vae.tc_weight``),
the total correlation ``KL(q(z) || prod_j q(z_j))`` estimated by the density-ratio trick: a discriminator
``D`` (an MLP with widths ``factor_vae.disc_hidden``, leaky ReLU, one logit) learns to tell samples of ``q(z)``
from samples of ``prod_j q(z_j)``, made by permuting each code dimension independently across the batch
(Algorithm 1), and ``TC ~ E[log D(z) / (1 - D(z))] = E[logit(z)]``. Each train step, one jitted pure
function, updates the VAE (``config.optimizer``, the discriminator held fixed) and then the discriminator
(Adam, ``factor_vae.disc_learning_rate``, ``b1 = 0.5``, ``b2 = 0.9`` as the paper) on the same batch's codes,
as disentanglement_lib's ``FactorVAE``. Parameters: ``{'vae': vae params, 'discriminator': MLP params}``.
"""
import dataclasses
from typing import Callable, NamedTuple, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax

from aelab.errors import check
from aelab.nn import losses
from aelab.nn.schedules import kl_warmup_factor
from aelab.models import vae
from aelab.models.family import Family

SECTION = 'factor_vae'
CONFIG = {
    'tc_weight': (6.0, 'gamma, the weight of the total correlation (Kim & Mnih 2018, Eq. 2)'),
    'disc_hidden': ((1000,) * 6, "widths of the discriminator's leaky-ReLU layers"),
    'disc_learning_rate': (1e-4, "the discriminator's Adam learning rate"),
}
BUILDS_ON = ('vae',)  # the VAE's section and validation too
HYPERPARAMS = {**vae.HYPERPARAMS, 'tc_weight': 'factor_vae.tc_weight'}


def validate(config: ml_collections.ConfigDict) -> None:
  """Checks ``config.factor_vae`` (``vae.validate`` has run). Raises ConfigError naming the field."""
  f = config.factor_vae
  check(f.tc_weight >= 0, f'factor_vae.tc_weight={f.tc_weight} (gamma) must be >= 0.')
  check(all(isinstance(w, int) and w >= 1 for w in f.disc_hidden),
        f'factor_vae.disc_hidden={f.disc_hidden} must be a tuple of positive integers.')
  check(f.disc_learning_rate > 0, f'factor_vae.disc_learning_rate={f.disc_learning_rate} must be > 0.')
  vae.check_elbo_only(config)


class Discriminator(nn.Module):
  """``z_BxZ -> logits_B``: an MLP with leaky ReLU hidden layers and one logit (``z`` from ``q(z)``)."""
  hidden: tuple[int, ...]

  @nn.compact
  def __call__(self, z_BxZ: jax.Array) -> jax.Array:
    h = z_BxZ
    for width in self.hidden:
      h = nn.leaky_relu(nn.Dense(width)(h), 0.2)
    return nn.Dense(1)(h)[:, 0]


class Model(NamedTuple):
  """The VAE (a ``vae.Model``) and the discriminator on codes."""
  vae: vae.Model
  discriminator: Discriminator


def permute_dims(key: jax.Array, z_BxZ: jax.Array) -> jax.Array:
  """Each column of ``z`` permuted independently over the batch: samples of ``prod_j q(z_j)``
  (Kim & Mnih 2018, Algorithm 1)."""
  keys = jax.random.split(key, z_BxZ.shape[1])
  return jax.vmap(lambda k, col: jax.random.permutation(k, col), in_axes=(0, 1), out_axes=1)(keys, z_BxZ)


def make_update(model: Model, config: ml_collections.ConfigDict, tx_vae: optax.GradientTransformation):
  """``(init_opt_state(params), train_step(state, x_BxD, key, hp))``: the VAE step on ``recon +
  kl_weight * KL + tc_weight * TC`` (``tx_vae``), then the discriminator's cross-entropy step
  ``-log D(z) - log(1 - D(permuted z))`` on the codes sampled in the VAE step (gradient stopped).

  Metrics: the VAE's (``loss``, ``recon``, ``kl``, ``neg_elbo``), ``tc`` (the estimate), ``disc_loss``
  (nats, ``2 log 2`` at chance) and ``disc_accuracy``.
  """
  d = config.factor_vae
  tx_disc = optax.adam(d.disc_learning_rate, b1=0.5, b2=0.9)

  def vae_loss(vae_params, disc_params, x_BxD, key, hp):
    recon, mean, log_var, z = vae.sample_terms(model.vae, config, vae_params, x_BxD, key, hp)
    kl = jnp.mean(losses.kl_standard_normal(mean, log_var))
    tc = jnp.mean(model.discriminator.apply(disc_params, z))
    loss = jnp.mean(recon) + hp['kl_weight'] * kl + hp['tc_weight'] * tc
    metrics = {'loss': loss, 'recon': jnp.mean(recon), 'kl': kl, 'neg_elbo': jnp.mean(recon) + kl, 'tc': tc}
    return loss, (metrics, z)

  def disc_loss(disc_params, z_BxZ, z_perm_BxZ):
    logits_q = model.discriminator.apply(disc_params, z_BxZ)
    logits_perm = model.discriminator.apply(disc_params, z_perm_BxZ)
    loss = jnp.mean(losses.sigmoid_bce(logits_q, 1.0) + losses.sigmoid_bce(logits_perm, 0.0))
    return loss, jnp.mean(jnp.concatenate([logits_q > 0, logits_perm < 0]))

  def init_opt_state(params):
    return {'vae': tx_vae.init(params['vae']), 'disc': tx_disc.init(params['discriminator'])}

  def train_step(state, x_BxD, key, hp):
    vae_key, perm_key = jax.random.split(key)
    params, opt = state['params'], state['opt_state']
    hp = {**hp, 'kl_weight': hp['kl_weight'] * kl_warmup_factor(state['step'], hp['kl_warmup_steps'])}
    grads, (metrics, z) = jax.grad(vae_loss, has_aux=True)(params['vae'], params['discriminator'], x_BxD, vae_key, hp)
    vae_params, vae_opt = _step(tx_vae, grads, opt['vae'], params['vae'])
    z = jax.lax.stop_gradient(z)
    (d_loss, d_acc), grads = jax.value_and_grad(disc_loss, has_aux=True)(
        params['discriminator'], z, permute_dims(perm_key, z))
    disc_params, disc_opt = _step(tx_disc, grads, opt['disc'], params['discriminator'])
    new_state = {'step': state['step'] + 1, 'params': {'vae': vae_params, 'discriminator': disc_params},
                 'opt_state': {'vae': vae_opt, 'disc': disc_opt}}
    return new_state, {**metrics, 'disc_loss': d_loss, 'disc_accuracy': d_acc}

  return init_opt_state, train_step


def _step(tx: optax.GradientTransformation, grads, opt_state, params):
  updates, opt_state = tx.update(grads, opt_state, params)
  return optax.apply_updates(params, updates), opt_state


def _on_vae(fn: Callable | None) -> Callable | None:
  """Lifts ``fn(vae_params, ...)`` to the FactorVAE's ``params`` tree."""
  return None if fn is None else (lambda params, *args: fn(params['vae'], *args))


def family(config: ml_collections.ConfigDict, data_shape: int | Sequence[int]) -> Family:
  """The FactorVAE's ``Family``: the VAE's functions on ``params['vae']`` and its own two-optimizer update."""
  inner = vae.family(config, data_shape)
  model = Model(inner.model, Discriminator(tuple(config.factor_vae.disc_hidden)))

  def init(key, x_BxD):
    vae_key, disc_key = jax.random.split(key)
    vae_params = inner.init(vae_key, x_BxD)
    return {'vae': vae_params, 'discriminator': model.discriminator.init(disc_key, inner.encode(vae_params, x_BxD))}

  return dataclasses.replace(
      inner, model=model, init=init, eval=_on_vae(inner.eval), reconstruct=_on_vae(inner.reconstruct),
      encode=_on_vae(inner.encode), decode=_on_vae(inner.decode), objective=None,
      make_update=lambda tx: make_update(model, config, tx), sample=_on_vae(inner.sample),
      log_weights=_on_vae(inner.log_weights))
