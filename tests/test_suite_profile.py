"""experiments/suite_profile.py's report adds up the workers' records and ranks files and tests by their CPU
(their own process's and their subprocesses')."""
import importlib.util
import json
import os

import pytest

from conftest import ROOT


@pytest.fixture(scope='module')
def profile():
  spec = importlib.util.spec_from_file_location('suite_profile', os.path.join(ROOT, 'experiments', 'suite_profile.py'))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _test(name, cpu, children=0.0, compile_s=0.0, compile_n=0):
  return {'test': name, 'wall_s': cpu + children, 'cpu_s': cpu, 'children_cpu_s': children, 'compile_s': compile_s,
          'compile_n': compile_n, 'lower_s': 0.2, 'trace_s': 0.5}


def test_report_sums_the_workers_and_ranks_by_cpu_with_subprocesses(profile, tmp_path, capsys):
  workers = [[_test('tests/test_a.py::one', 2.0, compile_s=1.5, compile_n=3), _test('tests/test_b.py::two', 0.5)],
             [_test('tests/test_b.py::three', 0.3, children=4.0, compile_n=2)]]
  for i, tests in enumerate(workers):
    (tmp_path / f'gw{i}-1.json').write_text(json.dumps({'worker': f'gw{i}', 'process_wall_s': 10.0 + i,
                                                         'process_cpu_s': 8.0, 'tests': tests}))
  profile.report(str(tmp_path))
  out = capsys.readouterr().out
  assert out.startswith('3 tests on 2 workers; worker processes 16 s of CPU in 11 s'), out
  assert 'wall 6.8, cpu 2.8, children_cpu 4.0, compile 1.5, lower 0.6, trace 1.5' in out, out
  assert '5 programs compiled' in out
  files = out.split('files by CPU')[1].split('tests by CPU')[0]
  assert files.index('tests/test_b.py') < files.index('tests/test_a.py')  # 4.8 s with its subprocess against 2 s
  tests = out.split('tests by CPU')[1].splitlines()[2:]
  assert [line.split()[-1] for line in tests] == ['tests/test_b.py::three', 'tests/test_a.py::one',
                                                  'tests/test_b.py::two']


def test_report_of_an_empty_folder_says_how_to_record(profile, tmp_path):
  with pytest.raises(SystemExit, match='run the suite with -p suite_profile first'):
    profile.report(str(tmp_path))
