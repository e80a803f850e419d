"""How the command lines (``aelab.main``, ``aelab.evaluate``) end on a user's mistake: one ``error: ...``
line on stderr naming the file, field or value and what to do, exit status 1, no traceback; with
``--debug`` the traceback instead.

A user's mistake is one of :data:`USER_ERRORS` (a bad config value or file, bad or missing data, a damaged
workdir, a full disk or another OSError) or a config-flag failure (:func:`flag_error`). A full disk is
told once: the library's own log records about it (orbax logs each failed background write with its
traceback) are dropped while :func:`reporting` runs, and the teardown of a process that failed does not
add tracebacks of its own.
"""
import ast
import contextlib
import difflib
import errno
import functools
import logging
import os
import sys
import threading
from typing import Iterator

import ml_collections

from aelab import api, config as config_lib, data, models

from aelab.train import parallel, workdir as workdir_lib

USER_ERRORS = (config_lib.ConfigError, data.DataError, data.DatasetUnavailableError, api.CheckpointError,
               FloatingPointError, OSError, parallel.PeerLost)
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
_DISK_FULL_TEXT = os.strerror(errno.ENOSPC)  # 'No space left on device'


def debug_requested(argv: list[str]) -> bool:
  """Whether ``argv`` holds ``--debug`` (or ``--debug=true``/``=1``), before any flag is parsed."""
  return any(a == '--debug' or a.lower() in ('--debug=true', '--debug=1') for a in argv)


def disk_full(error: BaseException | None) -> BaseException | None:
  """The exception in ``error``'s chain (itself, its cause or context, ...) that says the disk is full
  (errno ENOSPC or EDQUOT, or orbax / TensorStore text 'No space left on device'), or None."""
  seen = set()
  while error is not None and id(error) not in seen:
    if (isinstance(error, OSError) and error.errno in _DISK_FULL) or _DISK_FULL_TEXT in str(error):
      return error
    seen.add(id(error))
    error = error.__cause__ or error.__context__
  return None


def one_line(text: str) -> str:
  """``text`` with its lines joined by spaces (messages of libraries span lines)."""
  return ' '.join(line.strip() for line in str(text).splitlines() if line.strip())


def message(error: BaseException, workdir: str | None = None) -> str:
  """The one line shown for ``error`` (without ``error: ``): a full disk names the workdir and what to do;
  any other error shows its own message (ours say what to do)."""
  full = disk_full(error)
  if full is not None:
    where = os.path.abspath(workdir) if workdir else 'the output directory'
    filename = getattr(full, 'filename', None)
    written = f' (writing {filename})' if filename else ''
    return (f'the disk is full in {where}{written}: free space or use a --workdir on another disk, then rerun '
            'the same command; training resumes from the last checkpoint.')
  if isinstance(error, OSError) and not isinstance(error, data.DataError) and error.strerror:
    return f'{error.strerror}: {error.filename}' if error.filename else error.strerror
  return one_line(error) or type(error).__name__


class _DropDiskFull(logging.Filter):
  """Drops log records about a full disk: :func:`reporting` tells it once, at the end."""

  def filter(self, record: logging.LogRecord) -> bool:
    error = record.exc_info[1] if record.exc_info else None
    return disk_full(error) is None and _DISK_FULL_TEXT not in record.getMessage()


@contextlib.contextmanager
def reporting(debug: bool, workdir: str | None = None, exiting: bool = False) -> Iterator[None]:
  """Turns a user's mistake raised inside into ``SystemExit('error: ...')`` (exit status 1), unless
  ``debug``; also an error of any type whose chain says the disk is full.

  Meanwhile log records about a full disk are dropped, and unraisable exceptions (those Python can only
  print, e.g. TensorStore's callbacks into an asyncio loop closed by a failed write) are held back:
  dropped after a user's mistake, printed at the end otherwise. ``exiting`` (a process about to end, not
  a test calling main): after the error, teardown failures (threads, atexit) stay quiet too; and standard
  output is line-buffered, so that each progress line reaches a pipe or a log file when it is printed, before
  a later error on standard error (block-buffered, a pipe got them at exit, after the error).
  """
  if exiting and hasattr(sys.stdout, 'reconfigure'):
    sys.stdout.reconfigure(line_buffering=True)
  if debug:
    yield
    return
  drop, held, unraisablehook = _DropDiskFull(), [], sys.unraisablehook
  absl_logger = logging.getLogger('absl')  # orbax logs through absl.logging
  absl_logger.addFilter(drop)
  sys.unraisablehook = held.append
  try:
    yield
  except Exception as e:
    if not isinstance(e, USER_ERRORS) and disk_full(e) is None:
      raise
    held.clear()
    if exiting:
      _quiet_teardown()
    raise SystemExit(f'error: {message(e, workdir)}') from None
  finally:
    absl_logger.removeFilter(drop)
    if sys.unraisablehook is not _drop:
      sys.unraisablehook = unraisablehook
    for unraisable in held:
      unraisablehook(unraisable)


def _drop(*args) -> None:
  """A hook that shows nothing (see :func:`_quiet_teardown`)."""


def _quiet_teardown() -> None:
  """After the one error line, a failing process's threads, atexit callbacks and C extensions (e.g.
  tensorboardX flushing onto a full disk) print nothing more. ``--debug`` shows them."""
  threading.excepthook = sys.unraisablehook = _drop


def remove_if_empty(path: str) -> None:
  """Removes the directory ``path`` and its subdirectories if they hold no file but a workdir lock that no
  process holds (a failed start leaves no empty workdir behind); anything with another file in it stays, and
  so does the folder of a run that another process holds locked, with everything below it. A process of a
  job of several removes nothing: its peers write into the same workdir (orbax's empty temporary folders of
  a checkpoint in progress among them)."""
  if not os.path.isdir(path) or parallel.process_count() > 1:
    return
  walked = []
  for root, dirs, files in os.walk(path):
    if workdir_lib.LOCK in files and _held(os.path.join(root, workdir_lib.LOCK)):
      dirs[:] = []  # another process's run: leave it whole
      continue
    walked.append((root, files))
  for root, files in sorted(walked, key=lambda entry: -len(entry[0])):  # deepest first
    with contextlib.suppress(OSError):
      if files == [workdir_lib.LOCK]:
        os.remove(os.path.join(root, workdir_lib.LOCK))  # the lock file of the failed start itself
      os.rmdir(root)  # fails, and so keeps the directory, unless it is empty


def remove_if_only_lock(path: str) -> None:
  """Removes the directory ``path`` if it holds nothing but its own workdir lock, which no process holds (a
  run stopped by a signal before it wrote anything). Nothing below it is walked: a checkpoint that orbax
  may still be finishing is never touched."""
  with contextlib.suppress(OSError):
    if os.listdir(path) == [workdir_lib.LOCK] and not _held(os.path.join(path, workdir_lib.LOCK)):
      os.remove(os.path.join(path, workdir_lib.LOCK))
      os.rmdir(path)


def _held(lock_path: str) -> bool:
  """Whether another process holds the workdir lock ``lock_path`` now (another process of a sweep that
  has just locked its run's folder: its folder stays)."""
  import fcntl  # noqa: PLC0415
  fd = os.open(lock_path, os.O_RDONLY)
  try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return False
  except BlockingIOError:
    return True
  finally:
    os.close(fd)


def flag_error(error: Exception, argv: list[str]) -> str:
  """The one line for a failure while absl parses ``argv`` (``--config`` of ml_collections'
  config_flags): a config file that is missing or fails (:func:`config.load`'s message), an override of a
  field the config lacks (with the closest names), or the flag library's own message."""
  spec = _flag_value(argv, 'config')
  if spec:
    try:
      config = config_lib.load(spec)
    except config_lib.ConfigError as e:
      return f'--config={spec}: {e}'
    unknown = _unknown_override(config, argv)
    if unknown:
      return unknown
  return one_line(error) or type(error).__name__


def _flag_value(argv: list[str], name: str) -> str | None:
  """The value of ``--name=value`` or ``--name value`` in argv, or None."""
  for i, arg in enumerate(argv):
    if arg.startswith(f'--{name}='):
      return arg.split('=', 1)[1]
    if arg == f'--{name}' and i + 1 < len(argv):
      return argv[i + 1]
  return None


def split_family_overrides(argv: list[str]) -> tuple[list[str], dict[str, str]]:
  """``(argv without them, {dotted field: text})``: the overrides ``--config.<section>.<field>=text`` of the
  sections of the family that ``--config.model.name`` names (and of those it builds on). The config file may
  lack those sections, and absl cannot override a field the loaded config lacks: :func:`apply_overrides`
  sets them after ``config.with_family`` has added the sections."""
  name = _flag_value(argv, 'config.model.name')
  if not name:
    return argv, {}
  try:
    sections = models.sections(name)
  except config_lib.ConfigError:
    return argv, {}  # validation reports the name
  kept, found = [], {}
  for arg in argv:
    field, equals, text = arg[len('--config.'):].partition('=') if arg.startswith('--config.') else ('', '', '')
    if equals and field.split('.')[0] in sections:
      found[field] = text
    else:
      kept.append(arg)
  return kept, found


def apply_overrides(config: ml_collections.ConfigDict, overrides: dict[str, str]) -> ml_collections.ConfigDict:
  """Sets each ``{dotted field: text}`` of :func:`split_family_overrides` in ``config``, the text read as a
  Python literal (``4``, ``(8, 8)``, ``True``) or else as a string. Returns ``config``. Raises ConfigError
  for a field its section lacks or a value of another type than the default's."""
  for field, text in overrides.items():
    try:
      value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
      value = text
    *path, key = field.split('.')
    node = functools.reduce(lambda section, part: section[part], path, config)
    if not isinstance(node, ml_collections.ConfigDict) or key not in node:
      raise config_lib.ConfigError(f'--config.{field}: the config has no field {field}.')
    try:
      node[key] = value
    except (TypeError, ValueError):
      raise config_lib.ConfigError(f'--config.{field}={text} must be of type {type(node[key]).__name__}, like '
                                   f'its default {node[key]!r}.') from None
  return config


# Fields that moved from the base config to a family's own section (aelab/models/<family>.py's CONFIG).
MOVED_FIELDS = {
    **{f'model.{f}': f'vae.{f}' for f in ('kl_weight', 'num_samples', 'free_bits', 'kl_warmup_steps',
                                          'capacity_weight', 'capacity_max', 'capacity_steps')},
    **{f'model.{f}': f'vqvae.{f}' for f in ('code_layout', 'code_dim', 'codebook_size', 'commitment_weight',
                                            'codebook_ema', 'dead_code_steps')},
    'model.sae_activation': 'sae.activation', 'model.prior': 'aae.prior',
    'disent.tc_weight': 'beta_tcvae.tc_weight or factor_vae.tc_weight', 'disent.dip_type': 'dip_vae.dip_type',
    'disent.dip_lambda_od': 'dip_vae.dip_lambda_od', 'disent.dip_lambda_d': 'dip_vae.dip_lambda_d',
    'disent.disc_hidden': 'factor_vae.disc_hidden', 'disent.disc_learning_rate': 'factor_vae.disc_learning_rate',
    'disent.eval_points': 'eval.disent_points', 'disent.score_points': 'eval.score_points',
    'disent.dci_model': 'eval.dci_model',
}


def _unknown_override(config: ml_collections.ConfigDict, argv: list[str]) -> str | None:
  """For the first ``--config.a.b=...`` whose field the config lacks: what is wrong and the closest
  names (or where a moved field went, or which family a section belongs to); None if every override
  names a field."""
  for arg in argv:
    if not arg.startswith('--config.'):
      continue
    field = arg[len('--config.'):].split('=', 1)[0]
    if field in MOVED_FIELDS:
      return f'{arg}: {field} is now {MOVED_FIELDS[field]} (the section of its model family).'
    section = field.split('.')[0]
    if section not in config and section in config_lib.schema():
      return (f'{arg}: the config has no section {section}, the section of another model family: use a config '
              f'file whose model.name is {section} (or a family built on it), e.g. one that starts from '
              f'aelab.config.base({section!r}).')
    node, parts = config, field.split('.')
    for depth, part in enumerate(parts):
      parent = '.'.join(parts[:depth])
      if not isinstance(node, ml_collections.ConfigDict):
        return f'{arg}: {parent} is a value, not a section of fields; set it with --config.{parent}=...'
      if part not in node:
        names = list(node.keys())
        close = [f'{parent}.{n}' if parent else n for n in difflib.get_close_matches(part, names, n=3)]
        hint = f'did you mean {" or ".join(close)}?' if close else f'fields there: {", ".join(sorted(names))}.'
        return f'{arg}: the config has no field {".".join(parts[:depth + 1])}; {hint}'
      node = node[part]
  return None
