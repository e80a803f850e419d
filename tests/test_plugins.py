"""Model families as plugins: a family module outside aelab, named by its dotted path, trains, resumes,
sweeps, loads and is evaluated like one of aelab's; the contract's errors; config.py knows no family."""
import ast
import json
import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest

import aelab
from aelab import cli, config as config_lib, evaluate, models
from aelab.train import engine, sweep
from conftest import CACHE_DIR, ROOT, forget_modules

FAST = {'train.figures_every': 0, 'data.max_train_examples': 256, 'eval.nll_samples': 10,
        'train.compilation_cache_dir': CACHE_DIR}


def _main(tmp_path, *args):
  """``python -m aelab.main --config=configs/ae.py ...`` (the :data:`FAST` fields) with ``tmp_path`` on
  PYTHONPATH."""
  env = {**os.environ, 'PYTHONPATH': f'{tmp_path}{os.pathsep}{ROOT}'}
  fast = [f'--config.{k}={v}' for k, v in FAST.items()]
  result = subprocess.run([sys.executable, '-m', 'aelab.main', '--config=configs/ae.py', *fast, *args], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-2000:]
  return result


def _config(name: str, epochs: int):
  """configs/ae.py with the :data:`FAST` fields, ``model.name = name`` and ``epochs``, as _main sets them."""
  config = config_lib.load(str(ROOT / 'configs' / 'ae.py'))
  for field, value in FAST.items():
    section, key = field.split('.')
    config[section][key] = value
  config.train.num_epochs = epochs
  return config_lib.with_family(config, name)


def _summary(workdir) -> dict:
  return json.loads((pathlib.Path(workdir) / 'summary.json').read_text())


def _test_metrics(summary: dict) -> dict:
  return {k: v for k, v in summary.items() if k.startswith('test/')}


@pytest.fixture(scope='module')
def my_lab(tmp_path_factory):
  """``aelab/models/ae.py`` copied unchanged to ``<tmp>/my_lab/ae_copy.py``; the folder is on sys.path."""
  root = tmp_path_factory.mktemp('plugins')
  (root / 'my_lab').mkdir()
  (root / 'my_lab' / '__init__.py').write_text('')
  shutil.copy(ROOT / 'aelab' / 'models' / 'ae.py', root / 'my_lab' / 'ae_copy.py')
  forget_modules('my_lab')
  sys.path.insert(0, str(root))
  yield root
  sys.path.remove(str(root))
  forget_modules('my_lab')


def test_a_family_outside_aelab_trains_resumes_sweeps_loads_and_evaluates(my_lab, tmp_path):
  quiet = dict(log=lambda line: None)
  reference, copy = tmp_path / 'ae', tmp_path / 'copy'
  expected = _test_metrics(engine.train_and_evaluate(_config('ae', 3), str(reference), **quiet))
  _main(my_lab, f'--workdir={copy}', '--config.model.name=my_lab.ae_copy', '--config.train.num_epochs=2')
  assert _summary(copy)['epochs'] == 2
  assert json.loads((copy / 'config.json').read_text())['model']['name'] == 'my_lab.ae_copy'
  resumed = engine.train_and_evaluate(_config('my_lab.ae_copy', 3), str(copy), **quiet)  # 2 more epochs: 3
  assert resumed['epochs'] == 3 and expected
  assert _test_metrics(resumed) == pytest.approx(expected, rel=1e-5)  # the numbers of model.name=ae

  config = _config('my_lab.ae_copy', 3)
  config.penalty.name = 'l1'
  runs = sweep.run_sweep(config, sweep.axis('penalty.weight', [0.0, 0.5]), str(tmp_path / 'sweep'), **quiet)
  assert sorted(runs) == ['penalty.weight=0', 'penalty.weight=0.5']  # one group: the weight is traced
  assert runs['penalty.weight=0']['test/recon'] == pytest.approx(expected['test/recon'], rel=1e-4)
  assert runs['penalty.weight=0.5']['test/code_mean_abs'] < runs['penalty.weight=0']['test/code_mean_abs']

  trained = aelab.load(str(copy))
  assert trained.config.model.name == 'my_lab.ae_copy' and trained.epoch == 3 and not trained.has_prior
  assert trained.encode(np.zeros((2, 64), np.float32)).shape == (2, config.model.latent_dim)
  summary = evaluate.evaluate_workdir(str(copy))
  assert summary['test/recon'] == pytest.approx(expected['test/recon'], rel=1e-5)
  assert summary['test/active_units'] == expected['test/active_units']


def test_model_name_changed_on_the_command_line_gets_the_family_sections(tmp_path):
  _main(tmp_path, f'--workdir={tmp_path / "vae"}', '--config.model.name=vae', '--config.model.likelihood=bernoulli',
        '--config.vae.kl_weight=2', '--config.vae.kl_warmup_steps=10', '--config.train.num_epochs=1',
        '--config.model.hidden=(8,)', '--config.eval.final_metrics=False')
  written = json.loads((tmp_path / 'vae' / 'config.json').read_text())
  defaults = {k: v for k, (v, _) in models.module('vae').CONFIG.items()}
  assert written['vae'] == {**defaults, 'kl_weight': 2.0, 'kl_warmup_steps': 10}  # the section's overrides too
  assert 'test/neg_elbo' in _summary(tmp_path / 'vae')


def test_a_name_that_does_not_import_or_lacks_the_contract_is_one_config_error(my_lab):
  (my_lab / 'my_lab' / 'not_a_family.py').write_text('HYPERPARAMS = {}\n')
  with pytest.raises(config_lib.ConfigError, match='could not be imported') as error:
    models.module('my_lab.missing')
  assert '\n' not in str(error.value)
  with pytest.raises(config_lib.ConfigError, match='lacks SECTION, CONFIG, validate, family'):
    models.module('my_lab.not_a_family')
  (my_lab / 'my_lab' / 'broken.py').write_text('import numpy\nnumpy.nothing\n')
  with pytest.raises(config_lib.ConfigError, match="AttributeError: .*nothing.*: fix the module"):
    models.module('my_lab.broken')
  config = config_lib.base()
  config.model.name = 'my_lab.missing'
  with pytest.raises(config_lib.ConfigError, match='PYTHONPATH'):
    config_lib.validate(config)


def test_every_family_follows_the_contract():
  for name in models.available():
    module = models.module(name)
    assert callable(module.validate) and callable(module.family) and isinstance(module.HYPERPARAMS, dict)
    assert (module.SECTION is None) == (module.CONFIG == {}), name
    for field, (_, meaning) in module.CONFIG.items():
      assert isinstance(meaning, str) and len(meaning) > 10, (name, field)
    config = config_lib.base(name)
    for field in models.hyperparam_fields(name).values():  # every traced field is a field of the config
      models.field(config, field)
  assert models.builds_on('factor_vae') == ['vae', 'factor_vae'] and models.builds_on('aae') == ['ae', 'aae']
  assert list(models.sections('beta_tcvae')) == ['vae', 'beta_tcvae']


def test_config_imports_and_holds_no_family():
  tree = ast.parse((ROOT / 'aelab' / 'config.py').read_text())
  imported = {f'{n.module}.{a.name}' for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names}
  imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
  assert not {f'aelab.models.{name}' for name in models.available()} & imported
  sections = {k for k, v in config_lib.BASE.items() if isinstance(v, dict)} | {'data'}  # data: the sources'
  assert sections == {'data', 'model', 'corruption', 'penalty', 'optimizer', 'train', 'eval', 'log'}
  assert set(config_lib.base().keys()) == sections | {'seed'}  # ae has no section of its own
  assert set(config_lib.base('factor_vae').keys()) == sections | {'seed', 'vae', 'factor_vae'}


def _flatten(tree: dict, prefix: str = '') -> dict:
  """``{(section, field): value}`` of a nested config dict; sections dotted, top-level fields in ``''``."""
  flat = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      flat.update(_flatten(value, f'{prefix}.{key}' if prefix else key))
    else:
      flat[(prefix, key)] = value
  return flat


def test_schema_gives_every_field_of_the_base_and_of_every_family_a_default_and_a_meaning():
  schema = config_lib.schema()
  assert {'', 'data', 'data.superposition', 'model', 'vae', 'sae', 'vqvae', 'aae', 'beta_tcvae', 'factor_vae',
          'dip_vae'} <= set(schema)
  assert all(isinstance(m, str) and m for fields in schema.values() for _, m in fields.values())
  for name in models.available():
    for (section, field), value in _flatten(config_lib.base(name).to_dict()).items():
      assert field in schema.get(section, {}), (name, section, field)
      assert (section, field) == ('model', 'name') or schema[section][field][0] == value, (name, section, field)


def test_with_family_adds_sections_and_keeps_values():
  config = config_lib.base()
  config.model.name = 'vae'
  with pytest.raises(config_lib.ConfigError, match=r"needs the config section vae.*base\('vae'\)"):
    config_lib.validate(config)
  config_lib.with_family(config)
  assert config.vae.kl_weight == 1.0 and config.vae.num_samples == 1
  config.vae.kl_weight = 4.0
  config_lib.with_family(config, 'beta_tcvae')
  assert config.vae.kl_weight == 4.0 and config.beta_tcvae.tc_weight == 6.0
  restored = config_lib.from_dict(json.loads(json.dumps(config.to_dict())))
  assert restored.model.name == 'beta_tcvae' and restored.vae.kl_weight == 4.0


def test_overrides_of_a_family_section_are_typed_like_their_defaults():
  config = config_lib.base('vae')
  argv, overrides = cli.split_family_overrides(['m', '--config.model.name=vae', '--config.vae.kl_weight=4',
                                                '--config.seed=1'])
  assert argv == ['m', '--config.model.name=vae', '--config.seed=1'] and overrides == {'vae.kl_weight': '4'}
  assert cli.apply_overrides(config, overrides).vae.kl_weight == 4.0
  with pytest.raises(config_lib.ConfigError, match='vae.num_samples=x must be of type int'):
    cli.apply_overrides(config, {'vae.num_samples': 'x'})
  with pytest.raises(config_lib.ConfigError, match='no field vae.kl_wieght'):
    cli.apply_overrides(config, {'vae.kl_wieght': '1'})


def test_a_moved_field_on_the_command_line_says_where_it_went(monkeypatch):
  monkeypatch.chdir(ROOT)
  argv = ['aelab.main', '--config=configs/vae.py', '--config.model.kl_weight=4']
  assert 'model.kl_weight is now vae.kl_weight' in cli.flag_error(Exception('unknown flag'), argv)
  argv = ['aelab.main', '--config=configs/ae.py', '--config.vae.kl_weight=4']
  assert 'no section vae' in cli.flag_error(Exception('unknown flag'), argv)
