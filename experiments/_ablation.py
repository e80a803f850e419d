"""Shared by the ablation reports: command line, running the sweep, mean and std over seeds, the
markdown table and the figure (one panel per metric against the swept value)."""
import argparse
import json
import os
import pathlib
from collections.abc import Callable, Sequence
from typing import Any

import matplotlib

matplotlib.use('Agg')
import common  # experiments/common.py, beside this file
import matplotlib.pyplot as plt
import ml_collections
import numpy as np

import aelab
from aelab import api, data
from aelab.train import sweep

ROOT = pathlib.Path(__file__).resolve().parents[1]
MNIST = ROOT.parent / 'shared' / 'data' / 'mnist'

Row = dict[str, Any]  # one run: its overrides and metrics


def parse_args(doc: str, name: str) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=doc.splitlines()[0])
  parser.add_argument('--data', default=f'idx={MNIST}', help='config arg: idx=DIR (default: real MNIST), digits, ...')
  parser.add_argument('--epochs', type=int, default=10, help='epochs of every run')
  parser.add_argument('--seeds', type=int, default=3, help='seeds per swept value')
  parser.add_argument('--workdir', default=str(ROOT / 'runs' / name), help='the sweep\'s runs and the report')
  parser.add_argument('--figure', default=None,
                      help=f'also copy the figure here (e.g. experiments/figures/{name}.png)')
  return parser.parse_args()


def run(args: argparse.Namespace, config_file: str, sweep_file: str,
        extra: Callable[[sweep.Member, api.Trained], dict[str, float]]) -> tuple[ml_collections.ConfigDict, list[Row]]:
  """Trains the sweep of ``sweep_file`` over ``config_file`` (finished runs are skipped) with the
  command line's data, epochs and seeds; returns the config and :func:`rows_with_params`."""
  config = common.load_config(pathlib.Path(config_file).stem, args.data)
  config.train.update(num_epochs=args.epochs, figures_every=0)
  config.eval.final_metrics = False  # the report computes active units itself; a k=5000 NLL per run is slow on CPU
  overrides = sweep.load(f'{ROOT / sweep_file}:seeds={args.seeds}')
  sweep.run_sweep(config, overrides, args.workdir)
  return config, rows_with_params(sweep.group(sweep.members(config, overrides)), args.workdir, extra)


def encode_test(member: sweep.Member, trained: api.Trained) -> np.ndarray:
  """The trained run's codes of its test split (its family's ``encode``, ``N x Z``): the code (AE) or the
  posterior mean ``E_q[z|x]`` (VAE)."""
  return trained.encode(test_images(member))


def rows_with_params(groups: list[list[sweep.Member]], workdir: str,
                     extra: Callable[[sweep.Member, api.Trained], dict[str, float]]) -> list[Row]:
  """One row per run: its overrides, its summary.json and ``extra(member, trained run)``, where the trained
  run is ``aelab.load`` of the run's folder (its final parameters)."""
  rows = []
  for group in groups:
    for member in group:
      trained = aelab.load(sweep.run_dir(workdir, member), dataset(member))
      rows.append({**member.overrides, **sweep.read_summary(workdir, member), **extra(member, trained)})
  return rows


_DATASETS: dict[str, data.Dataset] = {}


def dataset(member: sweep.Member) -> data.Dataset:
  """The run's dataset, loaded once per data config."""
  key = json.dumps(member.config.data.to_dict(), sort_keys=True, default=str)
  if key not in _DATASETS:
    _DATASETS[key] = data.load(member.config.data)
  return _DATASETS[key]


def test_images(member: sweep.Member) -> np.ndarray:
  """The run's test split (``N x D``), loaded once per data config."""
  return dataset(member).x_test


Stats = dict[str, tuple[float, float, int]]  # metric: (mean, std, number of runs)


def aggregate(rows: list[Row], by: str, metrics: Sequence[str]) -> list[tuple[float, Stats]]:
  """``[(value of by, {metric: (mean, std over runs, number of runs)})]`` sorted by the value."""
  out = []
  for value in sorted({r[by] for r in rows}):
    runs = [r for r in rows if r[by] == value]
    out.append((value, {m: (float(np.mean([r[m] for r in runs])), float(np.std([r[m] for r in runs])), len(runs))
                        for m in metrics}))
  return out


def markdown_table(aggregated, by_label: str, columns: dict[str, tuple[str, str]]) -> str:
  """``columns``: ``{metric: (header, format)}``; cells are ``mean ± std``."""
  lines = ['| ' + ' | '.join([by_label] + [h for h, _ in columns.values()]) + ' |',
           '| ' + ' | '.join(['---'] * (len(columns) + 1)) + ' |']
  for value, stats in aggregated:
    cells = [f'{stats[m][0]:{fmt}} ± {stats[m][1]:{fmt}}' for m, (_, fmt) in columns.items()]
    lines.append('| ' + ' | '.join([f'{value:g}'] + cells) + ' |')
  return '\n'.join(lines)


def plot_row(axes, aggregated, columns: dict[str, tuple[str, str]], xlabel: str, xscale: dict) -> None:
  """One panel per metric: mean with a ± std band against the swept value."""
  x = [v for v, _ in aggregated]
  for ax, (metric, (header, _)) in zip(axes, columns.items()):
    mean = np.array([s[metric][0] for _, s in aggregated])
    std = np.array([s[metric][1] for _, s in aggregated])
    ax.plot(x, mean, marker='o')
    ax.fill_between(x, mean - std, mean + std, alpha=0.3)
    ax.set_xscale(**xscale)
    ax.set_xlabel(xlabel)
    ax.set_title(header, fontsize=9)


def save_figure(fig, workdir: str, name: str, copy_to: str | None) -> str:
  fig.tight_layout()
  path = os.path.join(workdir, f'{name}.png')
  for target in [path] + ([copy_to] if copy_to else []):
    fig.savefig(target, dpi=70)
  plt.close(fig)
  return path


def data_label(config: ml_collections.ConfigDict) -> str:
  """``idx=../shared/data/mnist (8000 train / 2000 test)`` or ``digits (...)``."""
  dataset = data.load(config.data)
  source = f'{config.data.name}={config.data.path}' if config.data.path else config.data.name
  return f'{source} ({len(dataset.x_train)} train / {len(dataset.x_test)} test images)'


def write_report(workdir: str, name: str, text: str) -> None:
  with open(os.path.join(workdir, f'{name}.md'), 'w') as f:
    f.write(text + '\n')
  print(text)
