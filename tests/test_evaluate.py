"""aelab.evaluate, the command line ``python -m aelab.evaluate --workdir=... [--k=...]``: it evaluates a
trained run's checkpoint into its summary.json, and fails with a one-line error, not a traceback."""
import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from aelab.train import engine

from aelab import evaluate
from conftest import ROOT, load_config, small



@pytest.fixture(scope='module')
def vae_workdir(tmp_path_factory):
  """A VAE trained for one epoch: (workdir, its summary)."""
  workdir = tmp_path_factory.mktemp('vae')
  summary = engine.train_and_evaluate(small(load_config('vae'), epochs=1), str(workdir))
  return workdir, summary


def test_standalone_evaluate_adds_nll_and_active_units_to_summary(vae_workdir, capsys):
  workdir, summary = vae_workdir
  assert summary['test/nll_k'] == 100 and summary['test/nll'] < summary['test/neg_elbo']
  evaluate.main([f'--workdir={workdir}', '--k=200'])
  updated = json.load(open(workdir / 'summary.json'))
  assert updated['test/nll_k'] == 200 and updated['test/active_units'] == summary['test/active_units']
  assert updated['test/neg_elbo'] == pytest.approx(summary['test/neg_elbo'], rel=1e-6)
  assert abs(updated['test/nll'] - summary['test/nll']) < 1.0
  assert updated['epochs'] == 1 and updated['num_params'] == summary['num_params']  # the rest is kept
  out = capsys.readouterr().out
  assert 'test/nll=' in out and f'{os.path.normpath(workdir)}/summary.json' in out


def test_a_copied_workdir_without_summary_is_evaluated(vae_workdir, tmp_path):
  copy = tmp_path / 'copy'
  shutil.copytree(vae_workdir[0], copy)  # the checkpoint pointer is relative: the copy restores on its own
  os.remove(copy / 'summary.json')
  summary = evaluate.evaluate_workdir(str(copy), 50)
  assert summary['epochs'] == 1 and summary['test/nll_k'] == 50
  assert summary['test/neg_elbo'] == pytest.approx(vae_workdir[1]['test/neg_elbo'], rel=1e-6)
  assert json.load(open(copy / 'summary.json')) == summary


def test_errors_name_the_problem(vae_workdir, tmp_path, capsys):
  with pytest.raises(SystemExit) as exit_info:
    evaluate.main([f'--workdir={vae_workdir[0]}', '--k=0'])
  assert exit_info.value.code == 2 and '--k=0' in capsys.readouterr().err
  with pytest.raises(FileNotFoundError, match='config.json'):
    evaluate.evaluate_workdir(str(tmp_path / 'missing'))
  with pytest.raises(SystemExit, match=r'error: .*config.json not found'):
    evaluate.main([f'--workdir={tmp_path / "missing"}'])
  untrained = tmp_path / 'untrained'
  untrained.mkdir()
  shutil.copy(vae_workdir[0] / 'config.json', untrained / 'config.json')
  with pytest.raises(SystemExit, match='No checkpoint'):
    evaluate.main([f'--workdir={untrained}'])


def test_command_line_fails_without_a_traceback(tmp_path):
  result = subprocess.run([sys.executable, '-m', 'aelab.evaluate', f'--workdir={tmp_path / "missing"}'], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
  assert result.returncode != 0
  assert 'config.json not found' in result.stderr and 'Traceback' not in result.stderr


def _truncate(path) -> None:
  path.write_bytes(path.read_bytes()[:len(path.read_bytes()) // 2])


def _set_latent_dim(workdir, value) -> None:
  config = json.load(open(workdir / 'config.json'))
  config['model']['latent_dim'] = value
  json.dump(config, open(workdir / 'config.json', 'w'))


DAMAGES = {  # what a user may do to a workdir, and what the one error line must say
    'torn config.json': (lambda w: _truncate(w / 'config.json'), r'config.json is damaged or not a config aelab '
                         r'wrote \(.*\); restore it from a copy, or retrain in a new --workdir.'),
    'config.json of wrong types': (lambda w: _set_latent_dim(w, 'sixteen'),
                                   r"config.json is damaged .*model.latent_dim='sixteen' must be an integer"),
    'config.json with a None': (lambda w: _set_latent_dim(w, None), r'model.latent_dim=None must be an integer'),
    'config.json not an object': (lambda w: (w / 'config.json').write_text('[1, 2]'), 'must be a JSON object'),
    'truncated checkpoint data': (
        lambda w: [_truncate(p) for p in w.glob('checkpoints/*/state/ocdbt.process_0/d/*')], 'checkpoint'),
    'truncated _METADATA': (lambda w: [_truncate(p) for p in w.glob('checkpoints/*/state/_METADATA')], 'checkpoint'),
    'deleted checkpoint data': (lambda w: [p.unlink() for p in w.glob('checkpoints/*/state/ocdbt.process_0/d/*')],
                                'checkpoint'),
    'torn checkpoint.json': (lambda w: _truncate(w / 'checkpoint.json'), 'checkpoint'),
}


@pytest.mark.filterwarnings('ignore::pytest.PytestUnraisableExceptionWarning')  # orbax's, under --debug
@pytest.mark.parametrize('damage', DAMAGES)
def test_a_damaged_workdir_is_one_error_line_and_debug_shows_the_traceback(vae_workdir, tmp_path, damage):
  corrupt, message = DAMAGES[damage]
  copy = tmp_path / 'copy'
  shutil.copytree(vae_workdir[0], copy)
  corrupt(copy)
  with pytest.raises(SystemExit) as info:
    evaluate.main([f'--workdir={copy}', '--k=10'])
  line = str(info.value.code)
  assert line.startswith('error: ') and '\n' not in line and re.search(message, line), line
  assert str(copy) in line  # names the file or the workdir
  with pytest.raises(Exception) as raw:  # --debug: the exception itself, with its traceback
    evaluate.main([f'--workdir={copy}', '--k=10', '--debug'])
  assert not isinstance(raw.value, SystemExit)
