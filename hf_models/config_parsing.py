"""YAML config + command-line overrides -> dataclasses (the recipes' argument handling).

`python recipes/zeshel_som.py --config recipes/configs/zeshel_som.yaml --learning_rate 2e-5` reads the YAML,
uses its values as defaults, and lets every command-line flag override them. Unknown YAML keys are an error
that names the key and the file.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import yaml
from transformers import HfArgumentParser


def load_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"config file {path} does not exist")
    with path.open() as handle:
        data = yaml.safe_load(handle) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: the top level must be a mapping of argument names to values")
    return data


def parse_config(
    dataclass_types: Sequence[type], argv: Sequence[str] | None = None, default_config: str | None = None
):
    """Parse `--config FILE` (YAML) then the remaining flags, which override the YAML values."""
    argv = list(sys.argv[1:] if argv is None else argv)
    config_path = default_config
    if "--config" in argv:
        position = argv.index("--config")
        if position + 1 >= len(argv):
            raise ValueError("--config needs a path")
        config_path = argv[position + 1]
        del argv[position : position + 2]
    else:
        for item in list(argv):
            if item.startswith("--config="):
                config_path = item.split("=", 1)[1]
                argv.remove(item)
    parser = HfArgumentParser(list(dataclass_types))
    if config_path:
        values = load_yaml(config_path)
        known = {action.dest for action in parser._actions}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"{config_path}: unknown key(s) {unknown}")
        parser.set_defaults(**values)
        _relax_required(parser, values)
    return parser.parse_args_into_dataclasses(args=argv)


def _relax_required(parser, values: dict) -> None:
    """Arguments given in the YAML are no longer required on the command line."""
    for action in parser._actions:
        if action.dest in values:
            action.required = False
