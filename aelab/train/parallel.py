"""Devices and hosts: a mesh over the model axis of a sweep or the batch axis of one model, and
``jax.distributed`` for runs over several processes (DESIGN.md, "Scale").

One program, many devices: arrays carry a ``NamedSharding`` over a 1-D ``Mesh`` and XLA partitions the
jitted computation (no ``pmap``). A sweep stacks its models on a leading axis sharded over ``'model'``;
a single large model shards its batch over ``'data'`` (parameters replicated, gradients all-reduced by
XLA). On one device both are the plain single-device program.
"""
import os
import sys
import threading
from typing import Any, Callable, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

MODEL_AXIS = 'model'
DATA_AXIS = 'data'


def _largest_divisor_at_most(n: int, limit: int) -> int:
  return max(d for d in range(1, min(n, limit) + 1) if n % d == 0)


def model_mesh(num_models: int, devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A 1-D mesh named ``'model'`` over as many of ``devices`` (default: this process's local devices)
  as divide ``num_models`` evenly: 8 models on 8 devices put one model on each; 24 on 8 put three on
  each; 7 on 8 use 7 devices. Raises ValueError for ``num_models < 1``."""
  if num_models < 1:
    raise ValueError(f'A sweep group needs at least one model, got {num_models}.')
  devices = list(devices or jax.local_devices())
  return Mesh(np.array(devices[:_largest_divisor_at_most(num_models, len(devices))]), (MODEL_AXIS,))


def shard_models(tree: Any, mesh: Mesh) -> Any:
  """Puts every leaf (leading axis = model) of ``tree`` on ``mesh``, split along the model axis."""
  return jax.device_put(tree, NamedSharding(mesh, PartitionSpec(MODEL_AXIS)))


def replicate(tree: Any, mesh: Mesh) -> Any:
  """Puts a full copy of every leaf of ``tree`` (e.g. the shared training data) on each device of ``mesh``."""
  return jax.device_put(tree, NamedSharding(mesh, PartitionSpec()))


def data_mesh(batch_size: int, devices: Sequence[jax.Device] | None = None) -> Mesh | None:
  """A 1-D mesh named ``'data'`` over the devices that divide ``batch_size`` evenly, or None with one
  device (the single-device program is then left exactly as it is)."""
  devices = list(devices or jax.local_devices())
  n = _largest_divisor_at_most(batch_size, len(devices))
  return Mesh(np.array(devices[:n]), (DATA_AXIS,)) if n > 1 else None


def batch_sharding(mesh: Mesh | None) -> NamedSharding | None:
  """Sharding of a ``B x D`` batch along ``'data'`` on ``mesh`` (None passes None through)."""
  return None if mesh is None else NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def wants_distributed(environ: dict[str, str] | None = None) -> bool:
  """True where this process is one of several of one job: an explicit ``JAX_COORDINATOR_ADDRESS``,
  SLURM with more than one task (``srun`` / ``--ntasks``), or a multi-host Cloud TPU slice
  (``TPU_WORKER_HOSTNAMES`` lists more than one host)."""
  env = os.environ if environ is None else environ
  slurm_tasks = int(env.get('SLURM_NTASKS', '1') or 1)
  tpu_hosts = [h for h in env.get('TPU_WORKER_HOSTNAMES', '').split(',') if h]
  return 'JAX_COORDINATOR_ADDRESS' in env or ('SLURM_PROCID' in env and slurm_tasks > 1) or len(tpu_hosts) > 1


class DistributedError(RuntimeError):
  """This process could not join its ``jax.distributed`` job; the message says why and what to check."""


def connect_timeout_s(environ: dict[str, str] | None = None) -> int:
  """Seconds a process waits for the coordinator and its peers: ``AELAB_DISTRIBUTED_TIMEOUT_S``, default 45."""
  env = os.environ if environ is None else environ
  try:
    return max(1, int(env.get('AELAB_DISTRIBUTED_TIMEOUT_S', '45')))
  except ValueError:
    raise DistributedError(f'AELAB_DISTRIBUTED_TIMEOUT_S={env["AELAB_DISTRIBUTED_TIMEOUT_S"]!r} must be a '
                           'whole number of seconds.') from None


def initialize_distributed(force: bool = False) -> bool:
  """Calls ``jax.distributed.initialize()`` when :func:`wants_distributed` (or ``force``); JAX itself
  reads the coordinator, process count and id from SLURM, Cloud TPU or Open MPI. Must run before any
  computation. Returns whether it initialized.

  When the peers do not all connect within :func:`connect_timeout_s` seconds, the process prints one line
  (``error: process i of P ... could not join ...``) to stderr and exits with status 1 (JAX's own
  connection timeout aborts the process with a C++ stack trace instead). Raises DistributedError when
  the environment names no complete job (``JAX_COORDINATOR_ADDRESS`` without ``JAX_NUM_PROCESSES`` /
  ``JAX_PROCESS_ID``)."""
  if not (force or wants_distributed()):
    return False
  timeout = connect_timeout_s()
  address = os.environ.get('JAX_COORDINATOR_ADDRESS')
  args: tuple = ()
  where = 'this process (of a SLURM / Cloud TPU / Open MPI job)'
  if address:
    try:
      args = (address, int(os.environ['JAX_NUM_PROCESSES']), int(os.environ['JAX_PROCESS_ID']))
    except (KeyError, ValueError):
      raise DistributedError(f'JAX_COORDINATOR_ADDRESS={address} is set, so this process joins a job of several: '
                             'set JAX_NUM_PROCESSES (the number of processes) and JAX_PROCESS_ID (0, 1, ...) too, '
                             'or unset JAX_COORDINATOR_ADDRESS to run one process.') from None
    where = f'process {args[2]} of {args[1]} at coordinator {address}'
  message = (f'error: {where} could not join its jax.distributed job: not all processes connected within '
             f'{timeout} s. Start every process, with the same coordinator address and process count '
             '(AELAB_DISTRIBUTED_TIMEOUT_S=<seconds> waits longer).')
  watchdog = threading.Timer(timeout, _exit_with, (message,))
  watchdog.daemon = True
  watchdog.start()
  try:  # JAX's own timeout, later than the watchdog's, aborts the process with a C++ stack trace
    jax.distributed.initialize(*args, initialization_timeout=timeout + 60)
  finally:
    watchdog.cancel()
  return True


def _exit_with(message: str) -> None:
  sys.stdout.flush()
  sys.stderr.write(message + '\n')
  sys.stderr.flush()
  os._exit(1)  # the main thread is blocked inside JAX's connect, so no exception can reach it


def wait_for_other_processes(log: Callable[[str], None] = print, timeout_s: int = 7 * 24 * 3600) -> None:
  """Returns once every process of the ``jax.distributed`` job has called this (at once with one process).

  A sweep's processes train independently; each waits here at the end, so that process 0, which hosts
  the job's coordinator, outlives the others, and no process reaches JAX's shutdown barrier (5 minutes)
  long before the last one. Uses the coordinator's barrier (no collectives over the devices). Raises
  what JAX raises when a process died or ``timeout_s`` passed."""
  if jax.process_count() == 1:
    return
  from orbax.checkpoint import multihost as ocp_multihost  # noqa: PLC0415  (main imports this module early)
  log(f'process {jax.process_index()} of {jax.process_count()}: done, waiting for the other processes')
  ocp_multihost.sync_global_processes('aelab_sweep_done', timeout=timeout_s,
                                      processes=set(range(jax.process_count())))
