"""A run's record of metrics: ``metrics.jsonl`` (one JSON object per epoch: ``epoch``, ``step`` and the
``train/*``, ``test/*`` metrics) and ``summary.json`` (the final metrics). The JSONL metric writer
(``aelab/train/writers.py``) appends to the first; resuming truncates it to the restored epoch.

A line of metrics.jsonl torn by a kill is dropped on the next start; files rewritten in place are replaced
atomically (``aelab/train/files.py``).
"""
import json
import os
from typing import Any, Callable

from aelab.errors import ConfigError
from aelab.train import files

METRICS = 'metrics.jsonl'
SUMMARY = 'summary.json'


def jsonable(metrics: dict[str, Any]) -> dict[str, Any]:
  """``metrics`` with numpy / JAX scalars made Python numbers (``.item()``)."""
  return {k: (v.item() if hasattr(v, 'item') else v) for k, v in metrics.items()}


def append(run_dir: str, record: dict[str, Any]) -> None:
  """Appends ``record`` (``epoch``, ``step``, metrics) as one line to ``<run_dir>/metrics.jsonl``."""
  with open(os.path.join(run_dir, METRICS), 'a') as f:
    f.write(json.dumps(jsonable(record)) + '\n')


def _lines(run_dir: str) -> tuple[list[dict[str, Any]], int]:
  """``(records, number of lines that are not a JSON record)`` of metrics.jsonl (``([], 0)`` without it)."""
  path = os.path.join(run_dir, METRICS)
  if not os.path.exists(path):
    return [], 0
  records, bad = [], 0
  with open(path, errors='replace') as f:
    for line in f:
      try:
        record = json.loads(line)
      except json.JSONDecodeError:
        bad += bool(line.strip())
        continue
      if isinstance(record, dict) and isinstance(record.get('epoch'), int):
        records.append(record)
      else:
        bad += 1
  return records, bad


def read(run_dir: str) -> list[dict[str, Any]]:
  """The records of metrics.jsonl, in order; a line torn by a kill (not JSON) is skipped."""
  return _lines(run_dir)[0]


def ranges(epochs: list[int]) -> str:
  """``[1, 2, 3, 5]`` -> ``'1-3, 5'``."""
  parts, start = [], epochs[0]
  for prev, cur in zip(epochs, epochs[1:] + [None]):
    if cur is None or cur != prev + 1:
      parts.append(f'{start}-{prev}' if prev > start else f'{start}')
      start = cur
  return ', '.join(parts)


def truncate(run_dir: str, epoch: int) -> str | None:
  """Keeps the records of epochs ``1..epoch`` of metrics.jsonl (those of later epochs, written after the
  last checkpoint, and lines torn by a kill are dropped), replacing the file atomically. Returns a line to
  report when lines were torn or the history of epochs ``1..epoch`` is missing, else None."""
  path = os.path.join(run_dir, METRICS)
  records, bad = _lines(run_dir)
  kept = [r for r in records if r['epoch'] <= epoch]
  if bad or len(kept) != len(records):
    files.write_text(path, ''.join(json.dumps(r) + '\n' for r in kept))
  notes = [f'dropped {bad} torn line(s)'] if bad else []
  missing = sorted(set(range(1, epoch + 1)) - {r['epoch'] for r in kept})
  if missing:
    notes.append(f'no metrics of epoch(s) {ranges(missing)} (lost; training goes on from the checkpoint)')
  return f'{path}: {"; ".join(notes)}.' if notes else None


def write_summary(run_dir: str, summary: dict[str, Any]) -> None:
  """Writes ``<run_dir>/summary.json`` atomically."""
  files.write_json(os.path.join(run_dir, SUMMARY), jsonable(summary))


def read_summary(run_dir: str, log: Callable[[str], None] | None = None) -> dict[str, Any] | None:
  """summary.json, or None without one. One that is not JSON (torn) is reported through ``log`` and
  read as None (the run's last checkpoint then writes it again); without ``log`` it raises ConfigError."""
  path = os.path.join(run_dir, SUMMARY)
  if not os.path.exists(path):
    return None
  try:
    with open(path) as f:
      summary = json.load(f)
    if not isinstance(summary, dict):
      raise ValueError('not a JSON object')
    return summary
  except (json.JSONDecodeError, UnicodeDecodeError, ValueError) as e:
    message = f'{path} is unreadable ({e})'
    if log is None:
      raise ConfigError(f'{message}: delete it and rerun the training command to write it again.') from None
    log(f'{message}; it is written again from the run\'s last checkpoint.')
    return None
