import re
from dataclasses import dataclass, field

import pytest

from hf_models.recipes.config_parsing import parse_config


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


def test_help_lists_config(capsys):
    from hf_models.recipes.recipe_args import DataArguments, ModelArguments
    from hf_models.training.training_args import NCETrainingArguments

    with pytest.raises(SystemExit) as exit_info:
        parse_config(
            [ModelArguments, DataArguments, NCETrainingArguments], ["--help"], "recipes/configs/x.yaml"
        )
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "--config YAML" in out and "recipes/configs/x.yaml" in out and "--push_candidates" in out


@pytest.mark.parametrize("flag", ["--learning_rat", "--lerning_rate=3", "--learnig-rate"])
def test_mistyped_flag_is_a_one_line_error_with_the_closest_flag(capsys, flag):
    with pytest.raises(SystemExit) as exit_info:
        parse_config([Args], ["--epochs", "2", flag, "1e-3"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert f"unknown flag {flag.split('=')[0]}" in err
    assert re.search(r"did you mean --learning[_-]rate\?", err), err


def test_unknown_flag_without_a_close_match(capsys):
    with pytest.raises(SystemExit):
        parse_config([Args], ["--zzzzzz", "1"])
    err = capsys.readouterr().err
    assert "unknown flag --zzzzzz" in err and "did you mean" not in err


def test_unknown_yaml_key_suggests_the_closest(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("learning_rat: 1.0\n")
    with pytest.raises(ValueError, match=r"did you mean learning_rate"):
        parse_config([Args], ["--config", str(config)])


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--eval_top_k", "0"], "eval_top_k must be >= 1, got 0"),  # once: every metric 0.0, exit 0
        (["--score_chunk_size", "-1"], "score_chunk_size must be >= 1"),
        (["--mining_chunk_size", "0"], "mining_chunk_size must be >= 1"),
        (["--mining_batch_size", "0"], "mining_batch_size must be >= 1"),
        (["--max_train_mentions", "0"], "max_train_mentions must be >= 1 or None"),
        (["--max_eval_mentions", "-3"], "max_eval_mentions must be >= 1 or None"),
    ],
)
def test_out_of_range_values_are_refused_naming_the_flag(tmp_path, flags, message):
    from hf_models.recipes.recipe_args import DataArguments, ModelArguments
    from hf_models.training.training_args import NCETrainingArguments

    argv = ["--output_dir", str(tmp_path), "--use_cpu", "true", "--report_to", "none", *flags]
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_config([ModelArguments, DataArguments, NCETrainingArguments], argv)


def test_miner_refuses_a_hard_fraction_outside_0_1(tiny_el):
    from hf_models.training.mining import NegativeMiner

    _, entities, splits = tiny_el
    for fraction in (1.05, -0.05):
        with pytest.raises(ValueError, match=r"hard_fraction must be in \[0, 1\]"):
            NegativeMiner(
                None, splits["train"], entities, strategy="mixed", num_negatives=2, hard_fraction=fraction
            )
