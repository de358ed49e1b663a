"""`python -m hf_models.link`: build-index then link (a real subprocess) gives the Python API's results."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from data_scripts.zeshel import read_zeshel
from hf_models.link import main
from hf_models.linker import EntityLinker

from .test_linker import mention_records, save_retriever

REPO_ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "hf_models.link", *args, "--no_progress"],
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


def test_cli_matches_python(som_dir, zeshel_sample_dir, tmp_path):
    mentions, entities = read_zeshel(zeshel_sample_dir, splits=("train",))
    records = mention_records(mentions["train"])
    entities.to_json(str(tmp_path / "kb.jsonl"))
    with (tmp_path / "mentions.jsonl").open("w") as handle:
        handle.writelines(json.dumps(r) + "\n" for r in records)

    build = ["build-index", "--retriever", str(som_dir), "--entities", str(tmp_path / "kb.jsonl")]
    # the same entry point in-process (a second interpreter start costs ~15 s on a shared 2-core machine)
    assert (
        main([*build, "--index", str(tmp_path / "index"), "--max_length", "64", "--shortlist_size", "4"]) == 0
    )
    linked = run_cli(  # "link" is the default command
        "--retriever",
        str(som_dir),
        "--index",
        str(tmp_path / "index"),
        "--input",
        str(tmp_path / "mentions.jsonl"),
        "--output",
        str(tmp_path / "out.jsonl"),
        "--top_k",
        "3",
    )
    assert linked.returncode == 0, linked.stderr[-2000:]
    cli = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]

    linker = EntityLinker.from_pretrained(
        som_dir, max_length=64, shortlist_size=4, show_progress=False
    ).build_index(entities)
    python = linker.link(records, top_k=3)
    assert [r["id"] for r in cli] == [r["id"] for r in records]
    for line, ranked in zip(cli, python, strict=True):
        assert [e["entity_id"] for e in line["entities"]] == [e.entity_id for e in ranked]
        assert [e["score"] for e in line["entities"]] == pytest.approx([e.score for e in ranked], rel=1e-5)


def test_cli_errors_are_one_line(som_dir, tmp_path, capsys):
    (tmp_path / "m.jsonl").write_text('{"input": "x [START_ENT] y [END_ENT] z"}\n')
    args = [
        "--retriever",
        str(som_dir),
        "--index",
        str(tmp_path / "missing"),
        "--input",
        str(tmp_path / "m.jsonl"),
    ]
    assert main([*args, "--output", str(tmp_path / "o.jsonl"), "--no_progress"]) == 2
    assert "is not an entity index (manifest.json missing)" in capsys.readouterr().err
