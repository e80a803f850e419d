"""A trained run as Python objects, for notebooks: ``aelab.load(workdir)``.

  import aelab
  run = aelab.load('runs/vae')
  z = run.encode(x_NxD)                # codes (a VAE's posterior mean), N x Z
  x_hat = run.reconstruct(x_NxD)       # reconstruction means, N x D
  x = run.sample(16, seed=0)           # decoded prior samples (VAE, AAE), 16 x D; NoPriorError for an AE
  x = run.sample(16, labels=3)         # a conditional family's (cvae) samples of class 3; its encode, decode
                                       # and reconstruct take labels=y_N too

Inputs are checked (:meth:`Trained.inputs`): examples as stored (uint8 images, ``ds.test``) or as floats
(``ds.x_test``) give the same codes, and a wrong shape, an empty batch or a bad count is a DataError
naming the expected shape.
"""
import contextlib
import dataclasses
import json
import logging
import os
import sys
from typing import Any, Callable, Iterator

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from aelab import config as config_lib, data
from aelab.data import stream

from aelab.train import engine

from aelab.eval import metrics
from aelab.train.workdir import Workdir, split_fingerprint


class CheckpointError(RuntimeError):
  """A run's checkpoint could not be read (truncated, deleted or damaged files); the message says which."""


class NoPriorError(TypeError):
  """``Trained.sample`` of a family without a prior ``p(z)`` (e.g. ``ae``): there is nothing to sample."""


@dataclasses.dataclass
class Trained:
  """A trained run: its ``config``, ``params``, the epoch of its checkpoint, its ``Family``, and jitted
  functions of host or device arrays (``x_NxD`` flattened examples as in ``data.load``, ``z_NxZ`` codes).

  ``encode(x_NxD) -> z_NxZ``; ``decode(z_NxZ) -> x_NxD`` (likelihood means); ``reconstruct(x_NxD) ->
  x_hat_NxD`` (from the clean input); ``sample(num, seed=0) -> x_NxD`` (raises NoPriorError for a family
  without a prior, ``has_prior`` False). ``x`` may be ``N x D`` or ``N x H x W [x C]`` (``data_shape``),
  stored (uint8, ``0..x_max`` meaning ``0..1``) or float32, numpy, jax or nested lists. A conditional
  family's (``num_classes > 0``, ``cvae``) take the class labels too: ``encode(x_NxD, labels=y_N)``,
  ``decode(z_NxZ, labels=y_N)``, ``reconstruct(x_NxD, labels=y_N)``, ``sample(num, labels=3)`` (``N`` ints, or
  one for all; :meth:`labels`).
  """
  config: ml_collections.ConfigDict
  params: Any
  epoch: int
  family: Any
  data_shape: tuple[int, ...]
  x_max: float
  code_shape: tuple[int, ...]
  _encode: Callable
  _decode: Callable
  _reconstruct: Callable
  _sample: Callable | None

  @property
  def has_prior(self) -> bool:
    """Whether the family has a prior to :meth:`sample` from (VAE, AAE, ...; not an AE)."""
    return self._sample is not None

  def inputs(self, x: Any) -> jax.Array:
    """``x`` as float32 ``N x D`` (D = prod(data_shape)): uint8 divided by ``x_max`` as the stored data is.
    Raises DataError naming the expected shape for an empty batch, a wrong shape or rank, or non-numbers."""
    x = _numbers(x, 'x')
    size = int(np.prod(self.data_shape))
    shapes = {(size,), tuple(self.data_shape)}
    if self.data_shape[-1:] == (1,):  # one channel: N x H x W too
      shapes.add(tuple(self.data_shape[:-1]))
    if x.ndim < 2 or tuple(x.shape[1:]) not in shapes or not len(x):
      wanted = ' or '.join(f'N x {" x ".join(map(str, s))}' for s in sorted(shapes, key=len))
      raise data.DataError(f'x of shape {x.shape}: this run takes examples of shape {wanted} with N >= 1 (its '
                           f'data_shape is {tuple(self.data_shape)}); add a leading axis for one example.')
    return jnp.asarray(data.to_float32(x.reshape(len(x), size), self.x_max), jnp.float32)

  def codes(self, z: Any) -> jax.Array:
    """``z`` as float32 ``N x Z``; raises DataError naming the expected shape (``N x code_shape``)."""
    z = _numbers(z, 'z')
    if z.ndim < 1 or tuple(z.shape[1:]) != self.code_shape or not len(z):
      raise data.DataError(f'z of shape {z.shape}: this run\'s codes have shape N x '
                           f'{" x ".join(map(str, self.code_shape))} with N >= 1.')
    return jnp.asarray(z, jnp.float32)

  @property
  def num_classes(self) -> int:
    """``C > 0`` for a conditional family (``cvae``): its methods take ``labels``; 0 otherwise."""
    return self.family.num_classes

  def labels(self, labels: Any, num: int, call: str) -> jax.Array | None:
    """``labels`` as int32 ``[num]`` class ids of a conditional family (one int: the same label for all), None
    for another. Raises DataError (one line) when a conditional family gets none, an unconditional one gets
    some, or they are not ``num`` ints in ``[0, num_classes)``."""
    name, c = self.config.model.name, self.num_classes
    if not c:
      if labels is not None:
        raise data.DataError(f'run.{call}(labels=...): model.name={name!r} is not conditioned on labels; leave '
                             'labels out.')
      return None
    if labels is None:
      raise data.DataError(f'run.{call}: model.name={name!r} is conditioned on class labels: pass labels=... '
                           f'({num} ints in 0..{c - 1}, or one int for all).')
    y = np.broadcast_to(_numbers(labels, 'labels'), (num,)) if np.ndim(labels) == 0 else _numbers(labels, 'labels')
    if y.shape != (num,) or not np.all(np.mod(y, 1) == 0) or y.min() < 0 or y.max() >= c:
      raise data.DataError(f'run.{call}: labels of shape {y.shape} with values {np.unique(y)[:5]}: give {num} '
                           f'class ids in 0..{c - 1} (or one int for all).')
    return jnp.asarray(y, jnp.int32)

  def _with_labels(self, x: jax.Array, labels: Any, call: str) -> Any:
    y = self.labels(labels, x.shape[0], call)
    return x if y is None else data.Labeled(x, y)

  def encode(self, x: Any, labels: Any = None) -> np.ndarray:
    """Codes ``z_NxZ`` of ``x`` (a VAE's posterior mean); a conditional family's with ``labels`` (``[N]``)."""
    return np.asarray(self._encode(self.params, self._with_labels(self.inputs(x), labels, 'encode')))

  def decode(self, z: Any, labels: Any = None) -> np.ndarray:
    """Likelihood means ``x_NxD`` of codes ``z_NxZ``; a conditional family's given ``labels`` (``[N]``)."""
    z = self.codes(z)
    y = self.labels(labels, z.shape[0], 'decode')
    return np.asarray(self._decode(self.params, z) if y is None else self._decode(self.params, z, y))

  def reconstruct(self, x: Any, labels: Any = None) -> np.ndarray:
    """Reconstruction means ``x_hat_NxD`` of the clean ``x``; a conditional family's with ``labels``."""
    return np.asarray(self._reconstruct(self.params, self._with_labels(self.inputs(x), labels, 'reconstruct')))

  def sample(self, num: int, seed: int = 0, labels: Any = None) -> np.ndarray:
    """Means of ``num`` decoded prior samples, ``num x D``; a conditional family's given ``labels`` (``[num]``
    class ids, or one int: ``run.sample(16, labels=3)``). Raises NoPriorError for a family without a prior,
    DataError for ``num`` not a positive int or labels that do not fit (:meth:`labels`)."""
    if self._sample is None:
      raise NoPriorError(f'run.sample: model.name={self.config.model.name!r} has no prior p(z) to sample from (a '
                         'deterministic code); encode and decode examples instead, or train a family with a prior '
                         '(vae, aae, ...).')
    if isinstance(num, bool) or not isinstance(num, (int, np.integer)) or num < 1:
      raise data.DataError(f'run.sample(num={num!r}): num must be a positive int, the number of samples.')
    y = self.labels(labels, int(num), 'sample')
    key = jax.random.key(seed)
    return np.asarray(self._sample(self.params, key, int(num)) if y is None else
                      self._sample(self.params, key, int(num), y))


def _numbers(x: Any, name: str) -> np.ndarray:
  """``x`` as a numpy array of numbers; DataError for one of objects or strings."""
  x = np.asarray(x)
  if not (np.issubdtype(x.dtype, np.number) or x.dtype == bool):
    raise data.DataError(f'{name} of dtype {x.dtype}: give an array of numbers.')
  return x


def read_config(workdir: str) -> ml_collections.ConfigDict:
  """The resolved config of a run's ``config.json``. Raises FileNotFoundError when there is none,
  ConfigError (naming the file) when it is no valid JSON or holds an invalid config."""
  path = os.path.join(workdir, 'config.json')
  if not os.path.exists(path):
    raise FileNotFoundError(f'{path} not found: the workdir must be the directory of a training run.')
  try:
    with open(path) as f:
      config = config_lib.from_dict(split_fingerprint(json.load(f))[0])
    config_lib.validate(config)
  except (config_lib.ConfigError, ValueError) as e:  # json.JSONDecodeError is a ValueError
    raise config_lib.ConfigError(f'{path} is damaged or not a config aelab wrote ({e}); restore it from '
                                 'a copy, or retrain in a new --workdir.') from e
  return config


class _DropClosedLoop(logging.Filter):
  """Drops the log records of asyncio callbacks that ran after a failed restore closed orbax's loop."""

  def filter(self, record: logging.LogRecord) -> bool:
    return 'Event loop is closed' not in record.getMessage() and not (
        record.exc_info and 'Event loop is closed' in str(record.exc_info[1]))


@contextlib.contextmanager
def _quiet_restore() -> Iterator[None]:
  """While a checkpoint is read: no "Event loop is closed" tracebacks of TensorStore / orbax callbacks
  into a loop that a failed read closed (logged, or raised where Python can only print them); a failed
  read is told once, by the caller's error."""
  drop, loggers = _DropClosedLoop(), [logging.getLogger(n) for n in ('absl', 'asyncio')]
  for logger in loggers:
    logger.addFilter(drop)
  unraisablehook, held = sys.unraisablehook, []
  sys.unraisablehook = held.append
  try:
    yield
  finally:
    sys.unraisablehook = unraisablehook
    for logger in loggers:
      logger.removeFilter(drop)
    for unraisable in held:
      if 'Event loop is closed' not in str(unraisable.exc_value):
        unraisablehook(unraisable)


def load(workdir: str, dataset: data.Dataset | None = None) -> Trained:
  """The latest checkpoint of the run in ``workdir`` (a single run, or one run's folder of a sweep).

  ``dataset`` (default: ``aelab.data.stream.load`` of the run's config, relative paths from the current
  directory: a large activations folder is not read into memory) gives the example shape. A newest
  checkpoint that does not read back intact (truncated, deleted, or damaged: its arrays' checksums differ)
  is skipped for the one before it, saying so on stderr. Raises FileNotFoundError without config.json or
  a checkpoint, ConfigError for a damaged config.json, CheckpointError (one line) when no checkpoint reads
  back intact.
  """
  config = read_config(workdir)
  dataset = dataset or stream.load(config.data)
  run = engine.make_run(config, dataset.shape)
  skipped: list[str] = []  # one line per checkpoint that did not read back
  try:
    with _quiet_restore():
      state, epoch = engine.restore(Workdir(workdir, config), engine.abstract_state(run, dataset), log=skipped.append)
  except config_lib.ConfigError:
    raise
  except Exception as e:  # orbax, TensorStore and json errors of a damaged checkpoint share no type
    root = e
    while root.__cause__ is not None:  # orbax wraps TensorStore's error, which names the file
      root = root.__cause__
    raise CheckpointError(f'The checkpoint of {workdir} could not be read ({config_lib.describe(root)[:400]}): its '
                          'files are truncated, deleted or damaged. Rerun training with the same --workdir to '
                          'resume from an intact checkpoint, or retrain.') from e
  if state is None and skipped:
    raise CheckpointError(f'No checkpoint of {workdir} reads back intact ({skipped[0][:400]}): its files are '
                          'truncated, deleted or damaged. Retrain (rerun training with the same --workdir).')
  if state is None:
    raise FileNotFoundError(f'No checkpoint in {workdir}: train first (python -m aelab.main).')
  for line in skipped:  # an older intact checkpoint was read instead
    print(line.replace('trying the one before', 'read the one before'), file=sys.stderr, flush=True)
  params, family = jax.device_put(state['params']), run.family
  encode = jax.jit(lambda p, x: metrics.encode_split(family.encode, p, x, config.train.eval_batch_size))
  if family.num_classes:  # a conditional family decodes with the labels of its examples
    recon = jax.jit(lambda p, x: family.decode(p, family.encode(p, x), x[1]))
  else:
    recon = jax.jit(lambda p, x: family.decode(p, family.encode(p, x)))
  sample = None if family.sample is None else jax.jit(family.sample, static_argnums=2)
  size = int(np.prod(dataset.shape))
  example = jax.ShapeDtypeStruct((1, size), jnp.float32)
  if family.num_classes:
    example = data.Labeled(example, jax.ShapeDtypeStruct((1,), jnp.int32))
  code_shape = jax.eval_shape(family.encode, params, example).shape[1:]
  return Trained(config, params, epoch, family, tuple(dataset.shape), float(dataset.x_max), tuple(code_shape),
                 encode, jax.jit(family.decode), recon, sample)
