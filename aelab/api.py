"""A trained run as Python objects, for notebooks: ``aelab.load(workdir)``.

  import aelab
  run = aelab.load('runs/vae')
  z = run.encode(x_NxD)                # codes (a VAE's posterior mean), N x Z
  x_hat = run.reconstruct(x_NxD)       # reconstruction means, N x D
  x = run.sample(16, seed=0)           # decoded prior samples (VAE, AAE), 16 x D
"""
import dataclasses
import json
import os
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from aelab import config as config_lib, data
from aelab.data import stream

from aelab.train import engine

from aelab.eval import metrics
from aelab.train.workdir import Workdir


class CheckpointError(RuntimeError):
  """A run's checkpoint could not be read (truncated, deleted or damaged files); the message says which."""


@dataclasses.dataclass
class Trained:
  """A trained run: its ``config``, ``params``, the epoch of its checkpoint, its ``Family``, and jitted
  functions of host or device arrays (``x_NxD`` flattened examples as in ``data.load``, ``z_NxZ`` codes).

  ``encode(x_NxD) -> z_NxZ``; ``decode(z_NxZ) -> x_NxD`` (likelihood means); ``reconstruct(x_NxD) ->
  x_hat_NxD`` (from the clean input); ``sample(num, seed=0) -> x_NxD`` (None for families without a prior).
  """
  config: ml_collections.ConfigDict
  params: Any
  epoch: int
  family: Any
  data_shape: tuple[int, ...]
  encode: Callable
  decode: Callable
  reconstruct: Callable
  sample: Callable | None


def read_config(workdir: str) -> ml_collections.ConfigDict:
  """The resolved config of a run's ``config.json``. Raises FileNotFoundError when there is none,
  ConfigError (naming the file) when it is no valid JSON or holds an invalid config."""
  path = os.path.join(workdir, 'config.json')
  if not os.path.exists(path):
    raise FileNotFoundError(f'{path} not found: the workdir must be the directory of a training run.')
  try:
    with open(path) as f:
      config = config_lib.from_dict(json.load(f))
    config_lib.validate(config)
  except (config_lib.ConfigError, ValueError) as e:  # json.JSONDecodeError is a ValueError
    raise config_lib.ConfigError(f'{path} is damaged or not a config aelab wrote ({e}); restore it from '
                                 'a copy, or retrain in a new --workdir.') from e
  return config


def load(workdir: str, dataset: data.Dataset | None = None) -> Trained:
  """The latest checkpoint of the run in ``workdir`` (a single run, or one run's folder of a sweep).

  ``dataset`` (default: ``aelab.data.stream.load`` of the run's config, relative paths from the current
  directory: a large activations folder is not read into memory) gives the example shape. Raises
  FileNotFoundError without config.json or a checkpoint, ConfigError for a damaged config.json,
  CheckpointError when the checkpoint's files cannot be read.
  """
  config = read_config(workdir)
  dataset = dataset or stream.load(config.data)
  run = engine.make_run(config, dataset.shape)
  try:
    state, epoch = engine.restore(Workdir(workdir, config), engine.abstract_state(run, dataset))
  except config_lib.ConfigError:
    raise
  except Exception as e:  # orbax, TensorStore and json errors of a damaged checkpoint share no type
    root = e
    while root.__cause__ is not None:  # orbax wraps TensorStore's error, which names the file
      root = root.__cause__
    raise CheckpointError(f'The checkpoint of {workdir} could not be read ({config_lib.describe(root)[:400]}): its '
                          'files are truncated, deleted or damaged. Rerun training with the same --workdir to '
                          'resume from an intact checkpoint, or retrain.') from e
  if state is None:
    raise FileNotFoundError(f'No checkpoint in {workdir}: train first (python -m aelab.main).')
  params, family = jax.device_put(state['params']), run.family
  encode = jax.jit(lambda p, x: metrics.encode_split(family.encode, p, x, config.train.eval_batch_size))
  decode = jax.jit(family.decode)
  recon = jax.jit(lambda p, x: family.decode(p, family.encode(p, x)))
  sample = None
  if family.sample is not None:
    sample_fn = jax.jit(family.sample, static_argnums=2)
    sample = lambda num, seed=0: np.asarray(sample_fn(params, jax.random.key(seed), num))  # noqa: E731
  return Trained(config, params, epoch, family, tuple(dataset.shape),
                 lambda x: np.asarray(encode(params, jnp.asarray(x, jnp.float32))),
                 lambda z: np.asarray(decode(params, jnp.asarray(z, jnp.float32))),
                 lambda x: np.asarray(recon(params, jnp.asarray(x, jnp.float32))), sample)
