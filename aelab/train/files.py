"""Files replaced atomically: a reader (or a process killed mid-write) sees the old file or the new one,
never a torn one. The one helper of the package for this (``replacing``), and its JSON and text forms."""
import contextlib
import json
import os
from typing import IO, Any, Iterator


@contextlib.contextmanager
def replacing(path: str, mode: str = 'w') -> Iterator[IO]:
  """Yields a file to write ``path``'s new content to: a temporary file beside it (``<path>.tmp``),
  renamed over ``path`` (``os.replace``, atomic on POSIX) when the block ends without an error, removed
  otherwise. ``mode`` is ``'w'`` (text) or ``'wb'`` (bytes; e.g. ``np.savez_compressed(f, ...)``)."""
  tmp = f'{path}.tmp'
  try:
    with open(tmp, mode) as f:
      yield f
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def write_text(path: str, text: str) -> None:
  """Writes ``text`` to ``path`` atomically (:func:`replacing`)."""
  with replacing(path) as f:
    f.write(text)


def write_json(path: str, value: Any) -> None:
  """Writes ``value`` as indented JSON with sorted keys to ``path`` atomically (non-JSON values as ``str``)."""
  with replacing(path) as f:
    json.dump(value, f, indent=2, sort_keys=True, default=str)
