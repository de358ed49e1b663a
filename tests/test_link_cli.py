"""`python -m hf_models.linking`: build-index then link raw text (a real subprocess) gives the Python API's results."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from data_scripts.zeshel import read_zeshel
from hf_models.linking import EntityLinker
from hf_models.linking.cli import main

from .test_linker import mention_records, save_retriever

REPO_ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "hf_models.linking", *args, "--no_progress"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def som_dir(tiny_bert_dir, tmp_path_factory) -> Path:
    from hf_models import SumOfMaxModel

    return save_retriever(SumOfMaxModel, tiny_bert_dir, tmp_path_factory.mktemp("som"))


@pytest.fixture(scope="module")
def index_dir(som_dir, zeshel_sample_dir, tmp_path_factory) -> Path:
    """build-index (the CLI entry point in-process) over the Zeshel excerpt's starwars world."""
    _, entities = read_zeshel(zeshel_sample_dir, splits=("train",))
    folder = tmp_path_factory.mktemp("cli")
    entities.filter(lambda row: row["world"] == "starwars").to_json(str(folder / "kb.jsonl"))
    build = ["build-index", "--retriever", str(som_dir), "--entities", str(folder / "kb.jsonl")]
    assert (
        main([*build, "--index", str(folder / "index"), "--max_length", "64", "--shortlist_size", "4"]) == 0
    )
    return folder / "index"


def test_cli_links_raw_text_with_the_dictionary_detector(som_dir, index_dir, tmp_path):
    linker = EntityLinker.from_pretrained(som_dir, show_progress=False).load_index(index_dir)
    titles = [t for t in linker.entities["starwars"]["title"] if len(t) > 3][:3]
    lines = [
        f"We read about {titles[0]} and then {titles[1]} today.",
        "",
        f"Only {titles[2]}, naïvely.",
        "none",
    ]
    (tmp_path / "raw.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    linked = run_cli(  # "link" is the default command; the dictionary detector over the index's titles
        "--retriever",
        str(som_dir),
        "--index",
        str(index_dir),
        "--input",
        str(tmp_path / "raw.txt"),
        "--output",
        str(tmp_path / "out.jsonl"),
        "--top_k",
        "3",
    )
    assert linked.returncode == 0, linked.stderr[-2000:]
    cli = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(cli) == len(lines)  # one output line per input line, the blank one too
    assert [[m["surface"] for m in line["mentions"]] for line in cli][:3] == [titles[:2], [], [titles[2]]]
    python = linker.link(lines, top_k=3)
    for text, line, result in zip(lines, cli, python, strict=True):
        assert line["text"] == text
        for mention, expected in zip(line["mentions"], result.mentions, strict=True):
            assert text[mention["start"] : mention["end"]] == mention["surface"]
            assert [e["entity_id"] for e in mention["entities"]] == [e.entity_id for e in expected.entities]
            assert [e["probability"] for e in mention["entities"]] == pytest.approx(
                [e.probability for e in expected.entities], abs=1e-5
            )


def test_cli_jsonl_matches_python(som_dir, index_dir, zeshel_sample_dir, tmp_path):
    mentions, _ = read_zeshel(zeshel_sample_dir, splits=("train",))
    records = [r for r in mention_records(mentions["train"]) if r["world"] == "starwars"]
    with (tmp_path / "mentions.jsonl").open("w") as handle:
        handle.writelines(json.dumps(r) + "\n" for r in records)
    args = [
        "--retriever",
        str(som_dir),
        "--index",
        str(index_dir),
        "--input",
        str(tmp_path / "mentions.jsonl"),
    ]
    assert main([*args, "--output", str(tmp_path / "out.jsonl"), "--top_k", "3", "--no_progress"]) == 0
    cli = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    python = (
        EntityLinker.from_pretrained(som_dir, show_progress=False)
        .load_index(index_dir)
        .link(records, top_k=3)
    )
    assert [r["id"] for r in cli] == [r["id"] for r in records]  # order and ids preserved
    for line, result in zip(cli, python, strict=True):
        (mention,) = line["mentions"]
        assert mention["surface"] == line["mention"].strip()
        assert [e["entity_id"] for e in mention["entities"]] == [
            e.entity_id for e in result.mentions[0].entities
        ]
        assert [e["score"] for e in mention["entities"]] == pytest.approx(
            [e.score for e in result.mentions[0].entities], rel=1e-5
        )


def test_cli_errors_are_one_line(som_dir, index_dir, tmp_path, capsys):
    (tmp_path / "m.jsonl").write_text(
        '{"input": "x [START_ENT] y [END_ENT] z"}\n\n{"text": "a", "spans": [[0, 5]]}\n'
    )
    args = [
        "--retriever",
        str(som_dir),
        "--input",
        str(tmp_path / "m.jsonl"),
        "--output",
        str(tmp_path / "o.jsonl"),
    ]
    assert main([*args, "--index", str(tmp_path / "missing"), "--no_progress"]) == 2
    assert "is not an entity index (manifest.json missing)" in capsys.readouterr().err
    assert main([*args, "--index", str(index_dir), "--no_progress"]) == 2
    assert "m.jsonl:3: span 0 [0, 5) is not inside the text" in capsys.readouterr().err
    assert not (tmp_path / "o.jsonl").exists()
    assert main([*args, "--index", str(index_dir), "--no_progress", "--detection_threshold", "0.9"]) == 2
    assert "--detection_threshold is the trained detector's" in capsys.readouterr().err
    args[args.index("--input") + 1] = str(tmp_path)  # a folder given as the input file
    assert main([*args, "--index", str(index_dir), "--no_progress"]) == 2
    assert str(tmp_path) in capsys.readouterr().err


def test_max_length_beyond_the_position_embeddings_is_named(som_dir, tmp_path, capsys):
    (tmp_path / "kb.jsonl").write_text('{"entity_id": "e1", "title": "A", "text": "a"}\n')
    code = main(
        ["build-index", "--retriever", str(som_dir), "--entities", str(tmp_path / "kb.jsonl"),
         "--index", str(tmp_path / "index"), "--max_length", "100000", "--no_progress"]
    )  # fmt: skip
    assert code == 2
    assert "max_length 100000 exceeds the" in capsys.readouterr().err
