"""The exceptions of bad input, shared by every layer (config, data sources, model families)."""


class ConfigError(ValueError):
  """A config value is unknown or out of range; the message names the field and the valid choices."""


class DataError(ValueError):
  """The data or the data config is invalid; the message says what was wrong and what to do."""
