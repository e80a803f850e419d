"""A fingerprint of the data a run trains on, stored in its config.json, so that a rerun in the same workdir
on other data is refused (a workdir is one run, on one dataset).

A file (npz, csv, an .npy): its size, modification time and a SHA-256 of its content (the whole file up to
:data:`WHOLE_FILE_BYTES`, else :data:`SAMPLES` evenly spaced blocks of :data:`SAMPLE_BYTES`, which cover
rows all through it). A folder (images, idx): the number and total size of its files, its subfolders
(an image folder's classes), and a SHA-256 of the sorted list of relative paths and sizes. A source that
reads no path (digits, shapes2d, superposition) has the fingerprint ``{}`` unless it defines its own
``fingerprint(data_config)`` (tfds: name, version and split sizes). :func:`changes` says what differs,
one phrase per change; a file's modification time alone (a copy of the same bytes) is no change.
"""
import datetime
import hashlib
import os
from typing import Any

WHOLE_FILE_BYTES = 64 * 2**20  # files up to this size are hashed whole
SAMPLES, SAMPLE_BYTES = 64, 2**16  # larger ones: 64 blocks of 64 KiB, the first and last included


def content_hash(path: str, size: int) -> str:
  """SHA-256 hex digest of the file at ``path`` (``size`` bytes): whole, or sampled above WHOLE_FILE_BYTES."""
  digest = hashlib.sha256()
  with open(path, 'rb') as f:
    if size <= WHOLE_FILE_BYTES:
      for block in iter(lambda: f.read(2**20), b''):
        digest.update(block)
    else:
      for i in range(SAMPLES):
        f.seek(i * (size - SAMPLE_BYTES) // (SAMPLES - 1))
        digest.update(f.read(SAMPLE_BYTES))
  return digest.hexdigest()


def of_file(path: str) -> dict[str, Any]:
  """``{'kind': 'file', 'size': bytes, 'mtime': Unix time, 'sha256': ...}`` of the file at ``path``."""
  stat = os.stat(path)
  return {'kind': 'file', 'size': stat.st_size, 'mtime': stat.st_mtime, 'sha256': content_hash(path, stat.st_size)}


def of_folder(path: str) -> dict[str, Any]:
  """``{'kind': 'folder', 'files': count, 'bytes': total size, 'subfolders': sorted names, 'sha256': digest
  of the sorted relative paths and sizes}`` of every file below ``path`` (hidden ones left out)."""
  listing = []
  for root, dirs, names in os.walk(path):
    dirs[:] = sorted(d for d in dirs if not d.startswith('.'))
    for name in names:
      if not name.startswith('.'):
        full = os.path.join(root, name)
        listing.append((os.path.relpath(full, path), os.path.getsize(full)))
  listing.sort()
  digest = hashlib.sha256(''.join(f'{name}\t{size}\n' for name, size in listing).encode()).hexdigest()
  subfolders = sorted(d for d in os.listdir(path) if os.path.isdir(os.path.join(path, d)) and not d.startswith('.'))
  return {'kind': 'folder', 'files': len(listing), 'bytes': sum(size for _, size in listing),
          'subfolders': subfolders, 'sha256': digest}


def of_path(path: str) -> dict[str, Any]:
  """:func:`of_file` or :func:`of_folder` of ``path`` (resolved), or ``{'kind': 'missing'}``."""
  path = os.path.abspath(os.path.expanduser(path))
  if os.path.isdir(path):
    return {'path': path, **of_folder(path)}
  if os.path.isfile(path):
    return {'path': path, **of_file(path)}
  return {'path': path, 'kind': 'missing'}


def of_paths(data_config: Any) -> dict[str, Any]:
  """The default fingerprint of a source that reads ``data.path`` (and ``data.test_path`` when set)."""
  found = {}
  for field in ('path', 'test_path'):
    value = data_config.get(field)
    if isinstance(value, str) and value:
      found[field] = of_path(value)
  return found


def _when(seconds: float) -> str:
  return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).strftime('%Y-%m-%d %H:%M:%S UTC')


def _entry_changes(field: str, old: dict[str, Any], new: dict[str, Any]) -> list[str]:
  """What differs between two fingerprints of one ``data.<field>`` (:func:`of_path`)."""
  where = f'data.{field} {new.get("path", "")}'.rstrip()
  if old.get('path') != new.get('path'):
    same = old.get('sha256') == new.get('sha256') and old.get('kind') == new.get('kind')
    return [f'data.{field} {old.get("path")} -> {new.get("path")} ({"same" if same else "other"} content)']
  if old.get('kind') != new.get('kind'):
    return [f'{where} was a {old.get("kind")}, is now a {new.get("kind")}']
  if new.get('kind') == 'file':
    if old['size'] != new['size']:
      return [f'{where} changed from {old["size"]} to {new["size"]} bytes (modified {_when(new["mtime"])})']
    if old['sha256'] != new['sha256']:
      return [f'{where} has other content of the same size (modified {_when(new["mtime"])})']
    return []
  if new.get('kind') == 'folder':
    found = [f'{name} {old[name]} -> {new[name]}' for name in ('files', 'bytes', 'subfolders')
             if old[name] != new[name]]
    if not found and old['sha256'] != new['sha256']:
      found = ['other file names or sizes']
    return [f'{where}: {", ".join(found)}'] if found else []
  return []


def changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
  """One phrase per difference between two data fingerprints (``[]``: the same data)."""
  found = []
  for key in sorted(old.keys() | new.keys()):
    a, b = old.get(key), new.get(key)
    if isinstance(a, dict) and isinstance(b, dict) and 'kind' in a and 'kind' in b:
      found += _entry_changes(key, a, b)
    elif a != b:
      found.append(f'{key}: {a} -> {b}')
  return found
