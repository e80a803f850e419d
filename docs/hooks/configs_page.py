"""mkdocs hook: the configs page's field tables, rendered from ``aelab.config.schema()`` at build time.

docs/configs.md holds the prose and the marker ``<!-- schema -->``; :func:`on_page_markdown` replaces the
marker with :func:`render` of the schema, so the page lists every field with its default and meaning and
cannot go stale. The figures of ``experiments/figures/`` are added to the site as ``figures/*.png``
(:func:`on_files`), so the results pages show the same files the repository holds.
"""
import pathlib

MARKER = '<!-- schema -->'
ROOT = pathlib.Path(__file__).resolve().parents[2]
FIGURES = ROOT / 'experiments' / 'figures'


def _cell(text: str) -> str:
  """``text`` safe inside a markdown table cell: pipes escaped, newlines as spaces."""
  return str(text).replace('|', '\\|').replace('\n', ' ')


def _default(value) -> str:
  """A field's default as the code a user would write: ``None`` for an unset placeholder."""
  return f'`{_cell(repr(value))}`'


def render(schema: dict[str, dict[str, tuple]]) -> str:
  """Markdown for ``schema`` (``{section: {field: (default, meaning)}}``, as ``aelab.config.schema()``
  returns it): one heading and one table per section, each field by its full dotted name
  (``data.superposition.dim``; top-level fields, section ``''``, by their own name), sections in the
  schema's order, fields sorted."""
  parts = []
  for section, fields in schema.items():
    parts.append(f'### `{section}`' if section else '### Top level')
    parts.append('')
    parts.append('| field | default | meaning |')
    parts.append('| --- | --- | --- |')
    for field in sorted(fields):
      default, meaning = fields[field]
      name = f'{section}.{field}' if section else field
      parts.append(f'| `{name}` | {_default(default)} | {_cell(meaning)} |')
    parts.append('')
  return '\n'.join(parts)


def on_page_markdown(markdown: str, page, config, files) -> str:
  """mkdocs event: the configs page gets the schema's tables in place of its marker."""
  if page.file.src_uri != 'configs.md':
    return markdown
  from aelab import config as aelab_config
  return markdown.replace(MARKER, render(aelab_config.schema()))


def on_files(files, config):
  """mkdocs event: ``experiments/figures/*.png`` join the site as ``figures/<name>.png``."""
  from mkdocs.structure.files import File
  for path in sorted(FIGURES.glob('*.png')):
    files.append(File.generated(config, f'figures/{path.name}', abs_src_path=str(path)))
  return files
