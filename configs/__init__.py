"""Experiment configs: `get_config(arg)` -> ConfigDict, one file each."""
