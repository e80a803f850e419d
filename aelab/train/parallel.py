"""Devices and hosts: a mesh over the model axis of a sweep or the batch axis of one model, and
``jax.distributed`` for runs over several processes (DESIGN.md, "Scale").

One program, many devices: arrays carry a ``NamedSharding`` over a 1-D ``Mesh`` and XLA partitions the
jitted computation (no ``pmap``). A sweep stacks its models on a leading axis sharded over ``'model'``;
a single large model shards its batch over ``'data'`` (parameters replicated, gradients all-reduced by
XLA). On one device both are the plain single-device program.
"""
import contextlib
import json
import os
import socket
import sys
import threading
import time
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


# Independent processes of one job (index, count), set by initialize_distributed: no jax.distributed client.
_job: tuple[int, int] | None = None


def coordinated_by_jax(environ: dict[str, str] | None = None) -> bool:
  """Whether the processes of this job join a ``jax.distributed`` job: on a multi-host Cloud TPU slice (whose
  runtime needs it), or where ``AELAB_JAX_DISTRIBUTED=1`` asks for it. Elsewhere (local processes, SLURM
  tasks on CPUs or GPUs) they run as independent JAX programs, each on its local devices: a sweep's
  processes share nothing but the file system, and a process that holds a jax.distributed client aborts
  (a C++ check failure) as soon as the coordinator's process dies."""
  env = os.environ if environ is None else environ
  tpu_hosts = [h for h in env.get('TPU_WORKER_HOSTNAMES', '').split(',') if h]
  return len(tpu_hosts) > 1 or env.get('AELAB_JAX_DISTRIBUTED', '') == '1'


def job_from_environment(environ: dict[str, str] | None = None) -> tuple[int, int]:
  """``(process index, process count)`` of this process from ``JAX_PROCESS_ID`` / ``JAX_NUM_PROCESSES``
  (with ``JAX_COORDINATOR_ADDRESS``) or SLURM's ``SLURM_PROCID`` / ``SLURM_NTASKS``. Raises
  DistributedError for an incomplete or inconsistent environment."""
  env = os.environ if environ is None else environ
  if 'JAX_COORDINATOR_ADDRESS' in env:
    names = ('JAX_PROCESS_ID', 'JAX_NUM_PROCESSES')
    fix = (f'JAX_COORDINATOR_ADDRESS={env["JAX_COORDINATOR_ADDRESS"]} is set, so this process joins a job of '
           'several: set JAX_NUM_PROCESSES (the number of processes) and JAX_PROCESS_ID (0, 1, ...) too, or unset '
           'JAX_COORDINATOR_ADDRESS to run one process.')
  else:
    names, fix = ('SLURM_PROCID', 'SLURM_NTASKS'), 'run it under srun, which sets both.'
  try:
    index, count = (int(env[name]) for name in names)
  except (KeyError, ValueError):
    raise DistributedError(f'{names[0]} and {names[1]} must both be whole numbers; {fix}') from None
  if not 0 <= index < count:
    raise DistributedError(f'{names[0]}={index} must lie in [0, {names[1]}={count}).')
  return index, count


def process_index() -> int:
  """This process's index in its job: of the independent processes (:func:`initialize_distributed`), else
  ``jax.process_index()``."""
  return _job[0] if _job is not None else jax.process_index()


def process_count() -> int:
  """The number of processes of this job (independent ones, else ``jax.process_count()``)."""
  return _job[1] if _job is not None else jax.process_count()


def initialize_distributed(force: bool = False) -> bool:
  """Makes this process one of several of a job when :func:`wants_distributed` (or ``force``). Returns
  whether it did. Must run before any computation.

  On CPUs and GPUs the processes stay independent JAX programs (:func:`coordinated_by_jax`): index and
  count come from the environment (:func:`job_from_environment`), and :class:`Peers` tells of a process
  that stopped or was lost. On a multi-host TPU slice (or with ``AELAB_JAX_DISTRIBUTED=1``) it calls
  ``jax.distributed.initialize()``, which reads the coordinator, count and id from SLURM, Cloud TPU or
  Open MPI; when the peers do not all connect within :func:`connect_timeout_s` seconds, the process prints
  one line (``error: process i of P ... could not join ...``) and exits with status 1. Raises
  DistributedError when the environment names no complete job."""
  global _job
  if not (force or wants_distributed()):
    return False
  if not coordinated_by_jax():
    _job = job_from_environment()
    return True
  timeout = connect_timeout_s()
  address = os.environ.get('JAX_COORDINATOR_ADDRESS')
  args: tuple = ()
  where = 'this process (of a SLURM / Cloud TPU / Open MPI job)'
  if address:
    args = (address, *reversed(job_from_environment()))
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
  """Returns once every process of the ``jax.distributed`` job has called this (at once with one process,
  and for independent processes, which never wait for each other: :class:`Peers` reports on them).

  Coordinated processes train independently; each waits here at the end, so that process 0, which hosts
  the job's coordinator, outlives the others, and no process reaches JAX's shutdown barrier (5 minutes)
  long before the last one. Uses the coordinator's barrier (no collectives over the devices). Raises
  what JAX raises when a process died or ``timeout_s`` passed."""
  if _job is not None or jax.process_count() == 1:
    return
  from orbax.checkpoint import multihost as ocp_multihost  # noqa: PLC0415  (main imports this module early)
  log(f'process {jax.process_index()} of {jax.process_count()}: done, waiting for the other processes')
  ocp_multihost.sync_global_processes('aelab_sweep_done', timeout=timeout_s,
                                      processes=set(range(jax.process_count())))


class PeerLost(RuntimeError):
  """Another process of this job stopped or was lost before it finished its runs (one line: which, and
  what to do)."""


class Peers:
  """The state of each process of a job of independent processes, as files in the shared workdir:
  ``<workdir>/processes/<i>.json`` holds ``{'state': 'training' | 'done' | 'stopped', 'attempt', 'pid',
  'host', 'detail'}``, and a background thread touches this process's file every ``stale_s / 4`` seconds
  while it trains. ``attempt`` names one launch of the job (``JAX_COORDINATOR_ADDRESS`` or SLURM's job and
  step ids), so that a rerun does not read the files of the run before.

  :meth:`finish` records how this process ended; :meth:`wait` waits until every peer is done, stopped or
  lost (its file not touched for ``stale_s`` seconds, ``AELAB_PEER_TIMEOUT_S``, default 30; or never
  written within :func:`connect_timeout_s` of this process's start) and raises :class:`PeerLost` naming
  the others that did not finish.
  """

  def __init__(self, workdir: str, environ: dict[str, str] | None = None):
    env = os.environ if environ is None else environ
    self.index, self.count = process_index(), process_count()
    self.folder = os.path.join(workdir, 'processes')
    self.attempt = env.get('JAX_COORDINATOR_ADDRESS') or f'slurm {env.get("SLURM_JOB_ID")}.{env.get("SLURM_STEP_ID")}'
    self.stale_s = float(env.get('AELAB_PEER_TIMEOUT_S', '30'))
    self.connect_s, self.started = connect_timeout_s(env), time.time()
    self._stop, self.ended = threading.Event(), False
    self._write('training')
    self._beat = threading.Thread(target=self._heartbeat, daemon=True, name='aelab-peers')
    self._beat.start()

  def _path(self, index: int) -> str:
    return os.path.join(self.folder, f'{index}.json')

  def _write(self, state: str, detail: str = '') -> None:
    os.makedirs(self.folder, exist_ok=True)
    record = {'state': state, 'attempt': self.attempt, 'pid': os.getpid(), 'host': socket.gethostname(),
              'detail': detail}
    tmp = self._path(self.index) + f'.tmp{os.getpid()}'
    with open(tmp, 'w') as f:
      json.dump(record, f)
    os.replace(tmp, self._path(self.index))

  def _heartbeat(self) -> None:
    while not self._stop.wait(self.stale_s / 4):
      with contextlib.suppress(OSError):
        os.utime(self._path(self.index))

  def finish(self, state: str, detail: str = '') -> None:
    """Records this process's end: ``'done'`` or ``'stopped'`` (``detail``: why)."""
    self._stop.set()
    self.ended = True
    self._write(state, detail)

  def _peer(self, index: int) -> tuple[str, str] | None:
    """``(state, detail)`` of peer ``index``, ``('lost', ...)``, or None while it may still come or train."""
    try:
      with open(self._path(index)) as f:
        record = json.load(f)
      age = time.time() - os.path.getmtime(self._path(index))
    except (OSError, ValueError):
      record, age = {}, 0.0
    if record.get('attempt') != self.attempt:
      if time.time() - self.started > self.connect_s:
        return 'lost', f'it did not start within {self.connect_s} s'
      return None
    if record['state'] == 'training':
      return ('lost', f'no sign of life for {age:.0f} s') if age > self.stale_s else None
    return record['state'], record.get('detail', '')

  def wait(self, log: Callable[[str], None] = print, poll_s: float = 1.0) -> None:
    """Waits for every peer's end; raises PeerLost naming those that stopped or were lost."""
    pending, ended = set(range(self.count)) - {self.index}, {}
    if pending:
      log(f'process {self.index} of {self.count}: done, waiting for the other processes')
    while pending:
      for index in sorted(pending):
        found = self._peer(index)
        if found is not None:
          ended[index] = found
          pending.discard(index)
      if pending:
        time.sleep(poll_s)
    failed = {i: e for i, e in sorted(ended.items()) if e[0] != 'done'}
    if failed:
      which = '; '.join(f'process {i} of {self.count} {"stopped" if s == "stopped" else "was lost"} ({d})'
                        for i, (s, d) in failed.items())
      raise PeerLost(f'{which}: its finished runs are kept and the others checkpointed; rerun the same command '
                     'to finish the sweep.')
