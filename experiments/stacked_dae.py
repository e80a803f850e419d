"""Stacked denoising autoencoders (Vincent et al. 2010): pretrained vs randomly initialized networks.

  python experiments/stacked_dae.py --config=configs/stacked_dae.py                  # digits, 1 seed
  python experiments/stacked_dae.py --config=configs/stacked_dae.py:idx=../shared/data/mnist \\
      --labels=100,1000,0 --seeds=0,1,2 --out=runs/stacked_dae_mnist

Per seed: greedy layer-wise pretraining of the stack (``aelab.train.pretrain.pretrain``, each layer a
denoising autoencoder with masking noise on the codes of the layer below) on all training images,
unlabelled; then, for each number of labels (``0``: all), the same labelled subset fine-tunes the
pretrained stack under a softmax layer and the same network from random initialization, with the same
keys and number of Adam steps. Reports the test classification error (mean +- std over seeds) and
writes ``stacked_dae.{json,md}`` and ``stacked_dae.png`` to ``--out``.
"""
import json
import os
import time

import matplotlib

matplotlib.use('Agg')
import common
import matplotlib.pyplot as plt
import numpy as np
from absl import app, flags, logging
from ml_collections import config_flags

from aelab import config as config_lib
from aelab import data
from aelab.train import pretrain

_CONFIG = config_flags.DEFINE_config_file('config', 'configs/stacked_dae.py', 'configs/stacked_dae.py[:arg]')
_LABELS = flags.DEFINE_string('labels', '100,1000,0', 'comma-separated numbers of labelled examples; 0: all')
_SEEDS = flags.DEFINE_string('seeds', '0', 'comma-separated seeds (pretraining, label subset, init, fine-tuning)')
_OUT = flags.DEFINE_string('out', 'runs/stacked_dae', 'output directory')
_JSON = flags.DEFINE_bool('json', False, 'print one final JSON line with the summary rows')


def summarize(results: list[dict]) -> list[dict]:
  """Mean and standard deviation (over seeds, ``ddof=0``) of the test errors per number of labels."""
  rows = []
  for n in sorted({r['num_labels'] for r in results}):
    group = [r for r in results if r['num_labels'] == n]
    row = {'num_labels': n, 'seeds': len(group)}
    for name in ('pretrained', 'random'):
      errors = np.array([r[f'{name}_error'] for r in group])
      row[f'{name}_error_mean'], row[f'{name}_error_std'] = float(errors.mean()), float(errors.std())
      row[name] = f'{100 * errors.mean():.2f} +- {100 * errors.std():.2f} %'
    rows.append(row)
  return rows


def _figure(rows: list[dict], path: str) -> None:
  fig, ax = plt.subplots(figsize=(4.8, 3.4))
  for name, style in (('pretrained', 'o-'), ('random', 's--')):
    ax.errorbar([r['num_labels'] for r in rows], [100 * r[f'{name}_error_mean'] for r in rows],
                [100 * r[f'{name}_error_std'] for r in rows], fmt=style, capsize=3,
                label='SDAE pretrained' if name == 'pretrained' else 'random init')
  ax.set(xscale='log', xlabel='labelled training examples', ylabel='test error (%)')
  ax.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=80)
  plt.close(fig)


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  logging.set_verbosity(logging.WARNING)
  config = _CONFIG.value
  try:
    pretrain.validate(config)
    dataset = data.load(config.data)
  except (config_lib.ConfigError, data.DataError, data.DatasetUnavailableError) as e:
    raise SystemExit(f'error: {e}') from None
  labels = [int(s) for s in _LABELS.value.split(',')]
  results, t0 = [], time.time()
  for seed in [int(s) for s in _SEEDS.value.split(',')]:
    config.seed = seed
    log = lambda line: print(f'[{time.time() - t0:6.0f} s] {line}', flush=True)
    results += pretrain.compare(config, dataset, labels, log)
  rows = summarize(results)
  table = common.markdown_table(rows, ['num_labels', 'seeds', 'pretrained', 'random'])
  common.write_results(_OUT.value, 'stacked_dae', {'rows': rows, 'runs': results,
                                                   'config': json.loads(config.to_json_best_effort())}, table)
  _figure(rows, os.path.join(_OUT.value, 'stacked_dae.png'))
  print(f'wall time: {time.time() - t0:.0f} s', flush=True)
  if _JSON.value:
    print(json.dumps(rows))


if __name__ == '__main__':
  app.run(main)
