"""Recipe-side bad inputs of issue 9 (flags, YAML types, paths, tables) and the loaders' temporary files."""

from __future__ import annotations

import os
import subprocess
import sys

import datasets
import pytest

from data_scripts.io import write_processed
from hf_models.recipes.config_parsing import parse_config
from hf_models.recipes.recipe import run_retriever_recipe
from hf_models.recipes.recipe_args import DataArguments, ModelArguments
from hf_models.training.training_args import NCETrainingArguments

from .conftest import REPO_ROOT, make_tiny_tables


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory):
    mentions, entities = make_tiny_tables({"alpha": "train", "gamma": "val", "delta": "test"}, 4, 4)
    path = tmp_path_factory.mktemp("tiny_dataset")
    write_processed(mentions, entities, path)
    return path


@pytest.mark.parametrize("flag", ["--eval_split", "--test_split"])
def test_mistyped_split_flag_is_an_error_naming_the_flag(flag, tiny_dataset, tiny_bert_dir, tmp_path):
    argv = ["--encoder", str(tiny_bert_dir), "--dataset_dir", str(tiny_dataset), "--output_dir", str(tmp_path),
            "--use_cpu", "true", "--report_to", "none", flag, "vall"]  # fmt: skip
    with pytest.raises(
        ValueError, match=rf"{flag} 'vall': .* has no such split \(it has \['test', 'train', 'val'\]"
    ):
        run_retriever_recipe(argv)


def test_missing_encoder_path_names_the_flag(tiny_dataset, tmp_path):
    argv = ["--encoder", str(tmp_path / "no_such_model"), "--dataset_dir", str(tiny_dataset),
            "--output_dir", str(tmp_path), "--use_cpu", "true", "--report_to", "none"]  # fmt: skip
    with pytest.raises(FileNotFoundError, match=r"--encoder .*no_such_model: no such folder"):
        run_retriever_recipe(argv)


def test_yaml_float_for_an_integer_flag_names_key_and_file(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("num_candidates: 3.7\noutput_dir: out\n")
    types = [ModelArguments, DataArguments, NCETrainingArguments]
    with pytest.raises(ValueError, match=r"run\.yaml: key 'num_candidates' must be an integer, got 3\.7"):
        parse_config(types, ["--config", str(config)])
    config.write_text("num_candidates: 8.0\nlearning_rate: 1\noutput_dir: out\n")  # integral / int: converted
    _, _, args = parse_config(types, ["--config", str(config), "--use_cpu", "true"])
    assert args.num_candidates == 8 and isinstance(args.num_candidates, int) and args.learning_rate == 1.0


def test_mention_table_refuses_duplicate_mention_ids(tiny_el):
    from hf_models.index.tables import MentionTable

    _, entities, _ = tiny_el
    rows = {"mention_id": ["m1", "m1"], "world": ["alpha"] * 2, "label_id": ["alpha-e0"] * 2,
            "mention": ["x"] * 2, "mention_input_ids": [[1, 2]] * 2, "mention_attention_mask": [[1, 1]] * 2}  # fmt: skip
    with pytest.raises(ValueError, match=r"train: duplicate or empty mention_id 'm1' \(rows 0 and 1\)"):
        MentionTable.from_dataset(datasets.Dataset.from_dict(rows), entities, split="train")


LOADER = """
from data_scripts.io import entities_dataset
table = entities_dataset([{"entity_id": "e1", "world": "w", "title": "t", "text": "x"}])
print(table.cache_files[0]["filename"])
"""


def test_loader_tables_leave_no_temporary_file(tmp_path):
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    stale = tmp_path / f"hard_nce_el_tables-{dead.stdout.strip()}-killed"  # what a SIGKILLed loader leaves
    stale.mkdir()
    (stale / "entities-0.arrow").write_bytes(b"x")
    result = subprocess.run(
        [sys.executable, "-c", LOADER], env=env, cwd=REPO_ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().startswith(str(tmp_path)), (
        "the table lives under $TMPDIR while the process runs"
    )
    assert list(tmp_path.iterdir()) == [], "the process's tables and the dead process's leftovers are removed"
