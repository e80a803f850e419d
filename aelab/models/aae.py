"""Adversarial autoencoder (Makhzani et al. 2016, Adversarial Autoencoders, Sec. 2).

A deterministic autoencoder (``aelab.models.ae``: ``model.net``, ``model.hidden``, ``model.likelihood``)
whose code distribution is matched to a prior ``p(z)`` by a GAN on codes: a discriminator ``D`` (an MLP
with widths ``aae.disc_hidden`` and one logit) learns to tell prior samples from encoder outputs, and
the encoder learns to fool it. Each train step is the paper's two phases, in one jitted pure function:

1. reconstruction: the autoencoder's loss (``model.likelihood``, + ``penalty``), ``config.optimizer``;
2. regularization: the discriminator's cross-entropy ``-log D(z_prior) - log(1 - D(z_code))``
   (Adam, ``aae.disc_learning_rate``), then the encoder's ``hp['adversarial_weight'] * -log D(f(x))``
   (Adam, ``aae.gen_learning_rate``).

Priors (``aae.prior``): ``gaussian`` (N(0, I)) or ``mixture``: ``aae.mixture_components`` Gaussians of
std ``aae.mixture_std`` with means evenly spaced on a circle of radius ``aae.mixture_radius``, 2-D only.
Parameters: ``{'autoencoder': ae params, 'discriminator': MLP params}``.
"""
import math
from typing import Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import optax

from aelab.errors import check, check_choice
from aelab.nn import losses, nets
from aelab.models import ae, common
from aelab.models.family import COMMON_HYPERPARAMS, Family

SECTION = 'aae'
CONFIG = {
    'prior': ('gaussian', "p(z): 'gaussian' (N(0, I)) or 'mixture' (Gaussians on a circle, 2-D codes)"),
    'disc_hidden': ((256, 256), "widths of the discriminator's hidden layers"),
    'disc_learning_rate': (1e-4, "the discriminator's Adam learning rate"),
    'gen_learning_rate': (1e-4, "the encoder's Adam learning rate as generator"),
    'adversarial_weight': (1.0, "weight of the encoder's adversarial loss"),
    'mixture_components': (10, 'Gaussians of the mixture prior'),
    'mixture_radius': (4.0, 'radius of the circle of the mixture means'),
    'mixture_std': (0.5, 'std of each Gaussian of the mixture prior'),
}
BUILDS_ON = ('ae',)  # the autoencoder's validation too
PRIORS = ('gaussian', 'mixture')
HYPERPARAMS = {**COMMON_HYPERPARAMS, 'adversarial_weight': 'aae.adversarial_weight'}


def validate(config: ml_collections.ConfigDict) -> None:
  """Checks ``config.aae`` and the prior's fit to ``model.latent_dim``. Raises ConfigError naming the field."""
  a = config.aae
  check_choice(a.prior, PRIORS, 'aae.prior')
  check(a.prior != 'mixture' or config.model.latent_dim == 2, 'aae.prior=mixture is a mixture of Gaussians on a '
        f'circle in 2-D, but model.latent_dim={config.model.latent_dim}: set --config.model.latent_dim=2 or '
        'aae.prior=gaussian.')
  check(all(isinstance(w, int) and w >= 1 for w in a.disc_hidden),
        f'aae.disc_hidden={a.disc_hidden} must be a tuple of positive integers.')
  for field in ('disc_learning_rate', 'gen_learning_rate', 'mixture_radius', 'mixture_std'):
    check(a[field] > 0 and math.isfinite(a[field]), f'aae.{field}={a[field]} must be a positive number.')
  check(a.adversarial_weight >= 0, f'aae.adversarial_weight={a.adversarial_weight} must be >= 0.')
  check(a.mixture_components >= 1, f'aae.mixture_components={a.mixture_components} must be >= 1.')


class Model(NamedTuple):
  """The autoencoder (an ``ae.Model``) and the discriminator on codes (``nets.MLP``, one logit)."""
  autoencoder: ae.Model
  discriminator: nets.MLP


def build(config: ml_collections.ConfigDict, data_shape: int | Sequence[int]) -> Model:
  """The autoencoder of ``config.model`` and the discriminator of ``config.aae``.
  Raises ValueError for a mixture prior on a latent that is not 2-D."""
  if config.aae.prior == 'mixture' and config.model.latent_dim != 2:
    raise ValueError(f'aae.prior=mixture needs model.latent_dim=2, got {config.model.latent_dim}.')
  return Model(ae.build(config, data_shape), nets.MLP((*config.aae.disc_hidden, 1), config.model.activation,
                                                               dtype=common.compute_dtype(config.model)))


def init(model: Model, key: jax.Array, x_BxD: jax.Array):
  """Initial parameters ``{'autoencoder': ..., 'discriminator': ...}`` for inputs shaped like ``x_BxD``."""
  ae_key, disc_key = jax.random.split(key)
  ae_params = ae.init(model.autoencoder, ae_key, x_BxD)
  z = model.autoencoder.apply(ae_params, x_BxD, method=ae.Model.encode)
  return {'autoencoder': ae_params, 'discriminator': model.discriminator.init(disc_key, z)}


def mixture_means(num_components: int, radius: float) -> jax.Array:
  """Means of the mixture prior: ``num_components x 2`` points evenly spaced on a circle."""
  angles = 2.0 * jnp.pi * jnp.arange(num_components) / num_components
  return radius * jnp.stack([jnp.cos(angles), jnp.sin(angles)], axis=-1)


def sample_prior(config: ml_collections.ConfigDict, key: jax.Array, num: int) -> jax.Array:
  """``num`` samples of ``p(z)`` (``aae.prior``): ``num x latent_dim``."""
  normal_key, component_key = jax.random.split(key)
  eps = jax.random.normal(normal_key, (num, config.model.latent_dim))
  if config.aae.prior == 'gaussian':
    return eps
  a = config.aae
  component = jax.random.randint(component_key, (num,), 0, a.mixture_components)
  return mixture_means(a.mixture_components, a.mixture_radius)[component] + a.mixture_std * eps


def _on_autoencoder(fn: Callable) -> Callable:
  """Lifts ``fn(ae_params, ...)`` to the AAE's ``params`` tree."""
  return lambda params, *args: fn(params['autoencoder'], *args)


def make_update(model: Model, config: ml_collections.ConfigDict, tx_recon: optax.GradientTransformation):
  """``(init_opt_state(params), train_step)``: three optax optimizers (``tx_recon``, the reconstruction
  phase's ``config.optimizer`` over the autoencoder; the discriminator's; the encoder's as generator)
  updated in one pure ``train_step(state, x_BxD, key, hp)``.

  Metrics: ``loss`` and ``recon`` (reconstruction phase), ``disc_loss`` (nats per example, ``2 log 2`` at
  chance), ``gen_loss`` (unweighted), ``disc_accuracy`` (on prior and code samples together).
  """
  tx_disc = optax.adam(config.aae.disc_learning_rate, b1=0.5)
  tx_gen = optax.adam(config.aae.gen_learning_rate, b1=0.5)
  recon_objective = ae.make_objective(model.autoencoder, config)
  encode = ae.make_encode(model.autoencoder, config)
  discriminate = lambda params, z: model.discriminator.apply(params, z)[:, 0]  # noqa: E731  (logits B)

  def init_opt_state(params):
    return {'recon': tx_recon.init(params['autoencoder']), 'disc': tx_disc.init(params['discriminator']),
            'gen': tx_gen.init(_encoder_params(params['autoencoder']))}

  def disc_loss(disc_params, z_prior, z_code):
    logits_prior, logits_code = discriminate(disc_params, z_prior), discriminate(disc_params, z_code)
    loss = jnp.mean(losses.sigmoid_bce(logits_prior, 1.0)
                    + losses.sigmoid_bce(logits_code, 0.0))
    return loss, jnp.mean(jnp.concatenate([logits_prior > 0, logits_code < 0]))

  def gen_loss(encoder_params, ae_params, disc_params, x_BxD):
    z = encode(_with_encoder(ae_params, encoder_params), x_BxD)
    return jnp.mean(losses.sigmoid_bce(discriminate(disc_params, z), 1.0))

  def train_step(state, x_BxD, key, hp):
    recon_key, prior_key = jax.random.split(key)
    params, opt = state['params'], state['opt_state']
    grads, metrics = jax.grad(recon_objective, has_aux=True)(params['autoencoder'], x_BxD, recon_key, hp)
    ae_params, recon_opt = _step(tx_recon, grads, opt['recon'], params['autoencoder'])
    z_prior = sample_prior(config, prior_key, x_BxD.shape[0])
    z_code = encode(ae_params, x_BxD)
    (d_loss, d_acc), grads = jax.value_and_grad(disc_loss, has_aux=True)(params['discriminator'], z_prior, z_code)
    disc_params, disc_opt = _step(tx_disc, grads, opt['disc'], params['discriminator'])
    g_loss, grads = jax.value_and_grad(gen_loss)(_encoder_params(ae_params), ae_params, disc_params, x_BxD)
    grads = jax.tree.map(lambda g: hp['adversarial_weight'] * g, grads)
    encoder_params, gen_opt = _step(tx_gen, grads, opt['gen'], _encoder_params(ae_params))
    new_params = {'autoencoder': _with_encoder(ae_params, encoder_params), 'discriminator': disc_params}
    new_opt = {'recon': recon_opt, 'disc': disc_opt, 'gen': gen_opt}
    metrics = {**metrics, 'disc_loss': d_loss, 'gen_loss': g_loss, 'disc_accuracy': d_acc}
    return {'step': state['step'] + 1, 'params': new_params, 'opt_state': new_opt}, metrics

  return init_opt_state, train_step


def _step(tx: optax.GradientTransformation, grads, opt_state, params):
  updates, opt_state = tx.update(grads, opt_state, params)
  return optax.apply_updates(params, updates), opt_state


def _encoder_params(ae_params):
  return ae_params['params']['encoder']


def _with_encoder(ae_params, encoder_params):
  return {**ae_params, 'params': {**ae_params['params'], 'encoder': encoder_params}}


def make_objective(model: Model, config: ml_collections.ConfigDict) -> Callable:
  """The reconstruction phase's ``objective(params, x_BxD, key, hp)`` (the autoencoder's loss)."""
  return _on_autoencoder(ae.make_objective(model.autoencoder, config))


def make_eval(model: Model, config: ml_collections.ConfigDict) -> Callable:
  """Per-example metrics of the autoencoder (``ae.make_eval``) plus ``code_norm``: ``|z|`` (compare with
  the prior's, e.g. the mixture radius)."""
  eval_ae = ae.make_eval(model.autoencoder, config)
  encode = ae.make_encode(model.autoencoder, config)

  def eval_fn(params, x_BxD, key, hp):
    z = encode(params['autoencoder'], x_BxD)
    return {**eval_ae(params['autoencoder'], x_BxD, key, hp), 'code_norm': jnp.linalg.norm(z, axis=-1)}

  return eval_fn


def make_reconstruct(model: Model, config: ml_collections.ConfigDict) -> Callable:
  """``reconstruct(params, x_BxD, key, hp) -> (x_tilde, x_hat)`` of the autoencoder."""
  return _on_autoencoder(ae.make_reconstruct(model.autoencoder, config))


def make_encode(model: Model, config: ml_collections.ConfigDict) -> Callable:
  """``encode(params, x_BxD) -> z_BxZ``."""
  return _on_autoencoder(ae.make_encode(model.autoencoder, config))


def make_decode(model: Model, config: ml_collections.ConfigDict) -> Callable:
  """``decode(params, z_BxZ) -> x_BxD`` (reconstruction means)."""
  return _on_autoencoder(ae.make_decode(model.autoencoder, config))


def make_sample(model: Model, config: ml_collections.ConfigDict) -> Callable:
  """``sample(params, key, num) -> x_NxD``: decoded samples of the prior (the AAE as a generative model)."""
  decode = make_decode(model, config)
  return lambda params, key, num: decode(params, sample_prior(config, key, num))


def family(config: ml_collections.ConfigDict, data_shape: int | Sequence[int]) -> Family:
  """The AAE's ``Family`` (see ``aelab/models/family.py``): its own three-optimizer update, prior samples."""
  model = build(config, data_shape)
  return Family(model=model, init=lambda key, x_BxD: init(model, key, x_BxD), eval=make_eval(model, config),
                reconstruct=make_reconstruct(model, config), encode=make_encode(model, config),
                decode=make_decode(model, config), make_update=lambda tx: make_update(model, config, tx),
                sample=make_sample(model, config), sample_prior=lambda key, num: sample_prior(config, key, num))
