"""Helpers shared by the representation-learning experiments: configs, outputs, trained models.

Run the experiments from the repository root (``python experiments/<name>.py``); this module sits
beside them and is imported as ``common``.
"""
import argparse
import importlib.util
import json
import os
import pathlib
import time
from typing import Any, Sequence

import ml_collections

from aelab import data, train
from aelab.workdir import Workdir

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
  """``configs/<name>.py``'s ``get_config(arg)``, as ``--config=configs/<name>.py:arg`` loads it."""
  spec = importlib.util.spec_from_file_location(f'config_{name}', ROOT / 'configs' / f'{name}.py')
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


def train_or_restore(config: ml_collections.ConfigDict, workdir: str) -> tuple[train.Run, Any, dict]:
  """Trains ``config`` with ``train.train_and_evaluate`` (resuming, or only reporting, when ``workdir``
  already holds its checkpoints) and returns ``(run, params of the last epoch, summary)``."""
  config.train.figures_every = 0
  summary = train.train_and_evaluate(config, workdir)
  run = train.Run(config, data.load(config.data))
  out = Workdir(workdir, config, config.train.keep_checkpoints)
  try:
    state, _ = out.restore(run.init_state())
  finally:
    out.close()
  return run, state['params'], summary


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
