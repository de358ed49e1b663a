from dataclasses import dataclass, field

import pytest

from hf_models.config_parsing import parse_config


@dataclass
class Args:
    architecture: str = field(default="dual", metadata={"help": "arch"})
    learning_rate: float = field(default=1e-5, metadata={"help": "lr"})
    epochs: int = field(default=1, metadata={"help": "epochs"})


def test_yaml_values_are_defaults_and_cli_overrides(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("architecture: som\nlearning_rate: 2.0e-5\nepochs: 4\n")
    (args,) = parse_config([Args], ["--config", str(config), "--learning_rate", "5e-5"])
    assert args.architecture == "som"
    assert args.learning_rate == pytest.approx(5e-5)
    assert args.epochs == 4


def test_unknown_yaml_key_names_key_and_file(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("architcture: som\n")
    with pytest.raises(ValueError, match=r"bad\.yaml.*architcture"):
        parse_config([Args], ["--config", str(config)])


def test_missing_config_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        parse_config([Args], [f"--config={tmp_path / 'nope.yaml'}"])
