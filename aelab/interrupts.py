"""SIGINT and SIGTERM, at any moment of a run, end in one line and a state that the rerun resumes from.

``aelab.main`` calls :func:`install` first, before it imports JAX. A signal during the start-up (the
imports) is raised as :class:`Stopped` when it ends (:func:`started`: an exception inside the import of a C
extension can crash the interpreter); after that, where the main thread is (loading data, compiling, the
end-of-training metrics). Stopped unwinds through the ``finally`` clauses (the workdir lock is released,
pending checkpoint writes finish) and ends in the entry point's one line and exit status ``128 + signal``.
Inside an epoch loop (:func:`deferred`) the first signal is only recorded: the loop checkpoints the epoch it
is in and stops (``aelab.train.loop.Interrupted``); a second signal there stops at once (the last
checkpoint written is kept); a third while the process is already stopping ends it without cleanup.

:func:`phase` names what the process is doing, for the message. This module imports only the standard
library, so that installing it costs nothing before the heavy imports.
"""
import contextlib
import os
import signal
import sys
import threading
from typing import Iterator

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Stopped(BaseException):
  """A SIGINT / SIGTERM stopped the process at once (outside an epoch, or a second signal). A
  BaseException, like KeyboardInterrupt, so that ``except Exception`` clauses let it through."""

  def __init__(self, signum: int, during: str):
    self.signum, self.during = signum, during
    super().__init__(f'Stopped by {signal.Signals(signum).name} during {during}; nothing after the last '
                     'checkpoint was kept: rerun the same command to resume.')


class _State:
  installed = False
  received: list[int] = []
  deferring = 0  # depth of deferred() regions
  raised = False  # a Stopped was raised: the process is unwinding
  immediate = True  # False during start-up: a signal is raised by started() (not inside an import)
  during = 'start-up'


_state = _State()


def install() -> None:
  """Handles SIGINT and SIGTERM for the rest of the process (main thread only): see the module docstring.
  Also makes an uncaught :class:`Stopped` (a signal during the imports) print its one line."""
  if threading.current_thread() is not threading.main_thread():
    return
  for s in SIGNALS:
    signal.signal(s, _handler)
  _state.installed, _state.received, _state.raised, _state.immediate = True, [], False, False
  previous_hook, previous_unraisable = sys.excepthook, sys.unraisablehook

  def excepthook(kind, value, traceback):
    if isinstance(value, Stopped):
      exit_stopped(value)
    previous_hook(kind, value, traceback)

  def unraisablehook(unraisable):  # a Stopped raised inside a gc callback: check() raises it again
    if not isinstance(unraisable.exc_value, Stopped):
      previous_unraisable(unraisable)

  sys.excepthook, sys.unraisablehook = excepthook, unraisablehook


def exit_stopped(stopped: Stopped, line: str | None = None) -> None:
  """Prints ``stopped``'s one line (or ``line``, a command's own) on stderr and ends the process with status
  ``128 + signal``, without teardown (for an uncaught Stopped, where raising SystemExit is too late; a
  module whose import the signal cut short can crash the teardown)."""
  print(line or stopped, file=sys.stderr, flush=True)
  sys.stdout.flush()
  os._exit(128 + stopped.signum)


def _handler(signum: int, frame) -> None:
  _state.received.append(signum)
  if _state.raised:
    if len(_state.received) >= 3:  # a third signal while stopping: end now, as the signal would by default
      signal.signal(signum, signal.SIG_DFL)
      os.kill(os.getpid(), signum)
    return
  if _state.deferring and len(_state.received) == 1:
    return  # the epoch loop checkpoints and stops after its epoch
  if not _state.immediate:
    return  # start-up: raised by started(), not inside the import of a C extension (which can crash)
  _state.raised = True
  raise _stopped()


def started() -> None:
  """The start-up (imports, flags) is over: a signal that came during it raises :class:`Stopped` now, and
  later ones where they arrive."""
  _state.immediate = True
  check()


def _stopped() -> Stopped:
  during = _state.during if len(_state.received) == 1 else f'{_state.during} (a second signal)'
  return Stopped(_state.received[0], during)


def check() -> None:
  """Raises :class:`Stopped` again if a signal's Stopped was raised where Python cannot let it propagate (a
  gc or weakref callback, a ``__del__``: it is printed as ignored there, and the process went on). Called
  where a new phase of the run starts; only where :func:`install` was called (aelab used as a library
  raises Stopped only for a second signal in an epoch)."""
  if _state.installed and _state.received and not _state.deferring:
    _state.raised = True
    raise _stopped()


def received() -> list[int]:
  """The signals received so far (numbers, in order)."""
  return _state.received


@contextlib.contextmanager
def phase(during: str) -> Iterator[None]:
  """Names what the process does meanwhile (``'compiling'``, ``'the end-of-training metrics'``), for the
  message of a signal that arrives then."""
  check()
  before, _state.during = _state.during, during
  try:
    yield
  finally:
    _state.during = before


@contextlib.contextmanager
def deferred(during: str = 'an epoch') -> Iterator[list[int]]:
  """An epoch loop: yields the list of signals received, where the first signal is recorded and left to the
  loop (which checkpoints and stops); a second raises :class:`Stopped`. Where :func:`install` was not
  called (aelab used as a library) the handlers are installed here and restored after (main thread only;
  elsewhere signals act as usual)."""
  own = not _state.installed and threading.current_thread() is threading.main_thread()
  previous = {s: signal.getsignal(s) for s in SIGNALS} if own else {}
  for s in previous:
    signal.signal(s, _handler)
  if own:
    _state.received, _state.raised = [], False
  check()
  _state.deferring += 1
  try:
    with phase(during):
      yield _state.received
  finally:
    _state.deferring -= 1
    for s, h in previous.items():
      signal.signal(s, h)
    if own:  # aelab as a library: the next loop starts afresh
      _state.received, _state.raised = [], False
