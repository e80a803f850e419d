"""Helpers shared by the representation-learning experiments: configs, outputs, trained models.

Run the experiments from the repository root (``python experiments/<name>.py``); this module sits
beside them and is imported as ``common``.
"""
import argparse
import json
import os
import pathlib
import time
from collections.abc import Sequence
from typing import Any

import ml_collections

import aelab
from aelab import api
from aelab.train import engine
from aelab import config as config_lib

ROOT = pathlib.Path(__file__).resolve().parents[1]


def parser(doc: str, default_out: str) -> argparse.ArgumentParser:
  """An argument parser with the flags every experiment takes: ``--data``, ``--out``, ``--json``."""
  p = argparse.ArgumentParser(description=doc.splitlines()[0],
                              formatter_class=argparse.RawDescriptionHelpFormatter, epilog=doc)
  p.add_argument('--data', default='digits',
                 help="the config arg that picks the data: digits (default), idx=DIR, npz=FILE, csv=FILE, a tfds name")
  p.add_argument('--out', default=default_out, help='output directory for tables, figures and runs')
  p.add_argument('--json', action='store_true', help='print one final JSON line with the results')
  return p


def load_config(name: str, arg: str | None = None) -> ml_collections.ConfigDict:
  """``configs/<name>.py``'s ``get_config(arg)``, as ``--config=configs/<name>.py:arg`` loads it
  (``aelab.config.load``)."""
  path = ROOT / 'configs' / f'{name}.py'
  return config_lib.load(f'{path}:{arg}' if arg else str(path))


def train_family(name: str, data_arg: str, out: str, epochs: int | None, k: int) -> tuple[dict, float]:
  """Trains ``configs/<name>.py`` on ``data_arg`` (``digits`` or a config arg such as ``idx=DIR``) into
  ``out/<name>`` without figures, its NLL with ``k`` importance samples, for ``epochs`` epochs when given
  (else the config's); returns its summary and the seconds it took."""
  config = load_config(name, None if data_arg == 'digits' else data_arg)
  config.eval.nll_samples = k
  config.train.figures_every = 0
  if epochs:
    config.train.num_epochs = epochs
  start = time.time()
  summary = engine.train_and_evaluate(config, os.path.join(out, name), log=lambda line: None)
  return summary, time.time() - start


def train_or_restore(config: ml_collections.ConfigDict, workdir: str) -> tuple[api.Trained, dict]:
  """Trains ``config`` with ``engine.train_and_evaluate`` (resuming, or only reporting, when ``workdir``
  already holds its checkpoints), without figures, and returns ``(aelab.load(workdir), summary)``: the
  trained run (config, parameters of the last epoch, ``encode`` / ``decode`` / ...) and its summary."""
  config.train.figures_every = 0
  summary = engine.train_and_evaluate(config, workdir)
  return aelab.load(workdir), summary


def markdown_table(rows: Sequence[dict], columns: Sequence[str], formats: dict[str, str] | None = None) -> str:
  """A markdown table of ``rows`` (dicts) with the given ``columns``; ``formats`` maps a column to a
  format spec (e.g. ``'.4f'``)."""
  formats = formats or {}
  fmt = lambda c, v: format(v, formats[c]) if c in formats and isinstance(v, (int, float)) else str(v)
  lines = ['| ' + ' | '.join(columns) + ' |', '|' + ' --- |' * len(columns)]
  lines += ['| ' + ' | '.join(fmt(c, r.get(c, '')) for c in columns) + ' |' for r in rows]
  return '\n'.join(lines)


def write_results(out: str, name: str, results: Any, table: str, started: float | None = None,
                  print_json: bool = False) -> None:
  """Writes ``<out>/<name>.json`` and ``<out>/<name>.md``, prints the table, the wall time since
  ``started`` (``time.time()``) and, with ``print_json``, ``results`` as one final JSON line."""
  os.makedirs(out, exist_ok=True)
  with open(os.path.join(out, f'{name}.json'), 'w') as f:
    json.dump(results, f, indent=2)
  with open(os.path.join(out, f'{name}.md'), 'w') as f:
    f.write(table + '\n')
  print(table, flush=True)
  print(f'wrote {out}/{name}.json, {out}/{name}.md', flush=True)
  if started is not None:
    print(f'wall time: {time.time() - started:.0f} s', flush=True)
  if print_json:
    print(json.dumps(results), flush=True)
