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


def closest(name: str, choices: Sequence[str]) -> str | None:
    """The most similar of ``choices`` to ``name`` (None when nothing is close)."""
    matches = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return matches[0] if matches else None


def _suggestion(name: str, choices: Sequence[str]) -> str:
    match = closest(name, choices)
    return f" (did you mean {match}?)" if match else ""


def build_parser(dataclass_types: Sequence[type], default_config: str | None = None) -> HfArgumentParser:
    """The recipes' parser: the dataclasses' flags plus ``--config`` (documented in ``--help``), no abbreviations."""
    parser = HfArgumentParser(list(dataclass_types), allow_abbrev=False)
    help_text = CONFIG_HELP + (f" Default: {default_config}." if default_config else "")
    parser.add_argument("--config", default=argparse.SUPPRESS, metavar="YAML", help=help_text)
    return parser


def _split_config(argv: list[str], default_config: str | None) -> tuple[str | None, list[str]]:
    config_path, rest, position = default_config, [], 0
    while position < len(argv):
        item = argv[position]
        if item == "--config":
            if position + 1 >= len(argv):
                raise ValueError("--config needs a path")
            config_path = argv[position + 1]
            position += 2
            continue
        if item.startswith("--config="):
            config_path = item.split("=", 1)[1]
        else:
            rest.append(item)
        position += 1
    return config_path, rest


def check_flags(parser: argparse.ArgumentParser, argv: Sequence[str]) -> None:
    """Exit with a one-line error naming the closest valid flag when ``argv`` has an unknown ``--flag``."""
    known = sorted({option for action in parser._actions for option in action.option_strings})
    for item in argv:
        if not item.startswith("--"):
            continue
        flag = item.split("=", 1)[0]
        if flag not in known:
            parser.exit(2, f"{parser.prog}: error: unknown flag {flag}{_suggestion(flag, known)}\n")


def parse_config(
    dataclass_types: Sequence[type], argv: Sequence[str] | None = None, default_config: str | None = None
):
    """Parse `--config FILE` (YAML) then the remaining flags, which override the YAML values."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(dataclass_types, default_config)
    if "-h" in argv or "--help" in argv:
        parser.parse_args(["--help"])  # prints the help (with --config) and exits
    config_path, argv = _split_config(argv, default_config)
    check_flags(parser, argv)
    if config_path:
        values = load_yaml(config_path)
        known = {action.dest for action in parser._actions} - {"config", "help"}
        unknown = sorted(set(values) - known)
        if unknown:
            hints = "".join(_suggestion(key, sorted(known)) for key in unknown[:1])
            raise ValueError(f"{config_path}: unknown key(s) {unknown}{hints}")
        parser.set_defaults(**_typed_yaml_values(parser, values, config_path))
        _relax_required(parser, values)
    return parser.parse_args_into_dataclasses(args=argv)


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


def _relax_required(parser, values: dict) -> None:
    """Arguments given in the YAML are no longer required on the command line."""
    for action in parser._actions:
        if action.dest in values:
            action.required = False
