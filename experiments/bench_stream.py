"""Streaming input (aelab/stream.py) against the in-memory epoch, and the memory of a 1M-image epoch.

  python experiments/bench.py --stream --rounds=6 --json   # both parts (from the repository root)
  python experiments/bench_stream.py --rounds=6       # the same, directly

1. Throughput: the VAE 784-400-20 of ``configs/vae.py`` (batch 64, dynamic binarization) on 60,000 28x28
   uint8 images (the MNIST test set of ``../shared/data/mnist`` tiled 6 times; random images without it)
   in an uncompressed npz, split 48,000 / 12,000: ``--rounds`` alternating rounds in memory
   (``data.load``: float32 on the device, one scanned epoch) and streamed (``data.stream=True``: rows
   read from the npz by grain threads, chunks of ``data.stream_chunk`` batches per compiled call), 2
   epochs each, the second timed (the first compiles). Reports the median examples/s of each and the
   median of the rounds' ratios.
2. Memory: writes ``--n`` (1,000,000) 28x28 uint8 images (the same tiling) to ``--npz`` (an uncompressed
   npz of ~784 MB, written in chunks; reused when it exists) and trains the VAE for one streamed epoch on
   it in a fresh process (``data.max_test_examples=10000``, no figures or final metrics), which prints
   its peak resident memory (``resource.getrusage(RUSAGE_SELF).ru_maxrss``) and examples/s. As float32
   in memory the images alone would take 3.1 GB.
3. ``--default-command`` (only this part): the command a user types for one VAE epoch on that npz, with
   no streaming flag and no cap on the 200,000 held-out images, in a fresh process; prints its peak
   resident memory from process start (``python experiments/bench_stream.py --default-command``).
"""
import argparse
import gzip
import json
import pathlib
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
MNIST_IMAGES = ROOT.parent / 'shared' / 'data' / 'mnist' / 't10k-images-idx3-ubyte.gz'


def base_images() -> tuple[np.ndarray, str]:
  """The 10,000 MNIST test images (uint8 N x 28 x 28), or random ones where the folder is missing."""
  if MNIST_IMAGES.exists():
    with gzip.open(MNIST_IMAGES, 'rb') as f:
      return np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28), 'MNIST test images'
  return np.random.default_rng(0).integers(0, 256, (10_000, 28, 28), np.uint8), 'random images'


def write_npz(path: pathlib.Path, n: int, chunk: int = 50_000) -> str:
  """Writes ``n`` tiled 28x28 uint8 images as array ``x`` of an uncompressed npz, ``chunk`` at a time
  (what ``np.savez`` writes, without holding the array in memory). Returns what the images are."""
  images, what = base_images()
  header = {'descr': np.lib.format.dtype_to_descr(np.dtype(np.uint8)), 'fortran_order': False,
            'shape': (n, 28, 28)}
  with zipfile.ZipFile(path, 'w', zipfile.ZIP_STORED, allowZip64=True) as archive:
    with archive.open('x.npy', 'w', force_zip64=True) as f:
      np.lib.format.write_array_header_1_0(f, header)
      for start in range(0, n, chunk):
        f.write(np.resize(images, (min(chunk, n - start), 28, 28)).tobytes())
  return what


def vae_config(npz: str, stream: bool, epochs: int):
  from aelab import config as config_lib  # noqa: PLC0415  (the child imports JAX only when it trains)
  config = config_lib.load(f'{ROOT}/configs/vae.py:npz={npz}')
  config.data.stream = stream
  config.train.update(num_epochs=epochs, figures_every=0, compilation_cache=False)
  config.eval.final_metrics = False
  return config


def throughput(rounds: int, workdir: pathlib.Path) -> dict:
  """Part 1: per round, 2 epochs in memory and 2 streamed (the order swapped every other round); the
  second epoch of each is timed (the first compiles). Reports the medians and the median of the rounds'
  streamed / in-memory ratios (each ratio pairs two epochs run back to back, under similar load)."""
  from aelab.train import engine  # noqa: PLC0415
  from aelab.data import stream
  path = workdir / 'mnist60k.npz'
  what = write_npz(path, 60_000)
  speeds = {'memory': [], 'stream': []}
  for r in range(rounds):
    for mode in (('memory', 'stream') if r % 2 == 0 else ('stream', 'memory')):
      config = vae_config(str(path), mode == 'stream', 2)
      _, _, history = engine.fit(config, stream.load(config.data))
      speeds[mode].append(history[1]['examples_per_s'])
  ratios = [s / m for s, m in zip(speeds['stream'], speeds['memory'])]
  return {'throughput_data': f'{what} tiled to 60,000 (48,000 train)',
          'memory_examples_per_s': statistics.median(speeds['memory']),
          'stream_examples_per_s': statistics.median(speeds['stream']),
          'stream_over_memory': statistics.median(ratios), 'round_ratios': ratios,
          'memory_epochs': speeds['memory'], 'stream_epochs': speeds['stream']}


def one_epoch(npz: str) -> dict:
  """Part 2, in the child process: one streamed epoch on ``npz``; its peak RSS and examples/s."""
  from aelab.train import engine  # noqa: PLC0415
  config = vae_config(npz, True, 1)
  config.data.max_test_examples = 10_000
  t0 = time.perf_counter()
  summary = engine.train_and_evaluate(config, tempfile.mkdtemp(prefix='aelab-stream-'), log=print)
  seconds = time.perf_counter() - t0
  train = round(1_000_000 * 0.8) if config.data.max_train_examples == 0 else config.data.max_train_examples
  return {'peak_rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
          'epoch_wall_s': seconds, 'train_examples': train, 'epochs_time_s': summary['time_epochs_s'],
          'examples_per_s_1m': train // 64 * 64 / summary['time_epochs_s'],
          'test/neg_elbo': summary['test/neg_elbo']}


def memory(npz: pathlib.Path, n: int) -> dict:
  """Part 2: writes the npz (unless it exists) and runs :func:`one_epoch` in a fresh process."""
  if not npz.exists():
    t0 = time.perf_counter()
    write_npz(npz, n)
    print(f'wrote {npz} ({npz.stat().st_size / 2**20:,.0f} MB) in {time.perf_counter() - t0:.0f} s')
  child = subprocess.run([sys.executable, __file__, '--child', str(npz)], capture_output=True, text=True,
                         check=True, cwd=ROOT)
  return {'npz': str(npz), 'npz_mb': npz.stat().st_size / 2**20, **json.loads(child.stdout.splitlines()[-1])}


DEFAULT_COMMAND = ['-m', 'aelab.main', '--config.train.num_epochs=1', '--config.train.batch_size=128',
                   '--config.eval.final_metrics=False', '--config.train.figures_every=0']


def default_command(npz: pathlib.Path, n: int) -> dict:
  """Part 3 (``--default-command``): the command a user types for one VAE epoch on the npz (no streaming
  flag, no test cap: the default decision streams it), in a fresh process from its start; its peak
  resident memory (``RUSAGE_CHILDREN``), wall time and summary."""
  if not npz.exists():
    write_npz(npz, n)
  with tempfile.TemporaryDirectory() as workdir:
    command = [sys.executable, DEFAULT_COMMAND[0], DEFAULT_COMMAND[1], f'--config=configs/vae.py:npz={npz}',
               *DEFAULT_COMMAND[2:], f'--workdir={workdir}/run']
    t0 = time.perf_counter()
    subprocess.run(command, check=True, cwd=ROOT, capture_output=True)
    seconds = time.perf_counter() - t0
    summary = json.loads(pathlib.Path(workdir, 'run', 'summary.json').read_text())
  return {'command': ' '.join(['python', *command[1:-1]]), 'peak_rss_mb': resource.getrusage(
      resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 'wall_s': seconds, 'test/neg_elbo': summary['test/neg_elbo']}


def run(rounds: int, npz: pathlib.Path, n: int) -> dict:
  with tempfile.TemporaryDirectory() as tmp:
    result = throughput(rounds, pathlib.Path(tmp))
  result.update(memory(npz, n))
  return result


def report(result: dict) -> None:
  print(f'VAE 784-400-20, batch 64, on {result["throughput_data"]} (medians of {len(result["round_ratios"])} rounds):')
  print(f'  in memory: {result["memory_examples_per_s"]:>9,.0f} examples/s   '
        f'streamed: {result["stream_examples_per_s"]:>9,.0f} examples/s   '
        f'streamed / in memory: {result["stream_over_memory"]:.2f} (rounds: '
        + ', '.join(f'{r:.2f}' for r in result['round_ratios']) + ')')
  print(f'one streamed epoch on {result["npz"]} ({result["npz_mb"]:,.0f} MB, {result["train_examples"]:,} train '
        f'images): {result["epochs_time_s"]:.1f} s training, {result["examples_per_s_1m"]:,.0f} examples/s, '
        f'peak RSS {result["peak_rss_mb"]:,.0f} MB')


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--rounds', type=int, default=6, help='alternating rounds of the throughput part')
  parser.add_argument('--npz', default='/tmp/aelab_stream_1m.npz', help='the 1M-image npz (written if missing)')
  parser.add_argument('--n', type=int, default=1_000_000, help='images in the npz')
  parser.add_argument('--json', action='store_true', help='print one final JSON line')
  parser.add_argument('--default-command', action='store_true',
                      help="only part 3: the default command's one epoch on the npz, its peak RSS")
  parser.add_argument('--child', help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.child:
    print(json.dumps(one_epoch(args.child)))
    return
  if args.default_command:
    result = default_command(pathlib.Path(args.npz), args.n)
    print(f'{result["command"]}: peak RSS {result["peak_rss_mb"]:,.0f} MB, {result["wall_s"]:.0f} s, '
          f'test/neg_elbo={result["test/neg_elbo"]:.2f}')
    print(json.dumps(result))
    return
  result = run(args.rounds, pathlib.Path(args.npz), args.n)
  report(result)
  if args.json:
    print(json.dumps(result))


if __name__ == '__main__':
  main()
