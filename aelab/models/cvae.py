"""Conditional VAE (Sohn, Lee & Yan 2015, Learning Structured Output Representation using Deep Conditional
Generative Models; Kingma et al. 2014, Semi-supervised Learning with Deep Generative Models, model M2 with
observed labels).

The encoder ``q(z|x,y) = N(mean(x, y), diag exp(log_var(x, y)))`` and the decoder ``p(x|z,y)`` see the
one-hot label ``onehot(y)`` (``cvae.num_classes`` classes) concatenated to their input: ``[x, onehot(y)]`` and
``[z, onehot(y)]``. The prior ``p(z) = N(0, I)`` does not depend on ``y`` (Sohn et al. 2015, Sec. 4.1, the
"baseline" CVAE whose prior network is fixed). The loss is the VAE's (``vae.elbo_loss``) with ``log p(x|z)``
replaced by ``log p(x|z,y)``: ``E_q[-log p(x|z,y)] + kl_weight * KL(q(z|x,y) || p(z))``, the negative
conditional ELBO of Sohn et al. 2015, Eq. 4, for ``kl_weight = 1``; KL warm-up, free bits, annealed capacity
and the IWAE bound (``vae.num_samples``) as the VAE has them. ``log_weights`` give ``test/nll``, the
importance-sampled ``-log p(x|y)``.

A conditional family (``Family.num_classes > 0``): its functions take ``aelab.data.Labeled(x_BxD, y_B)`` (or
any pair ``(x_BxD, y_B)``) where the others take ``x_BxD``; ``decode(params, z_BxZ, y_B)`` and
``sample(params, key, num, y_N)`` decode given labels. The engine passes the labels only to such a family,
and refuses data without labels.
"""
import math
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from aelab.errors import check
from aelab.models import common, vae
from aelab.models.family import Family
from aelab.nn import losses, nets

SECTION = 'cvae'
CONFIG = {
    'num_classes': (10, 'C, the number of classes of the labels the encoder and decoder are conditioned on '
                        '(labels are class ids 0..C-1)'),
}
BUILDS_ON = ('vae',)
PENALTIES = ('none', 'l1')
HYPERPARAMS = dict(vae.HYPERPARAMS)


def validate(config: ml_collections.ConfigDict) -> None:
  """Checks ``config.cvae`` and the net (``vae.validate`` has run). Raises ConfigError naming the field."""
  c = config.cvae.num_classes
  check(isinstance(c, int) and not isinstance(c, bool) and c >= 2,
        f'cvae.num_classes={c!r} must be an integer >= 2 (the number of label classes).')
  check(config.model.net == 'mlp', f'model.net={config.model.net} is not supported by model.name=cvae (its '
        'encoder takes the one-hot label beside the flattened input): set --config.model.net=mlp.')


class Model(nn.Module):
  """``encode(x_BxD, y_B) -> (mean_BxZ, log_var_BxZ)`` of ``q(z|x,y)``; ``decode(z_BxZ, y_B) -> out_BxD`` (the
  parameters of ``p(x|z,y)``); MLPs on ``[x, onehot(y)]`` and ``[z, onehot(y)]``."""
  hidden: tuple[int, ...]
  latent_dim: int
  data_shape: Sequence[int]
  num_classes: int
  activation: str = 'relu'
  output_activation: str = 'identity'
  dtype: Any = jnp.float32

  def setup(self):
    self.encoder = nets.make_encoder('mlp', (math.prod(self.data_shape) + self.num_classes,), self.hidden,
                                     2 * self.latent_dim, self.activation, 'identity', dtype=self.dtype)
    self.decoder = nets.make_decoder('mlp', self.data_shape, self.hidden[::-1], self.activation,
                                     self.output_activation, dtype=self.dtype)

  def one_hot(self, y_B: jax.Array) -> jax.Array:
    return jax.nn.one_hot(y_B, self.num_classes, dtype=jnp.float32)

  def encode(self, x_BxD: jax.Array, y_B: jax.Array) -> tuple[jax.Array, jax.Array]:
    mean, log_var = jnp.split(self.encoder(jnp.concatenate([x_BxD, self.one_hot(y_B)], axis=-1)), 2, axis=-1)
    return mean, log_var

  def decode(self, z_BxZ: jax.Array, y_B: jax.Array) -> jax.Array:
    return self.decoder(jnp.concatenate([z_BxZ, self.one_hot(y_B)], axis=-1))

  def __call__(self, x_BxD: jax.Array, y_B: jax.Array, key: jax.Array):
    mean, log_var = self.encode(x_BxD, y_B)
    return mean, log_var, self.decode(vae.reparameterize(key, mean, log_var), y_B)


def build(config: ml_collections.ConfigDict, data_shape: int | Sequence[int]) -> Model:
  """The CVAE of ``config.model`` and ``config.cvae`` for examples of shape ``data_shape``."""
  m = config.model
  return Model(tuple(m.hidden), m.latent_dim, common.as_shape(m, data_shape), config.cvae.num_classes,
               m.activation, common.output_activation(m), common.compute_dtype(m))


def sample_terms(model: Model, config: ml_collections.ConfigDict, params, batch, key: jax.Array, hp
                 ) -> tuple[jax.Array, jax.Array, jax.Array]:
  """``(recon_B, mean_BxZ, log_var_BxZ)``: ``-log p(x|z,y)`` (nats per example) of one reparameterized sample
  ``z ~ q(z|x_tilde,y)`` of ``batch = Labeled(x_BxD, y_B)``, and the posterior's parameters; the key's halves
  corrupt ``x`` and sample."""
  x_BxD, y_B = batch
  corrupt_key, sample_key = jax.random.split(key)
  x_tilde = common.corrupt_fn(config)(corrupt_key, x_BxD, hp)
  mean, log_var = model.apply(params, x_tilde, y_B, method=Model.encode)
  out = model.apply(params, vae.reparameterize(sample_key, mean, log_var), y_B, method=Model.decode)
  return common.reconstruction_loss(config.model)(out, x_BxD), mean, log_var


def make_log_weights(model: Model, config: ml_collections.ConfigDict) -> Callable:
  """``log_weights(params, Labeled(x_BxD, y_B), key, k, hp=None) -> k x B``, nats: ``log p(x|z_i,y) +
  kl_weight * (log p(z_i) - log q(z_i|x,y))``, ``z_i ~ q(z|x,y)``; ``kl_weight = 1`` without ``hp`` (then
  ``log mean_k w`` is the IWAE bound on ``log p(x|y)``, Burda et al. 2016, Eq. 8, conditioned on ``y``)."""
  recon_loss = common.reconstruction_loss(config.model)
  corrupt = common.corrupt_fn(config)

  def log_weights(params, batch, key, k, hp=None):
    x_BxD, y_B = batch
    corrupt_key, sample_key = jax.random.split(key)
    x_tilde = x_BxD if hp is None else corrupt(corrupt_key, x_BxD, hp)
    mean, log_var = model.apply(params, x_tilde, y_B, method=Model.encode)
    z_KxBxZ = vae.reparameterize(sample_key, mean, log_var, k)
    y_KB = jnp.tile(y_B, k)
    out = model.apply(params, z_KxBxZ.reshape(-1, mean.shape[-1]), y_KB, method=Model.decode)
    log_px = -recon_loss(out.reshape(k, *x_BxD.shape), x_BxD[None])
    log_prior_ratio = losses.gaussian_nll(mean[None], z_KxBxZ, log_var[None]) - losses.gaussian_nll(0.0, z_KxBxZ)
    return log_px + (1.0 if hp is None else hp['kl_weight']) * log_prior_ratio

  return log_weights


def make_objective(model: Model, config: ml_collections.ConfigDict) -> Callable:
  """``objective(params, Labeled(x_BxD, y_B), key, hp) -> (loss, metrics)``, nats per example: the VAE's loss
  (``vae.elbo_loss``: ``kl_weight``, free bits, capacity, IWAE ``k``) of ``p(x|z,y)`` and ``q(z|x,y)``, plus
  ``hp['penalty_weight']`` times the penalty of the posterior mean. Metrics: ``loss``, ``recon``, ``kl``,
  ``neg_elbo`` (and ``neg_iwae`` for ``k > 1``)."""
  penalty = common.penalty(config.penalty.name)
  k = config.vae.num_samples
  log_weights = make_log_weights(model, config)

  def objective(params, batch, key, hp):
    key, iwae_key = jax.random.split(key) if k > 1 else (key, None)
    recon, mean, log_var = sample_terms(model, config, params, batch, key, hp)
    pen = penalty(mean, hp)
    loss, metrics = vae.elbo_loss(recon, mean, log_var, hp, lambda: log_weights(params, batch, iwae_key, k, hp), k)
    loss = loss + hp['penalty_weight'] * pen
    return loss, common.with_penalty(config, {'loss': loss, **metrics}, pen)

  return objective


def make_encode(model: Model) -> Callable:
  """``encode(params, Labeled(x_BxD, y_B)) -> mean_BxZ``: the posterior mean ``E_q[z|x,y]`` (the code)."""
  return lambda params, batch: model.apply(params, *batch, method=Model.encode)[0]


def make_decode(model: Model, config: ml_collections.ConfigDict) -> Callable:
  """``decode(params, z_BxZ, y_B) -> x_BxD``: the mean of ``p(x|z,y)``."""
  return lambda params, z_BxZ, y_B: common.mean_of(config.model, model.apply(params, z_BxZ, y_B, method=Model.decode))


def make_reconstruct(model: Model, config: ml_collections.ConfigDict) -> Callable:
  """``reconstruct(params, Labeled(x_BxD, y_B), key, hp) -> (x_tilde, x_hat)``: ``x_hat`` decodes the posterior
  mean of the (corrupted) input with its label."""
  corrupt, encode, decode = common.corrupt_fn(config), make_encode(model), make_decode(model, config)

  def reconstruct(params, batch, key, hp):
    x_BxD, y_B = batch
    x_tilde = corrupt(jax.random.split(key)[0], x_BxD, hp)
    return x_tilde, decode(params, encode(params, (x_tilde, y_B)), y_B)

  return reconstruct


def make_eval(model: Model, config: ml_collections.ConfigDict) -> Callable:
  """``eval_fn(params, Labeled(x_BxD, y_B), key, hp) -> per-example metrics`` (shape ``B``): ``neg_elbo``,
  ``recon`` (= ``recon_bce`` for Bernoulli), ``kl`` in nats per example (one posterior sample; the negative
  conditional ELBO, a bound on ``-log p(x|y)``), ``recon_mse`` per pixel against the clean ``x``."""
  reconstruct = make_reconstruct(model, config)

  def eval_fn(params, batch, key, hp):
    recon, mean, log_var = sample_terms(model, config, params, batch, key, hp)
    kl = losses.kl_standard_normal(mean, log_var)
    x_hat = reconstruct(params, batch, key, hp)[1]
    metrics = {'neg_elbo': recon + kl, 'recon': recon, 'kl': kl, 'recon_mse': losses.mse(x_hat, batch[0]),
               **common.code_stats(mean)}
    if config.model.likelihood == 'bernoulli':
      metrics['recon_bce'] = recon
    return metrics

  return eval_fn


def make_sample(model: Model, config: ml_collections.ConfigDict) -> Callable:
  """``sample(params, key, num, y_N) -> x_NxD``: means of ``p(x|z,y)`` for ``z ~ N(0, I)`` and the labels
  ``y_N`` (int class ids)."""
  decode = make_decode(model, config)
  return lambda params, key, num, y_N: decode(params, vae.sample_prior(config, key, num), y_N)


def family(config: ml_collections.ConfigDict, data_shape: int | Sequence[int]) -> Family:
  """The CVAE's ``Family``: a conditional one (``num_classes = cvae.num_classes``), see the module docstring."""
  model = build(config, data_shape)

  def init(key, x_1xD):
    return model.init(key, x_1xD, jnp.zeros(x_1xD.shape[:1], jnp.int32), key)

  return Family(model=model, init=init, eval=make_eval(model, config), reconstruct=make_reconstruct(model, config),
                encode=make_encode(model), decode=make_decode(model, config), objective=make_objective(model, config),
                sample=make_sample(model, config), log_weights=make_log_weights(model, config),
                sample_prior=lambda key, num: vae.sample_prior(config, key, num),
                num_classes=config.cvae.num_classes)
