"""Pieces shared by the model families: likelihoods, code penalties, reconstruction metrics."""
from typing import Callable

import jax
import jax.numpy as jnp
import ml_collections

from aelab import corruption, losses

LIKELIHOODS = ('bernoulli', 'gaussian', 'mse')
PENALTIES = ('none', 'l1', 'kl_sparsity')

Hyperparams = dict[str, jax.Array]


def output_activation(model_config: ml_collections.ConfigDict) -> str:
  """Decoder output activation: logits (identity) for Bernoulli, else ``model.output_activation``."""
  return 'identity' if model_config.likelihood == 'bernoulli' else model_config.output_activation


def reconstruction_loss(model_config: ml_collections.ConfigDict) -> Callable[[jax.Array, jax.Array], jax.Array]:
  """Per-example ``loss(decoder_out_BxD, x_BxD) -> B`` for ``model.likelihood``.

  ``bernoulli``: cross-entropy with logits, nats per example. ``gaussian``: ``-log N(x; mean, std^2)``
  with fixed ``model.likelihood_std``, nats per example. ``mse``: mean squared error per pixel.
  """
  name = model_config.likelihood
  if name == 'bernoulli':
    return losses.bce_with_logits
  if name == 'gaussian':
    log_var = 2.0 * jnp.log(model_config.likelihood_std)
    return lambda out, x: losses.gaussian_nll(out, x, log_var)
  if name == 'mse':
    return losses.mse
  raise ValueError(f'Unknown model.likelihood {name!r}; choose one of {LIKELIHOODS}.')


def mean_of(model_config: ml_collections.ConfigDict, out_BxD: jax.Array) -> jax.Array:
  """The reconstruction ``E[x|z]`` from the decoder output (sigmoid of Bernoulli logits)."""
  return jax.nn.sigmoid(out_BxD) if model_config.likelihood == 'bernoulli' else out_BxD


def recon_mse(model_config: ml_collections.ConfigDict, out_BxD: jax.Array, x_BxD: jax.Array) -> jax.Array:
  """Squared error of the reconstruction mean against ``x``, per pixel: shape ``B``."""
  return losses.mse(mean_of(model_config, out_BxD), x_BxD)


def penalty(name: str) -> Callable[[jax.Array, Hyperparams], jax.Array]:
  """Code penalty ``fn(code_BxZ, hp) -> scalar`` (unweighted; the objective multiplies by
  ``hp['penalty_weight']``). ``l1``: batch mean of ``sum_j |z_j|``; ``kl_sparsity``: KL to
  ``hp['sparsity_target']`` of the batch-mean activations."""
  if name == 'none':
    return lambda code, hp: jnp.zeros(())
  if name == 'l1':
    return lambda code, hp: jnp.mean(losses.l1_activity(code))
  if name == 'kl_sparsity':
    return lambda code, hp: losses.kl_sparsity(code, hp['sparsity_target'])
  raise ValueError(f'Unknown penalty.name {name!r}; choose one of {PENALTIES}.')


def with_penalty(config: ml_collections.ConfigDict, metrics: dict, value: jax.Array) -> dict:
  """Adds the unweighted penalty to ``metrics`` when the config has one."""
  return {**metrics, 'penalty': value} if config.penalty.name != 'none' else metrics


def corrupt_fn(config: ml_collections.ConfigDict) -> Callable[[jax.Array, jax.Array, Hyperparams], jax.Array]:
  """``fn(key, x, hp) -> x_tilde`` for ``config.corruption.name``."""
  return corruption.get(config.corruption.name, clip=config.corruption.clip)


def code_stats(code_BxZ: jax.Array) -> dict[str, jax.Array]:
  """Per-example code statistics: mean absolute activation and fraction of near-zero units (L0)."""
  return {
      'code_mean_abs': jnp.mean(jnp.abs(code_BxZ), axis=-1),
      'code_frac_zero': jnp.mean(jnp.abs(code_BxZ) < 1e-3, axis=-1),
  }
