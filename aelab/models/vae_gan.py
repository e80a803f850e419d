"""VAE/GAN (Larsen et al. 2016, Autoencoding beyond pixels using a learned similarity metric).

A VAE (``aelab.models.vae``: Gaussian posterior, ``N(0, I)`` prior, decoder as the GAN's generator) and a
discriminator ``Dis`` (an MLP of widths ``vae_gan.disc_hidden`` and one logit) on images. The reconstruction
error is measured in the discriminator's last hidden layer: ``L_llike = 1/2 |Dis_l(x) - Dis_l(x_tilde)|^2`` per
example (a Gaussian ``p(Dis_l(x)|z)`` of unit variance up to its constant, Eq. 7), ``x_tilde`` the decoded
posterior sample. With ``L_GAN = log Dis(x) + log(1 - Dis(x_tilde)) + log(1 - Dis(x_p))``, ``x_p`` decoded
prior samples (Eq. 9), each train step updates, in one jitted pure function (Algorithm 1):

- the encoder on ``kl_weight * KL + L_llike`` and the decoder on ``recon_weight * L_llike`` plus
  ``adversarial_weight`` times its non-saturating GAN loss ``-log Dis(x_tilde) - log Dis(x_p)``
  (one ``config.optimizer`` over the VAE's parameters; no GAN gradient reaches the encoder);
- the discriminator on ``-L_GAN`` (Adam, ``vae_gan.disc_learning_rate``).

The feature loss is no normalized likelihood of ``x``: the family has no ``log_weights`` (no ``test/nll``).
Parameters: ``{'vae': vae params, 'discriminator': ...}``.
"""
import math
from typing import Callable, NamedTuple, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax

from aelab.errors import check
from aelab.models import common, vae
from aelab.models.family import COMMON_HYPERPARAMS, Family
from aelab.nn import losses, nets, schedules

SECTION = 'vae_gan'
CONFIG = {
    'disc_hidden': ((512, 256), "widths of the discriminator's hidden layers; the last gives the features"),
    'disc_learning_rate': (1e-4, "the discriminator's Adam learning rate"),
    'recon_weight': (1.0, "gamma: the weight of the feature reconstruction in the decoder's loss (Eq. 10)"),
    'adversarial_weight': (1.0, "weight of the decoder's GAN loss"),
}
BUILDS_ON = ('vae',)
PENALTIES = ('none',)
HYPERPARAMS = {**COMMON_HYPERPARAMS, 'kl_weight': 'vae.kl_weight', 'kl_warmup_steps': 'vae.kl_warmup_steps',
               'recon_weight': 'vae_gan.recon_weight', 'adversarial_weight': 'vae_gan.adversarial_weight'}


def validate(config: ml_collections.ConfigDict) -> None:
  """Checks ``config.vae_gan`` and the VAE options it supports. Raises ConfigError naming the field."""
  c, v = config.vae_gan, config.vae
  check(len(c.disc_hidden) >= 1 and all(isinstance(w, int) and w >= 1 for w in c.disc_hidden),
        f'vae_gan.disc_hidden={c.disc_hidden} must be a non-empty tuple of positive integers.')
  check(c.disc_learning_rate > 0 and math.isfinite(c.disc_learning_rate),
        f'vae_gan.disc_learning_rate={c.disc_learning_rate} must be a positive number.')
  check(c.recon_weight >= 0 and c.adversarial_weight >= 0, 'vae_gan.recon_weight and vae_gan.adversarial_weight '
        'must be >= 0.')
  check(v.num_samples == 1 and v.free_bits == 0 and v.capacity_weight == 0, 'vae.num_samples, vae.free_bits and '
        'vae.capacity_weight are options of model.name=vae, not of the VAE/GAN: set them to 1, 0 and 0.')


class Discriminator(nn.Module):
  """``x_BxD -> (logit_B, features_BxF)``: an MLP whose last hidden layer gives the features ``Dis_l(x)``."""
  hidden: tuple[int, ...]
  activation: str = 'relu'

  @nn.compact
  def __call__(self, x_BxD: jax.Array) -> tuple[jax.Array, jax.Array]:
    h = x_BxD
    for i, width in enumerate(self.hidden):
      h = nets.activation(self.activation)(nn.Dense(width, name=f'dense_{i}')(h))
    return nn.Dense(1, name='logit')(h)[:, 0], h


class Model(NamedTuple):
  """The VAE (a ``vae.Model``) and the discriminator on images."""
  vae: vae.Model
  discriminator: Discriminator


def build(config: ml_collections.ConfigDict, data_shape: int | Sequence[int]) -> Model:
  """The VAE of ``config.model`` and the discriminator of ``config.vae_gan``."""
  return Model(vae.build(config, data_shape), Discriminator(tuple(config.vae_gan.disc_hidden), config.model.activation))


def init(model: Model, key: jax.Array, x_BxD: jax.Array):
  """Initial parameters ``{'vae': ..., 'discriminator': ...}`` for inputs shaped like ``x_BxD``."""
  vae_key, disc_key = jax.random.split(key)
  return {'vae': vae.init(model.vae, vae_key, x_BxD), 'discriminator': model.discriminator.init(disc_key, x_BxD)}


def step_losses(model: Model, config: ml_collections.ConfigDict, vae_params, disc_params, x_BxD, key, hp) -> dict:
  """The three losses of Algorithm 1 from one forward pass (scalars, batch means): ``encoder``, ``decoder``,
  ``disc`` and their parts ``kl`` (nats per example), ``recon_features``, ``gen_loss``, ``disc_accuracy``. The
  key's first half samples the posterior, its second the prior."""
  sample_key, prior_key = jax.random.split(key)
  mean, log_var = model.vae.apply(vae_params, x_BxD, method=vae.Model.encode)
  z = vae.reparameterize(sample_key, mean, log_var)
  z_prior = jax.random.normal(prior_key, z.shape)
  decode = lambda v: common.mean_of(config.model, model.vae.apply(vae_params, v, method=vae.Model.decode))  # noqa: E731
  x_tilde, x_p = decode(z), decode(z_prior)
  (logit_x, feat_x), (logit_tilde, feat_tilde), (logit_p, _) = (
      model.discriminator.apply(disc_params, v) for v in (x_BxD, x_tilde, x_p))
  llike = jnp.mean(0.5 * jnp.sum(jnp.square(feat_x - feat_tilde), axis=-1))
  kl = jnp.mean(losses.kl_standard_normal(mean, log_var))
  gen = jnp.mean(losses.sigmoid_bce(logit_tilde, 1.0) + losses.sigmoid_bce(logit_p, 1.0))
  disc = jnp.mean(losses.sigmoid_bce(logit_x, 1.0) + losses.sigmoid_bce(logit_tilde, 0.0)
                  + losses.sigmoid_bce(logit_p, 0.0))
  accuracy = jnp.mean(jnp.concatenate([logit_x > 0, logit_tilde < 0, logit_p < 0]))
  return {'encoder': hp['kl_weight'] * kl + llike, 'decoder': hp['recon_weight'] * llike + hp['adversarial_weight']
          * gen, 'disc': disc, 'kl': kl, 'recon_features': llike, 'gen_loss': gen, 'disc_accuracy': accuracy}


def make_update(model: Model, config: ml_collections.ConfigDict, tx: optax.GradientTransformation):
  """``(init_opt_state(params), train_step)``: ``tx`` over the VAE (encoder and decoder gradients of their own
  losses), Adam over the discriminator. Metrics: ``loss`` (the encoder's: ``kl_weight * kl + recon_features``),
  ``kl``, ``recon_features``, ``gen_loss``, ``disc_loss`` (``3 log 2`` at chance), ``disc_accuracy``."""
  tx_disc = optax.adam(config.vae_gan.disc_learning_rate, b1=0.5)

  def init_opt_state(params):
    return {'vae': tx.init(params['vae']), 'disc': tx_disc.init(params['discriminator'])}

  def train_step(state, x_BxD, key, hp):
    hp = {**hp, 'kl_weight': hp['kl_weight'] * schedules.kl_warmup_factor(state['step'], hp['kl_warmup_steps'])}
    params, opt = state['params'], state['opt_state']
    parts = lambda v, d: step_losses(model, config, v, d, x_BxD, key, hp)  # noqa: E731
    with_parts = lambda v: (lambda p: (p['encoder'], p))(parts(v, params['discriminator']))  # noqa: E731
    g_enc, metrics = jax.grad(with_parts, has_aux=True)(params['vae'])
    g_dec = jax.grad(lambda v: parts(v, params['discriminator'])['decoder'])(params['vae'])
    g_disc = jax.grad(lambda d: parts(params['vae'], d)['disc'])(params['discriminator'])
    grads = {**g_enc, 'params': {'encoder': g_enc['params']['encoder'], 'decoder': g_dec['params']['decoder']}}
    vae_updates, vae_opt = tx.update(grads, opt['vae'], params['vae'])
    disc_updates, disc_opt = tx_disc.update(g_disc, opt['disc'], params['discriminator'])
    new_params = {'vae': optax.apply_updates(params['vae'], vae_updates),
                  'discriminator': optax.apply_updates(params['discriminator'], disc_updates)}
    metrics = {'loss': metrics['encoder'], 'disc_loss': metrics['disc'],
               **{k: metrics[k] for k in ('kl', 'recon_features', 'gen_loss', 'disc_accuracy')}}
    return {'step': state['step'] + 1, 'params': new_params, 'opt_state': {'vae': vae_opt, 'disc': disc_opt}}, metrics

  return init_opt_state, train_step


def _on_vae(fn: Callable) -> Callable:
  """Lifts ``fn(vae_params, ...)`` to the VAE/GAN's ``params`` tree."""
  return lambda params, *args: fn(params['vae'], *args)


def make_eval(model: Model, config: ml_collections.ConfigDict) -> Callable:
  """``eval_fn(params, x_BxD, key, hp) -> {name: B}``: the VAE's pixel metrics (``recon_mse`` per pixel, ``kl``;
  its ``neg_elbo`` under ``model.likelihood``, which this family does not train) and ``recon_features``."""
  eval_vae = vae.make_eval(model.vae, config)

  def eval_fn(params, x_BxD, key, hp):
    mean, _ = model.vae.apply(params['vae'], x_BxD, method=vae.Model.encode)
    x_hat = common.mean_of(config.model, model.vae.apply(params['vae'], mean, method=vae.Model.decode))
    (_, feat_x), (_, feat_hat) = (model.discriminator.apply(params['discriminator'], v) for v in (x_BxD, x_hat))
    return {**eval_vae(params['vae'], x_BxD, key, hp),
            'recon_features': 0.5 * jnp.sum(jnp.square(feat_x - feat_hat), axis=-1)}

  return eval_fn


def family(config: ml_collections.ConfigDict, data_shape: int | Sequence[int]) -> Family:
  """The VAE/GAN's ``Family`` (see ``aelab/models/family.py``): its own two-optimizer update, prior samples."""
  model = build(config, data_shape)
  return Family(model=model, init=lambda key, x_BxD: init(model, key, x_BxD), eval=make_eval(model, config),
                reconstruct=_on_vae(vae.make_reconstruct(model.vae, config)),
                encode=_on_vae(vae.make_encode(model.vae, config)), decode=_on_vae(vae.make_decode(model.vae, config)),
                make_update=lambda tx: make_update(model, config, tx),
                sample=_on_vae(vae.make_sample(model.vae, config)),
                sample_prior=lambda key, num: vae.sample_prior(config, key, num))
