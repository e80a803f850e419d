"""The exception of bad data, shared by the data sources (``aelab.data``, ``aelab.data.images``)."""


class DataError(ValueError):
  """The data or the data config is invalid; the message says what was wrong and what to do."""
