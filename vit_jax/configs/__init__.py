"""Model presets (`configs.models`) and the base every experiment config
starts from (`configs.common`)."""
