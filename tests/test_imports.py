"""The package's layering: no import cycles, and each module imports only from the layers below it
(DESIGN.md: losses / corruption / nets -> models -> optimizers -> metrics -> engine -> sweeps -> entry
points). Imports inside functions count too."""
import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / 'aelab'

# Lower layers first; a module may import only from its own layer's listed modules below it and lower layers.
LAYERS = [
    {'aelab.errors', 'aelab.interrupts', 'aelab.nn', 'aelab.nn.losses', 'aelab.nn.corruption', 'aelab.nn.nets',
     'aelab.nn.schedules', 'aelab.nn.sparse_coding', 'aelab.nn.fit', 'aelab.nn.pixelcnn',
     'aelab.data', 'aelab.data.superposition', 'aelab.data.shapes2d', 'aelab.data.stream', 'aelab.data.images',
     'aelab.data.arrays', 'aelab.data.fingerprints', 'aelab.data.sources', 'aelab.data.sources.digits',
     'aelab.data.sources.idx',
     'aelab.data.sources.npz', 'aelab.data.sources.csv', 'aelab.data.sources.images', 'aelab.data.sources.tfds',
     'aelab.data.sources.shapes2d', 'aelab.data.sources.superposition', 'aelab.data.factors',
     'aelab.data.sources.dsprites', 'aelab.data.sources.shapes3d', 'aelab.data.sources.mpi3d',
     'aelab.data.sources.cars3d', 'aelab.data.sources.activations',
     'aelab.eval.plots', 'aelab.train.parallel', 'aelab.eval.disentanglement'},
    {'aelab.models', 'aelab.models.family', 'aelab.models.common', 'aelab.models.ae', 'aelab.models.vae',
     'aelab.models.aae', 'aelab.models.sae', 'aelab.models.beta_tcvae', 'aelab.models.dip_vae',
     'aelab.models.factor_vae', 'aelab.models.vqvae', 'aelab.models.wae', 'aelab.models.rae',
     'aelab.models.info_vae', 'aelab.models.vamp', 'aelab.models.miwae', 'aelab.models.piwae', 'aelab.models.ciwae'},
    {'aelab.config', 'aelab.train.optimizers'},
    {'aelab.train.files'},
    {'aelab.train.history'},
    {'aelab.eval', 'aelab.eval.metrics', 'aelab.eval.evaluators', 'aelab.eval.samples',
     'aelab.eval.classifier', 'aelab.train.workdir', 'aelab.train.checkpoints',
     'aelab.train.writers'},
    {'aelab.train.figures'},
    {'aelab.train', 'aelab.train.program', 'aelab.train.hooks'},
    {'aelab.train.groups', 'aelab.train.final'},
    {'aelab.train.loop'},
    {'aelab.train.engine'},
    {'aelab.train.sweep', 'aelab.train.pretrain', 'aelab.api'},
    {'aelab.samplers'},
    {'aelab.main', 'aelab.evaluate', 'aelab.cli', 'aelab.sample', 'aelab', 'aelab.export'},
]

# Plugin folders: each module in them (a family, a source, a building block) sits in this layer, so a new
# one needs no line here.
PLUGIN_LAYERS = {'aelab.nn.': 0, 'aelab.data.sources.': 0, 'aelab.models.': 1}


def _layer_of(modules) -> dict[str, int]:
  """Each module's layer: listed in LAYERS, or by the plugin folder it is in."""
  layer_of = {m: i for i, layer in enumerate(LAYERS) for m in layer}
  for m in modules:
    for prefix, layer in PLUGIN_LAYERS.items():
      if m.startswith(prefix) and m not in layer_of:
        layer_of[m] = layer
  return layer_of


def _module_name(path: pathlib.Path) -> str:
  parts = path.relative_to(PACKAGE.parent).with_suffix('').parts
  return '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)


def _imports(path: pathlib.Path, modules: set[str]) -> set[str]:
  """The aelab modules that ``path`` imports anywhere in its body (``from aelab import x`` is ``aelab.x``)."""
  found = set()
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.Import):
      found |= {a.name for a in node.names if a.name.startswith('aelab')}
    elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith('aelab'):
      for alias in node.names:
        candidate = f'{node.module}.{alias.name}'
        found.add(candidate if candidate in modules else node.module)
  return found


def _graph() -> dict[str, set[str]]:
  paths = sorted(PACKAGE.rglob('*.py'))
  modules = {_module_name(p) for p in paths}
  return {_module_name(p): _imports(p, modules) - {_module_name(p)} for p in paths}


def test_every_module_has_a_layer():
  modules = set(_graph())
  listed = set(_layer_of(modules))
  assert modules == listed, modules ^ listed


def test_no_import_cycles():
  graph = _graph()
  state: dict[str, str] = {}

  def visit(module: str, path: list[str]) -> None:
    state[module] = 'open'
    for target in sorted(graph.get(module, ())):
      if state.get(target) == 'open':
        pytest.fail(f'import cycle: {" -> ".join(path + [module, target])}')
      if target not in state:
        visit(target, path + [module])
    state[module] = 'done'

  for module in sorted(graph):
    if module not in state:
      visit(module, [])


def test_modules_import_only_from_lower_layers():
  graph = _graph()
  layer_of = _layer_of(graph)
  wrong = [f'{m} (layer {layer_of[m]}) imports {t} (layer {layer_of[t]})'
           for m, targets in graph.items() for t in targets if layer_of[t] > layer_of[m]]
  assert not wrong, wrong


def _private_imports(source: str) -> list[str]:
  """The imports in ``source`` of a ``_``-prefixed module or name of another package (``orbax.checkpoint._src``,
  ``from grain import _src``); aelab's own modules, relative imports, ``__future__`` and dunders are fine."""
  def private(dotted: str) -> bool:
    return any(part.startswith('_') and not part.startswith('__') for part in dotted.split('.'))

  found = []
  for node in ast.walk(ast.parse(source)):
    if isinstance(node, ast.Import):
      found += [a.name for a in node.names if not a.name.startswith('aelab') and private(a.name)]
    elif isinstance(node, ast.ImportFrom) and node.level == 0 and not node.module.startswith(('aelab', '__future__')):
      found += [f'{node.module}.{a.name}' for a in node.names if private(f'{node.module}.{a.name}')]
  return found


def test_the_private_import_check_catches_private_modules():
  source = ('import orbax.checkpoint._src.serialization\nfrom orbax.checkpoint._src import ocdbt_utils\n'
            'from grain import _src\nimport orbax.checkpoint as ocp\nfrom __future__ import annotations\n'
            'from aelab.train import _helpers\nfrom . import _local\nfrom jax import __version__\n')
  assert _private_imports(source) == ['orbax.checkpoint._src.serialization', 'orbax.checkpoint._src.ocdbt_utils',
                                      'grain._src']


def test_no_module_imports_a_private_module_of_a_dependency():
  found = {_module_name(p): _private_imports(p.read_text()) for p in sorted(PACKAGE.rglob('*.py'))}
  assert not {m: f for m, f in found.items() if f}, 'use the public API of these dependencies instead'
