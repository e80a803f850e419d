"""Runs a command as ``P`` local ``jax.distributed`` processes (coordinator on 127.0.0.1), e.g. to try a
multi-host sweep on one machine:

  python -m launch.local --processes=2 -- python -m aelab.main --config=configs/ae.py \\
      --sweep=configs/sweeps/kl_weight.py:seeds=1 --workdir=/tmp/kl

Each process gets ``JAX_COORDINATOR_ADDRESS=127.0.0.1:<free port>``, ``JAX_NUM_PROCESSES`` and its own
``JAX_PROCESS_ID`` (which ``aelab.main`` reads, ``aelab/parallel.py``) and CPU collectives over Gloo.
Prints each process's output with a ``[i]`` prefix once all have ended; exits with the first non-zero
exit status. ``tests/test_multiprocess.py`` and ``experiments/multiprocess.py`` use :func:`run`.
"""
import dataclasses
import os
import socket
import subprocess
import sys
import time
from collections.abc import Sequence


def free_port() -> int:
  """A TCP port on 127.0.0.1 that nothing listens on now."""
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


@dataclasses.dataclass
class Ended:
  """How one process ended: exit status (None: killed at the time limit), its output (stdout and stderr)."""
  process_id: int
  returncode: int | None
  output: str
  seconds: float


def run(command: Sequence[str], num_processes: int, timeout_s: float = 600.0, env: dict[str, str] | None = None,
        process_ids: Sequence[int] | None = None) -> list[Ended]:
  """Starts ``command`` as processes ``process_ids`` (default all ``num_processes``) of one
  ``jax.distributed`` job and waits for them; a process still running after ``timeout_s`` seconds is
  killed (``returncode`` None), so a hang shows as such instead of blocking. Returns one
  :class:`Ended` per started process."""
  port = free_port()
  base = {**os.environ, **(env or {}), 'JAX_COORDINATOR_ADDRESS': f'127.0.0.1:{port}',
          'JAX_NUM_PROCESSES': str(num_processes), 'JAX_CPU_COLLECTIVES_IMPLEMENTATION': 'gloo'}
  ids = list(range(num_processes)) if process_ids is None else list(process_ids)
  started = time.time()
  procs = [subprocess.Popen(list(command), env={**base, 'JAX_PROCESS_ID': str(i)}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True) for i in ids]
  ended = []
  for i, proc in zip(ids, procs):
    try:
      output, _ = proc.communicate(timeout=max(1.0, started + timeout_s - time.time()))
      code = proc.returncode
    except subprocess.TimeoutExpired:
      proc.kill()
      output, _ = proc.communicate()
      code = None
    ended.append(Ended(i, code, output, time.time() - started))
  return ended


def main(argv: list[str]) -> int:
  args = argv[1:]
  num_processes, timeout_s = 2, 24 * 3600.0
  while args and args[0] != '--':
    name, _, value = args.pop(0).partition('=')
    if name == '--processes':
      num_processes = int(value)
    elif name == '--timeout_s':
      timeout_s = float(value)
    else:
      raise SystemExit(f'usage: python -m launch.local [--processes=P] [--timeout_s=S] -- COMMAND (got {name})')
  if not args[1:]:
    raise SystemExit('usage: python -m launch.local [--processes=P] [--timeout_s=S] -- COMMAND')
  ended = run(args[1:], num_processes, timeout_s)
  for e in ended:
    status = 'killed at the time limit' if e.returncode is None else f'exit {e.returncode}'
    print(''.join(f'[{e.process_id}] {line}\n' for line in e.output.splitlines()) +
          f'[{e.process_id}] {status} after {e.seconds:.1f} s', flush=True)
  return next((1 if e.returncode is None else e.returncode for e in ended if e.returncode != 0), 0)


if __name__ == '__main__':
  sys.exit(main(sys.argv))
