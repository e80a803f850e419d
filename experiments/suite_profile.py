"""Where the test suite's time goes: a pytest plugin that records each test's wall time, the CPU time of its
own process and of the subprocesses it waited for, and JAX's compile-time events (tracing, lowering, XLA
compilation, persistent-cache reads) that ran in the test's process; and a report of the records.

  rm -rf /tmp/aelab-suite-profile
  PYTHONPATH=experiments python -m pytest -q -p suite_profile   # the README's test command, recorded
  python experiments/suite_profile.py [/tmp/aelab-suite-profile]   # the report

Each pytest-xdist worker writes one JSON file into ``AELAB_SUITE_PROFILE`` (default
``/tmp/aelab-suite-profile``). JAX's events are wall seconds of the thread that ran them (compilations on
aelab's compile pool overlap the lowering of the next program), so they say what each part costs, not what
adds up to the wall time. Subprocesses are counted when the test waited for them (``RUSAGE_CHILDREN``); their
own compilations are in their CPU time, not in the events.
"""
import collections
import json
import os
import pathlib
import resource
import sys
import time

import pytest

DIRECTORY = os.environ.get('AELAB_SUITE_PROFILE', '/tmp/aelab-suite-profile')
EVENTS = {'/jax/core/compile/backend_compile_duration': 'compile_s',
          '/jax/core/compile/jaxpr_to_mlir_module_duration': 'lower_s',
          '/jax/core/compile/jaxpr_trace_duration': 'trace_s',
          '/jax/compilation_cache/cache_retrieval_time_sec': 'cache_read_s'}
_current = collections.Counter()
_tests: list[dict] = []
_started = time.time()


def _cpu(who: int) -> float:
  usage = resource.getrusage(who)
  return usage.ru_utime + usage.ru_stime


def _listen(event: str, duration: float, **_) -> None:
  if event in EVENTS:
    _current[EVENTS[event]] += duration
    _current[EVENTS[event][:-2] + '_n'] += 1  # compile_n, ...: how many


def pytest_configure(config) -> None:
  from jax import monitoring  # noqa: PLC0415 (the report needs no JAX; importing it starts no backend)
  monitoring.register_event_duration_secs_listener(_listen)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):  # noqa: ARG001 (pytest's hook signature)
  """Records ``item``'s setup, call and teardown together."""
  _current.clear()
  wall, own, children = time.time(), _cpu(resource.RUSAGE_SELF), _cpu(resource.RUSAGE_CHILDREN)
  yield
  _tests.append({'test': item.nodeid, 'wall_s': time.time() - wall, 'cpu_s': _cpu(resource.RUSAGE_SELF) - own,
                 'children_cpu_s': _cpu(resource.RUSAGE_CHILDREN) - children, **_current})


def pytest_sessionfinish(session) -> None:
  if not _tests:
    return  # the xdist controller runs no tests
  os.makedirs(DIRECTORY, exist_ok=True)
  worker = getattr(session.config, 'workerinput', {}).get('workerid', 'main')
  with open(os.path.join(DIRECTORY, f'{worker}-{os.getpid()}.json'), 'w') as f:
    json.dump({'worker': worker, 'process_wall_s': time.time() - _started,
               'process_cpu_s': _cpu(resource.RUSAGE_SELF), 'tests': _tests}, f)


def report(directory: str, top: int = 15) -> None:
  """Prints the totals, the test files and the tests that took the most CPU."""
  runs = [json.loads(path.read_text()) for path in sorted(pathlib.Path(directory).glob('*.json'))]
  if not runs:
    sys.exit(f'error: no records in {directory}: run the suite with -p suite_profile first')
  tests = [t for r in runs for t in r['tests']]
  keys = ('wall_s', 'cpu_s', 'children_cpu_s', 'compile_s', 'lower_s', 'trace_s', 'cache_read_s')
  total = {k: sum(t.get(k, 0.0) for t in tests) for k in keys}
  programs = sum(t.get('compile_n', 0) for t in tests)
  print(f'{len(tests)} tests on {len(runs)} workers; worker processes {sum(r["process_cpu_s"] for r in runs):.0f} s '
        f'of CPU in {max(r["process_wall_s"] for r in runs):.0f} s')
  print('totals over the tests (s): ' + ', '.join(f'{k[:-2]} {v:.1f}' for k, v in total.items()) +
        f'; {programs} programs compiled, {sum(t.get("cache_read_n", 0) for t in tests)} read from the cache')
  files: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
  for t in tests:
    files[t['test'].split('::')[0]].update({k: t.get(k, 0.0) for k in keys})
  columns = f'{"wall":>7} {"cpu":>7} {"subproc":>7} {"compile":>7} {"lower":>7} {"trace":>7}'
  print(f'\nfiles by CPU (own + subprocesses), seconds\n{columns}')
  for name, c in sorted(files.items(), key=lambda kv: -(kv[1]['cpu_s'] + kv[1]['children_cpu_s']))[:top]:
    print(' '.join(f'{c[k]:7.1f}' for k in keys[:6]), name)
  print(f'\ntests by CPU (own + subprocesses), seconds\n{columns}')
  for t in sorted(tests, key=lambda t: -(t['cpu_s'] + t['children_cpu_s']))[:top]:
    print(' '.join(f'{t.get(k, 0.0):7.1f}' for k in keys[:6]), t['test'])


if __name__ == '__main__':
  report(sys.argv[1] if len(sys.argv) > 1 else DIRECTORY)
