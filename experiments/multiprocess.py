"""The multi-process cases of issue 10, each as local ``jax.distributed`` processes with a time limit, so a
hang shows as 'killed at the time limit' instead of blocking:

  python experiments/multiprocess.py [--timeout_s=120] [--cases=epochs,groups,rerun,alone]

- ``epochs``: 2 processes over 2 runs with ``train.num_epochs`` 1 and 2.
- ``groups``: 2 processes over 4 runs: process 0 trains seeds 0 and 2 of latent size 4 as one group, process 1
  seed 1 of latent size 4 and seed 0 of latent size 2 as two groups.
- ``rerun``: 2 of 4 runs trained first by one process, then 2 processes over all 4 (process 0 has nothing
  left, process 1 two runs).
- ``alone``: process 0 of 2 started alone with the coordinator variables set (its peer never comes).

Prints, per case and process, the exit status, the seconds and the last lines of its output. Tiny AEs on
the bundled digits (1-2 epochs).
"""
import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from launch import local  # noqa: E402

TINY = ['--config.model.hidden=(16,)', '--config.model.latent_dim=4', '--config.data.max_train_examples=256',
        '--config.train.figures_every=0', '--config.train.num_epochs=1']


def command(workdir: str, sweep_file: str, *extra: str) -> list[str]:
  return [sys.executable, '-m', 'aelab.main', f'--config={ROOT}/configs/ae.py', *TINY, *extra,
          f'--sweep={sweep_file}', f'--workdir={workdir}']


def write_sweep(path: str, runs: list[dict]) -> str:
  with open(path, 'w') as f:
    f.write(f'def get_sweep(arg=None):\n  return {runs!r}\n')
  return path


def show(name: str, ended: list[local.Ended]) -> None:
  for e in ended:
    status = 'killed at the time limit (hang)' if e.returncode is None else f'exit {e.returncode}'
    tail = [line for line in e.output.splitlines() if line.strip()][-3:]
    print(f'{name} process {e.process_id}: {status} after {e.seconds:.1f} s')
    for line in tail:
      print(f'    {line[:200]}')
  sys.stdout.flush()


def main() -> None:
  args = dict(a.lstrip('-').split('=', 1) for a in sys.argv[1:])
  timeout_s = float(args.get('timeout_s', 120))
  cases = args.get('cases', 'epochs,groups,rerun,alone').split(',')
  env = {'PYTHONPATH': os.pathsep.join([ROOT, os.environ.get('PYTHONPATH', '')])}
  root = tempfile.mkdtemp(prefix='aelab-multiprocess-')
  t0 = time.time()
  if 'epochs' in cases:
    sweep = write_sweep(f'{root}/epochs.py', [{'train.num_epochs': 1}, {'train.num_epochs': 2}])
    show('epochs', local.run(command(f'{root}/epochs', sweep), 2, timeout_s, env))
  if 'groups' in cases:
    runs = [{'model.latent_dim': 4, 'seed': s} for s in range(3)] + [{'model.latent_dim': 2, 'seed': 0}]
    sweep = write_sweep(f'{root}/groups.py', runs)
    show('groups', local.run(command(f'{root}/groups', sweep), 2, timeout_s, env))
  if 'rerun' in cases:
    runs = [{'seed': s} for s in range(4)]
    first = write_sweep(f'{root}/rerun_first.py', runs[0::2])
    show('rerun (first, 1 process)', local.run(command(f'{root}/rerun', first), 1, timeout_s, env))
    sweep = write_sweep(f'{root}/rerun.py', runs)
    show('rerun', local.run(command(f'{root}/rerun', sweep), 2, timeout_s, env))
  if 'alone' in cases:
    sweep = write_sweep(f'{root}/alone.py', [{'seed': 0}])
    show('alone', local.run(command(f'{root}/alone', sweep), 2, timeout_s, env, process_ids=[0]))
  print(f'{time.time() - t0:.0f} s in all; workdirs under {root}')


if __name__ == '__main__':
  main()
