"""The prepared accelerator check: what a GPU (or TPU) changes, measured in one go, as one JSON line.

  bash experiments/device_check.sh            # on the accelerator machine (installs the carried wheels first)
  python experiments/device_check.py --small  # the same steps at small sizes (the CPU; tests/test_device_check.py)

Steps (each timed; one that fails is reported with its error and the others still run):

1. ``main_job``: the README's main job (``python -m aelab.main --config=configs/dae.py``) from process start
   to exit, twice: with an empty compilation cache (``cold_s``) and again with the cache it filled
   (``warm_s``), each in a fresh workdir.
2. ``model_axis``: the compiled epoch (training and test metrics) of one VAE 784-400-20 and of 64 on the
   model axis (``experiments/bench.py --model_axis``: model-examples/s of each and their ratio, ``gain``),
   in float32 and bfloat16 (``model.dtype``; parameters stay float32).
3. ``torch``: the 8 VAEs of ``configs/sweeps/kl_weight.py:seeds=1`` (3 epochs, MNIST 8,000 / 2,000) as
   whole processes: ``experiments/torch_vaes.py`` (bare PyTorch, one after another, on the same GPU) against
   aelab's vectorized sweep (``experiments/bench.py --whole_process``); needs the MNIST folder beside the
   repository (``../shared/data/mnist``) and PyTorch (skipped where either is missing).

``--small``: a one-epoch main job, 2 models on the axis on 1,024 training examples, one round, and no step 3
unless ``--torch``.
"""
import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time
import traceback

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / 'experiments'))


def main_job(tmp: str, small: bool) -> dict:
  """Wall seconds of the README's main job, process start to exit: cold, then warm compilation cache
  (``small``: one epoch)."""
  cache = os.path.join(tmp, 'cache')
  walls = {}
  for name in ('cold', 'warm'):
    command = [sys.executable, '-m', 'aelab.main', '--config=configs/dae.py', f'--workdir={tmp}/dae_{name}',
               f'--config.train.compilation_cache_dir={cache}', *(['--config.train.num_epochs=1'] if small else [])]
    t0 = time.perf_counter()
    subprocess.run(command, cwd=REPO, check=True, capture_output=True, text=True)
    walls[f'{name}_s'] = round(time.perf_counter() - t0, 2)
  summary = json.loads(pathlib.Path(tmp, 'dae_warm', 'summary.json').read_text())
  return {**walls, 'test/recon_mse': summary.get('test/recon_mse')}


def model_axis(models: int, rounds: int, max_train_examples: int | None) -> dict:
  import bench  # noqa: PLC0415  (experiments/bench.py)
  return bench.model_axis_benchmark(models, rounds, ['float32', 'bfloat16'], max_train_examples)


def torch_comparison(rounds: int) -> dict:
  import bench  # noqa: PLC0415
  if not bench.MNIST.is_dir():
    return {'skipped': f'no MNIST folder at {bench.MNIST}'}
  if bench.torch_command() is None:
    return {'skipped': 'torch is not importable'}
  return bench.whole_process_benchmark(rounds, 'none')


def step(name: str, fn, *args) -> dict:
  """``fn(*args)`` with its wall seconds, or the error it raised (the other steps still run)."""
  t0 = time.perf_counter()
  try:
    result = fn(*args)
  except (Exception, SystemExit) as e:  # noqa: BLE001  (a failed step is reported, not fatal)
    result = {'error': f'{type(e).__name__}: {e}'.splitlines()[0],
              'stderr': (getattr(e, 'stderr', '') or '')[-500:] or traceback.format_exc()[-500:]}
  print(f'{name}: {time.perf_counter() - t0:.1f} s', file=sys.stderr, flush=True)
  return {**result, 'step_s': round(time.perf_counter() - t0, 1)}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--small', action='store_true', help='small sizes, for a CPU')
  parser.add_argument('--torch', action='store_true', help='with --small: run step 3 too')
  args = parser.parse_args()
  t0 = time.perf_counter()
  import jax  # noqa: PLC0415
  device = jax.devices()[0]
  result = {'device': getattr(device, 'device_kind', str(device)), 'platform': device.platform,
            'devices': jax.device_count(), 'jax': jax.__version__, 'small': args.small}
  with tempfile.TemporaryDirectory(prefix='aelab_device_check_') as tmp:
    result['main_job'] = step('main_job', main_job, tmp, args.small)
  result['model_axis'] = step('model_axis', model_axis, *((2, 1, 1024) if args.small else (64, 3, None)))
  if not args.small or args.torch:
    result['torch'] = step('torch', torch_comparison, 1)
  result['total_s'] = round(time.perf_counter() - t0, 1)
  print(json.dumps(result))


if __name__ == '__main__':
  main()
