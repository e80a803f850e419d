"""Schedules of traced hyperparameters over training steps (pure functions of the step)."""
import jax
import jax.numpy as jnp


def kl_warmup_factor(step: jax.Array, warmup_steps: jax.Array) -> jax.Array:
  """The KL warm-up factor ``min(1, step / warmup_steps)`` (1 when ``warmup_steps`` is 0): ``kl_weight``
  rises linearly from 0 at step 0 to its full value at ``warmup_steps`` (Bowman et al. 2016; Sonderby et
  al. 2016). The same ramp anneals a VAE's capacity (Burgess et al. 2018). Both arguments may be traced;
  returns a float32 scalar."""
  warmup_steps = jnp.asarray(warmup_steps, jnp.float32)
  ramp = jnp.minimum(1.0, jnp.asarray(step, jnp.float32) / jnp.maximum(warmup_steps, 1.0))
  return jnp.where(warmup_steps > 0, ramp, 1.0)


def gumbel_temperature(step: jax.Array, initial: jax.Array, minimum: jax.Array, anneal_rate: jax.Array,
                       interval: int = 1) -> jax.Array:
  """The Gumbel-softmax temperature ``max(minimum, initial * exp(-anneal_rate * t))`` at ``t = step`` rounded
  down to a multiple of ``interval`` steps (Jang et al. 2017, Categorical Reparameterization with
  Gumbel-Softmax, Sec. 4: ``tau = max(0.5, exp(-r t))`` updated every N steps). All but ``interval`` may
  be traced; returns a float32 scalar."""
  t = jnp.floor(jnp.asarray(step, jnp.float32) / interval) * interval
  return jnp.maximum(jnp.asarray(minimum, jnp.float32), initial * jnp.exp(-anneal_rate * t))
