"""YAML config + command-line overrides -> dataclasses (the recipes' argument handling).

`python recipes/zeshel_som.py --config recipes/configs/zeshel_som.yaml --learning_rate 2e-5` reads the YAML,
uses its values as defaults, and lets every command-line flag override them. Unknown YAML keys are an error
that names the key and the file; a mistyped flag exits with a one-line error naming the closest valid flag
(flags are never abbreviated: ``--learning_rat`` is an error, not ``--learning_rate``).
"""

from __future__ import annotations

import argparse
import difflib
import sys
from collections.abc import Sequence
from pathlib import Path

import yaml
from transformers import HfArgumentParser

CONFIG_HELP = (
    "YAML file of argument values (keys = the flags below without '--'); flags given on the command line "
    "override it. The recipe scripts default to their configs/<script>.yaml."
)


def load_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"config file {path} does not exist")
    with path.open() as handle:
        data = yaml.safe_load(handle) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: the top level must be a mapping of argument names to values")
    return data


def _suggestion(name: str, choices: Sequence[str]) -> str:
    """`` (did you mean X?)`` for the most similar of ``choices`` (empty when nothing is close)."""
    matches = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {matches[0]}?)" if matches else ""


def build_parser(dataclass_types: Sequence[type], default_config: str | None = None) -> HfArgumentParser:
    """The recipes' parser: the dataclasses' flags plus ``--config`` (documented in ``--help``), no abbreviations."""
    parser = HfArgumentParser(list(dataclass_types), allow_abbrev=False)
    help_text = CONFIG_HELP + (f" Default: {default_config}." if default_config else "")
    parser.add_argument("--config", default=argparse.SUPPRESS, metavar="YAML", help=help_text)
    return parser


def parse_config(
    dataclass_types: Sequence[type], argv: Sequence[str] | None = None, default_config: str | None = None
):
    """Parse `--config FILE` (YAML) then the remaining flags, which override the YAML values.

    HfArgumentParser does the parsing: the YAML values become the parser's defaults (as TRL's ``TrlParser`` does),
    and the strings it does not recognise come back as ``remaining`` and are refused with the closest flag."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(dataclass_types, default_config)
    if "-h" in argv or "--help" in argv:
        parser.parse_args(["--help"])  # prints the help (with --config) and exits, before any YAML is read
    config_parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    config_parser.add_argument("--config", default=default_config)
    config, argv = config_parser.parse_known_args(argv)
    if config.config:
        values = load_yaml(config.config)
        known = {action.dest for action in parser._actions} - {"config", "help"}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(
                f"{config.config}: unknown key(s) {unknown}{_suggestion(unknown[0], sorted(known))}"
            )
        parser.set_defaults(**_typed_yaml_values(parser, values, config.config))
        for action in parser._actions:  # arguments the YAML gives are no longer required on the command line
            action.required = action.required and action.dest not in values
    *parsed, remaining = parser.parse_args_into_dataclasses(args=argv, return_remaining_strings=True)
    if remaining:
        flag = remaining[0].split("=", 1)[0]
        flags = sorted({option for action in parser._actions for option in action.option_strings})
        parser.exit(2, f"{parser.prog}: error: unknown flag {flag}{_suggestion(flag, flags)}\n")
    return tuple(parsed)


def _typed_yaml_values(parser, values: dict, config_path) -> dict:
    """YAML values checked against the flag's type (argparse does not convert defaults): ``num_candidates: 3.7``
    is an error naming the key and the file, not a float that fails deep inside training."""
    actions = {action.dest: action for action in parser._actions}
    typed = dict(values)
    for key, value in values.items():
        action = actions.get(key)
        if action is None or value is None or isinstance(value, str) or action.type not in (int, float):
            continue  # strings are converted (and checked) by argparse like a command-line value
        integral = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or (action.type is int and not integral)
        ):
            kind = "an integer" if action.type is int else "a number"
            raise ValueError(f"{config_path}: key {key!r} must be {kind}, got {value!r}")
        typed[key] = action.type(value)
    return typed
