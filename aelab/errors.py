"""The exceptions of bad input, shared by every layer (config, data sources, model families)."""


class ConfigError(ValueError):
  """A config value is unknown or out of range; the message names the field and the valid choices."""


class DataError(ValueError):
  """The data or the data config is invalid; the message says what was wrong and what to do."""


def check(ok: bool, message: str) -> None:
  """Raises ConfigError(message) unless ``ok``: the one-line check of a config field's value."""
  if not ok:
    raise ConfigError(message)


def check_choice(value, choices, field: str) -> None:
  """Raises ConfigError naming ``field`` and the valid ``choices`` when ``value`` is not one of them."""
  if value not in choices:
    raise ConfigError(f'{field}={value!r} is not valid; choose one of {tuple(choices)}.')
