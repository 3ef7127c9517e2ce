"""The serving core: the data plane, model lifecycle, batching, settings and config files."""
