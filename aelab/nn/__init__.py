"""Building blocks without config: per-example losses, input corruption, encoder and decoder networks."""
