"""The documentation: the configs page lists every field of the config schema, the README stays short and
keeps the two commands that .ci/run runs, and every page of mkdocs.yml's nav exists. (``mkdocs build
--strict`` itself runs in .ci/run.)"""
import importlib.util
import pathlib
import re

from aelab import config

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _hook():
  spec = importlib.util.spec_from_file_location('configs_page', ROOT / 'docs' / 'hooks' / 'configs_page.py')
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_configs_page_lists_every_field_of_every_section():
  schema = config.schema()
  page = _hook().render(schema)
  assert len(schema) >= 8 and 'model' in schema and 'data' in schema
  for section, fields in schema.items():
    assert f'## `{section}`' in page or not section
    for field, (default, _) in fields.items():
      name = f'{section}.{field}' if section else field
      row = re.search(rf'^\| `{re.escape(name)}` \| (.*) \|', page, re.MULTILINE)
      assert row, f'{name} missing from the configs page'
      assert repr(default).replace('|', '\\|') in row.group(1)


def test_render_escapes_pipes_and_names_nested_sections():
  page = _hook().render({'': {'seed': (0, 'root key')}, 'data.x': {'kind': ('a|b', 'one | two')}})
  assert '| `seed` | `0` | root key |' in page
  assert "| `data.x.kind` | `'a\\|b'` | one \\| two |" in page
  assert page.count('| field | default | meaning |') == 2


def test_on_page_markdown_fills_only_the_configs_page():
  hook = _hook()

  class Page:
    def __init__(self, uri):
      self.file = type('File', (), {'src_uri': uri})()

  filled = hook.on_page_markdown(f'intro\n{hook.MARKER}\n', Page('configs.md'), None, None)
  assert hook.MARKER not in filled and '`train.num_epochs`' in filled
  assert hook.on_page_markdown(hook.MARKER, Page('index.md'), None, None) == hook.MARKER
  assert hook.MARKER in (ROOT / 'docs' / 'configs.md').read_text()


def test_readme_is_short_and_has_the_ci_commands():
  readme = (ROOT / 'README.md').read_text()
  assert len(readme.splitlines()) <= 200
  ci = (ROOT / '.ci' / 'run').read_text()
  for command in ('pip install -e ".[test]" && python -m aelab.main --config=configs/dae.py --workdir=runs/dae',
                  'python -m pytest -q'):
    assert command in readme and command in ci


def test_every_page_in_the_nav_exists():
  nav = re.findall(r':\s*([\w/.-]+\.md)\s*$', (ROOT / 'mkdocs.yml').read_text(), re.MULTILINE)
  assert len(nav) >= 10
  for page in nav:
    assert (ROOT / 'docs' / page).is_file(), page


def _example_family():
  spec = importlib.util.spec_from_file_location('linear_ae', ROOT / 'docs' / 'examples' / 'my_lab' / 'linear_ae.py')
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_extending_example_family_keeps_the_contract():
  """The family of docs/extending.md: its loss is the reconstruction MSE plus code_l2 times the mean
  squared code, its eval is per example, its reconstruction is decode(encode(x)), and validate refuses a
  negative weight."""
  import jax
  import jax.numpy as jnp
  import ml_collections
  import numpy as np
  import pytest

  module = _example_family()
  cfg = config.base()
  cfg.model.latent_dim = 3
  cfg.linear_ae = ml_collections.ConfigDict({k: v[0] for k, v in module.CONFIG.items()})
  module.validate(cfg)
  fam = module.family(cfg, (8,))
  x_BxD = jnp.asarray(np.random.default_rng(0).normal(size=(5, 8)), jnp.float32)
  params = fam.init(jax.random.key(0), x_BxD[:1])
  hp = {'code_l2': jnp.float32(0.5)}
  loss, metrics = fam.objective(params, x_BxD, jax.random.key(1), hp)
  per_example = fam.eval(params, x_BxD, jax.random.key(1), hp)
  assert per_example['recon_mse'].shape == (5,)
  z_BxZ = fam.encode(params, x_BxD)
  assert z_BxZ.shape == (5, 3)
  np.testing.assert_allclose(loss, metrics['recon_mse'] + 0.5 * jnp.mean(z_BxZ ** 2), rtol=1e-6)
  assert metrics['loss'] == loss
  _, x_hat_BxD = fam.reconstruct(params, x_BxD, jax.random.key(1), hp)
  np.testing.assert_allclose(jnp.mean((x_hat_BxD - x_BxD) ** 2), metrics['recon_mse'], rtol=1e-6)
  assert set(module.HYPERPARAMS) >= {'code_l2', 'penalty_weight'} and module.SECTION == 'linear_ae'
  cfg.linear_ae.code_l2 = -1.0
  with pytest.raises(config.ConfigError, match='linear_ae.code_l2'):
    module.validate(cfg)


def test_readme_links_point_to_files_of_the_repository():
  readme = (ROOT / 'README.md').read_text()
  links = [link.split('#')[0] for link in re.findall(r'\]\(([^)\s]+)\)', readme) if '://' not in link]
  assert len(links) >= 20
  for link in filter(None, links):
    assert (ROOT / link).exists(), link


def test_mkdocs_uses_the_hook_and_the_docs_extra_installs_it():
  mkdocs = (ROOT / 'mkdocs.yml').read_text()
  assert '- docs/hooks/configs_page.py' in mkdocs and 'name: material' in mkdocs and 'mkdocstrings' in mkdocs
  import configparser
  setup = configparser.ConfigParser()
  setup.read(ROOT / 'setup.cfg')
  docs = setup['options.extras_require']['docs'].split()
  assert {'mkdocs>=1.6', 'mkdocs-material>=9.5', 'mkdocstrings[python]>=0.26'} <= set(docs)
  assert 'mkdocs build --strict' in (ROOT / '.ci' / 'run').read_text()
