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
from aelab.train.workdir import Workdir
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


def _evaluated_again(workdir, tmp_path, num_samples=None) -> dict:
  """summary.json of ``python -m aelab.evaluate`` on a copy of ``workdir`` without its summary.json."""
  copy = tmp_path / 'evaluated'
  shutil.copytree(workdir, copy)
  os.remove(copy / 'summary.json')
  return evaluate.evaluate_workdir(str(copy), num_samples)


def _assert_same_test_metrics(trained: dict, evaluated: dict) -> None:
  """The same ``test/*`` keys with the same values (the checkpoint holds the last epoch's parameters)."""
  test_keys = {k for k in trained if k.startswith('test/')}
  assert test_keys == {k for k in evaluated if k.startswith('test/')}, test_keys ^ set(evaluated)
  for key in sorted(test_keys):
    assert evaluated[key] == pytest.approx(trained[key], rel=1e-5, abs=1e-6), key


def test_evaluate_writes_the_test_keys_training_wrote_for_a_vae(vae_workdir, tmp_path):
  workdir, summary = vae_workdir
  assert {'test/nll', 'test/nll_k', 'test/active_units', 'test/neg_elbo'} <= set(summary)
  _assert_same_test_metrics(summary, _evaluated_again(workdir, tmp_path))  # k = eval.nll_samples, as trained


def _beta_vae_shapes2d():
  config = small(load_config('beta_vae', 'shapes2d'), epochs=1)
  config.data.shapes2d.update(counts=(3, 2, 4, 4, 4), size=16)
  config.model.hidden = (32,)
  config.eval.update(disent_points=200, score_points=(20, 10), dci_model='forest')
  return config


def _sae_superposition():
  config = small(load_config('sae_topk', 'superposition'), epochs=1)
  config.data.superposition.update(num_features=24, dim=12, probability=1 / 12, num_train=4096, num_test=512, seed=3)
  config.model.latent_dim = 24
  config.sae.update(k=2, aux_k=8, dead_steps=50)
  config.train.batch_size = 128
  return config


def _vqvae_digits():
  config = small(load_config('vqvae'), epochs=1)
  config.model.update(conv_channels=(8, 8), hidden=(32,), codebook_size=16)
  return config


EVALUATED_RUNS = {  # config -> the end-of-training keys it must write
    'beta_vae:shapes2d': (_beta_vae_shapes2d, ('test/mig', 'test/sap', 'test/dci_disentanglement',
                                               'test/dci_completeness', 'test/dci_informativeness',
                                               'test/modularity', 'test/beta_vae_score', 'test/factor_vae_score',
                                               'test/irs', 'test/gaussian_total_correlation',
                                               'test/mutual_info_score', 'test/nll', 'test/active_units')),
    'sae_topk:superposition': (_sae_superposition, ('test/dead_fraction', 'test/explained_variance', 'test/nmse',
                                                    'test/mmcs', 'test/active_units')),
    'vqvae': (_vqvae_digits, ('test/codebook_perplexity', 'test/codebook_usage', 'test/active_units')),
}


@pytest.mark.parametrize('name', EVALUATED_RUNS)
def test_evaluate_writes_the_test_keys_training_wrote(name, tmp_path):
  make_config, expected = EVALUATED_RUNS[name]
  workdir = tmp_path / 'run'
  trained = engine.train_and_evaluate(make_config(), str(workdir), log=lambda line: None)
  assert set(expected) <= set(trained), set(expected) - set(trained)
  _assert_same_test_metrics(trained, _evaluated_again(workdir, tmp_path))


def test_without_final_metrics_both_write_only_the_test_split_metrics(tmp_path):
  config = _vqvae_digits()
  config.eval.final_metrics = False
  trained = engine.train_and_evaluate(config, str(tmp_path / 'run'), log=lambda line: None)
  assert 'test/codebook_perplexity' in trained and 'test/active_units' not in trained
  _assert_same_test_metrics(trained, _evaluated_again(tmp_path / 'run', tmp_path))
  evaluate.main([f'--workdir={tmp_path / "run"}', '--final_metrics'])  # asked for: added, the rest kept
  updated = json.load(open(tmp_path / 'run' / 'summary.json'))
  assert updated['test/active_units'] >= 1 and updated['train/loss'] == trained['train/loss']


def test_errors_name_the_problem(vae_workdir, tmp_path, capsys):
  with pytest.raises(SystemExit) as exit_info:
    evaluate.main([f'--workdir={vae_workdir[0]}', '--k=0'])
  assert str(exit_info.value.code).startswith('error: --k=0: the importance-sampled NLL needs k >= 1')  # not usage
  assert '\n' not in str(exit_info.value.code) and 'usage:' not in capsys.readouterr().err
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


# ---- issue 20, finding 3: evaluate respects the run ----

def test_evaluate_refuses_a_workdir_in_use_naming_the_process(vae_workdir, tmp_path):
  copy = tmp_path / 'copy'
  shutil.copytree(vae_workdir[0], copy)
  before = (copy / 'summary.json').read_text()
  with Workdir(str(copy), load_config('vae')).locked():  # as training holds it
    with pytest.raises(SystemExit, match=rf'^error: {copy} is in use by process {os.getpid()} '):
      evaluate.main([f'--workdir={copy}', '--k=10'])
  assert (copy / 'summary.json').read_text() == before  # before: replaced while training ran


def test_evaluate_never_replaces_a_newer_summary_and_keeps_train_keys_and_timings(vae_workdir, tmp_path):
  copy = tmp_path / 'copy'
  shutil.copytree(vae_workdir[0], copy)
  newer = {**vae_workdir[1], 'epochs': 2}  # a summary of a later epoch than the only checkpoint (epoch 1)
  (copy / 'summary.json').write_text(json.dumps(newer))
  with pytest.raises(SystemExit, match=r'^error: .*summary.json is of epoch 2, but its newest intact checkpoint is '
                     r'of epoch 1: evaluating it would replace newer results'):
    evaluate.main([f'--workdir={copy}', '--k=10'])
  assert json.loads((copy / 'summary.json').read_text()) == newer
  (copy / 'summary.json').write_text(json.dumps(vae_workdir[1]))
  updated = evaluate.evaluate_workdir(str(copy), 10)
  kept = {k: v for k, v in vae_workdir[1].items() if not k.startswith('test/')}
  assert {k: updated[k] for k in kept} == kept and updated['test/nll_k'] == 10
  assert any(k.startswith('time_') for k in kept) and 'train/loss' in kept and 'wall_time_s' in kept
