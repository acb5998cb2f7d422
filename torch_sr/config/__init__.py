"""Training configuration: JSON files validated into typed, frozen dataclasses, and their JSON Schema.

`load_config(path)` reads and checks a file, `validate_config(data)` checks plain data (e.g. the
dict a checkpoint stores), `config_to_dict(cfg)` turns a config back into that data.
"""
from torch_sr.config.schema import TrainConfig
from torch_sr.config.validate import config_to_dict, load_config, validate_config

__all__ = ["TrainConfig", "config_to_dict", "load_config", "validate_config"]
