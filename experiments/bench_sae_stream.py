"""Many SAEs on one stream: 32 sparse autoencoders trained in one process on a folder of activation shards.

  python experiments/bench_sae_stream.py                                   # 2,000,000 x 512 float32 (4.1 GB)
  python experiments/bench_sae_stream.py --max_train_tokens=32768 --chunk=2 --dir=/work/sae_bench   # capped
  python experiments/bench_sae_stream.py --tokens=40000 --d_in=256 --widths=256,512 --serial_runs=2   # quick

Writes ``--tokens x --d_in`` float32 tokens (Gaussian, ``--shard_tokens`` per ``.npy`` shard) to ``--dir``
(kept when it already holds that folder), then trains ``configs/sae_topk.py:activations=DIR`` as ReLU SAEs
with the decoder-norm L1 penalty, streamed (``data.stream=True``): two dictionary widths (``--widths``,
``model.latent_dim``: two groups) x 16 settings (``sae.l1_weight`` x ``seed``, 4 x 4: one compiled program
per width) for ``--epochs`` epochs, as one sweep (``aelab.train.sweep.run_sweep``: the two groups read
each chunk of the stream together, ``aelab.data.stream.SharedBatches``), ``--models_at_once`` models of a
group computed at a time (``train.models_at_once``). ``--max_train_tokens`` caps the tokens of the epoch
(``data.max_train_examples``: the first N of the seeded permutation of the training tokens, so read from
every shard of the folder): a whole epoch of 2,000,000 tokens is about 10^15 FLOP for the 32 SAEs.
Prints one JSON line after the sweep (its progress lines go to stderr), and one after the serial runs:

- ``peak_rss_mb``: the process's peak resident memory (``ru_maxrss``) after the sweep;
- ``batch_reads`` / ``batches_of_the_epochs``: the training batches read from the shards (tokens read
  through ``Shards.read`` minus the test split and the one token that sizes the stream, read once when the
  sweep loads the data, divided by the batch size) against the batches of the epochs: equal when each
  chunk is read once for all groups (twice as many would be one read per group); ``reads_per_batch``:
  ``{times read: training batches}`` counted by the batches' rows (``{"1": n}``: each of the n batches,
  hence each chunk, read once);
- ``sweep_s`` / ``sweep_cpu_s``: the sweep's wall and CPU (user + system, this process) seconds;
  ``serial_s`` / ``serial_cpu_s``: 32 runs one after another, each a sweep of one run in a fresh workdir,
  measured for ``--serial_runs`` runs of each width (all 16 with ``--serial_runs=16``) and scaled to 16 per
  width (``serial_estimated`` says whether it was scaled). On a shared machine the CPU seconds are the
  steadier comparison.
"""
import argparse
import collections
import hashlib
import json
import os
import resource
import shutil
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))

from aelab.data.sources import activations  # noqa: E402
from aelab.train import sweep  # noqa: E402

READ_ROWS = {'rows': 0}
BATCH_SIZE = {'rows': 0}
BATCH_READS: collections.Counter = collections.Counter()  # {hash of a training batch's rows: times read}


def write_folder(path: str, tokens: int, d_in: int, shard_tokens: int) -> None:
  """Gaussian float32 tokens in .npy shards, written a shard at a time (the folder is never in memory)."""
  marker = os.path.join(path, f'done_{tokens}x{d_in}')
  if os.path.exists(marker):
    return
  shutil.rmtree(path, ignore_errors=True)
  os.makedirs(path)
  rng = np.random.default_rng(0)
  for i, start in enumerate(range(0, tokens, shard_tokens)):
    n = min(shard_tokens, tokens - start)
    with open(os.path.join(path, f'shard_{i:04d}.npy'), 'wb') as f:  # written, not mapped: no resident pages
      header = {'descr': np.lib.format.dtype_to_descr(np.dtype(np.float32)), 'fortran_order': False,
                'shape': (n, d_in)}
      np.lib.format.write_array_header_1_0(f, header)
      for lo in range(0, n, 65536):
        f.write(rng.standard_normal((min(65536, n - lo), d_in), np.float32).tobytes())
  open(marker, 'w').close()


def counting_reads() -> None:
  """Counts the tokens every ``Shards`` reads (all instances: each group loads the data once)."""
  read = activations.Shards.read

  def counted(self, rows_R=None):
    x = read(self, rows_R)
    READ_ROWS['rows'] += len(x[0])
    if rows_R is not None and len(rows_R) == BATCH_SIZE['rows']:  # a training batch (not the test split)
      BATCH_READS[hashlib.sha1(np.asarray(rows_R, np.int64).tobytes()).hexdigest()] += 1
    return x

  activations.Shards.read = counted


def base_config(path: str, args: argparse.Namespace):
  config = _config(path)
  config.data.update(stream=True, stream_chunk=args.chunk)
  config.data.activations.update(test_fraction=args.test_fraction)
  config.data.max_train_examples = args.max_train_tokens
  config.sae.update(activation='relu', unit_norm_decoder=False, aux_weight=0.0, aux_k=min(32, *args.widths))
  config.train.update(num_epochs=args.epochs, batch_size=args.batch_size, figures_every=0, checkpoint_every=10**6,
                      models_at_once=args.models_at_once)
  config.eval.final_metrics = False
  return config


def _config(path: str):
  import importlib.util  # noqa: PLC0415
  spec = importlib.util.spec_from_file_location('sae_topk', os.path.join(os.path.dirname(__file__), '..', 'configs',
                                                                          'sae_topk.py'))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(f'activations={path}')


def settings() -> list[dict]:
  return sweep.product(sweep.axis('sae.l1_weight', [0.003, 0.01, 0.03, 0.1]), sweep.axis('seed', range(4)))


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--tokens', type=int, default=2_000_000)
  parser.add_argument('--d_in', type=int, default=512)
  parser.add_argument('--shard_tokens', type=int, default=250_000)
  parser.add_argument('--widths', default='1024,2048')
  parser.add_argument('--epochs', type=int, default=1)
  parser.add_argument('--batch_size', type=int, default=4096)
  parser.add_argument('--chunk', type=int, default=8, help='data.stream_chunk: batches per chunk')
  parser.add_argument('--test_fraction', type=float, default=0.001)
  parser.add_argument('--max_train_tokens', type=int, default=0,
                      help='data.max_train_examples: the first N tokens of the seeded permutation of the training '
                      'tokens (spread over every shard) make the epoch; 0: all')
  parser.add_argument('--models_at_once', type=int, default=1,
                      help="train.models_at_once: models of a group computed at once (0: all); bounds a step's memory")
  parser.add_argument('--serial_runs', type=int, default=1,
                      help='runs of each width timed one after another (0: none)')
  parser.add_argument('--dir', default=os.path.join(tempfile.gettempdir(), 'aelab_bench_sae_stream'))
  args = parser.parse_args()
  args.widths = [int(w) for w in args.widths.split(',')]
  path = os.path.join(args.dir, 'activations')
  write_folder(path, args.tokens, args.d_in, args.shard_tokens)
  BATCH_SIZE['rows'] = args.batch_size
  counting_reads()
  config = base_config(path, args)
  workdir = os.path.join(args.dir, 'sweep')
  result = run_the_sweep(config, args, workdir)
  print(json.dumps(result), flush=True)
  if args.serial_runs:
    serial_s, serial_cpu_s, estimated = serial(config, args, workdir)
    print(json.dumps({
        'serial_runs_timed': args.serial_runs * len(args.widths), 'serial_s': round(serial_s, 1),
        'serial_cpu_s': round(serial_cpu_s, 1), 'serial_estimated': estimated,
        'speedup_wall': round(serial_s / result['sweep_s'], 2),
        'speedup_cpu': round(serial_cpu_s / result['sweep_cpu_s'], 2),
        'peak_rss_mb_with_serial': round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}), flush=True)


def run_the_sweep(config, args: argparse.Namespace, workdir: str) -> dict:
  """Trains the 32 SAEs as one sweep; its wall and CPU seconds, the peak RSS and the reads of the stream."""
  runs = sweep.product(sweep.axis('model.latent_dim', args.widths), settings())
  shutil.rmtree(workdir, ignore_errors=True)
  start, cpu = time.perf_counter(), time.process_time()
  log = lambda line: print(f'[{time.perf_counter() - start:.0f} s] {line}', file=sys.stderr, flush=True)  # noqa: E731
  sweep.run_sweep(config, runs, workdir, log=log)
  sweep_s, sweep_cpu_s = time.perf_counter() - start, time.process_time() - cpu
  n_test = round(args.tokens * args.test_fraction)
  train = min(args.tokens - n_test, args.max_train_tokens or args.tokens)
  # the sweep loads the data once for both groups (one data config): the test split and the first training
  # token (Stream sizes its examples)
  train_rows_read = READ_ROWS['rows'] - (n_test + 1)
  reads_per_batch = sorted(collections.Counter(BATCH_READS.values()).items())  # [(times read, batches)]
  return {
      'tokens': args.tokens, 'd_in': args.d_in, 'folder_gb': round(args.tokens * args.d_in * 4 / 1e9, 2),
      'models': len(runs), 'widths': args.widths, 'epochs': args.epochs, 'batch_size': args.batch_size,
      'stream_chunk': args.chunk, 'models_at_once': args.models_at_once,
      'max_train_tokens': args.max_train_tokens or None,
      'training_tokens_per_sae': train // args.batch_size * args.batch_size * args.epochs,
      'peak_rss_mb': round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
      'batch_reads': train_rows_read / args.batch_size, 'batches_of_the_epochs': train // args.batch_size * args.epochs,
      'distinct_batches_read': len(BATCH_READS), 'reads_per_batch': {str(k): v for k, v in reads_per_batch},
      'sweep_s': round(sweep_s, 1), 'sweep_cpu_s': round(sweep_cpu_s, 1)}


def serial(config, args: argparse.Namespace, workdir: str) -> tuple[float, float, bool]:
  """Wall and CPU seconds of 32 runs one after another (each a sweep of one run, fresh workdir), from
  ``--serial_runs`` timed runs of each width scaled to 16, and whether they were scaled."""
  total, total_cpu = 0.0, 0.0
  for width in args.widths:
    timed = settings()[:args.serial_runs]
    for i, setting in enumerate(timed):
      out = f'{workdir}_serial_{width}_{i}'
      shutil.rmtree(out, ignore_errors=True)
      start, cpu = time.perf_counter(), time.process_time()
      sweep.run_sweep(config, [{'model.latent_dim': width, **setting}], out, log=lambda line: None)
      total += (time.perf_counter() - start) * 16 / len(timed)
      total_cpu += (time.process_time() - cpu) * 16 / len(timed)
  return total, total_cpu, args.serial_runs < 16


if __name__ == '__main__':
  main()
