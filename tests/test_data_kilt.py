"""KILT AIDA: a written fixture round-trips to the schema; a 200,000-page knowledge source streams in bounded memory."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from data_scripts.io import MENTION_COLUMNS
from data_scripts.kilt_aida import main, read_kilt_aida
from data_scripts.validation import InvalidDataError


def _page(page_id: int, title: str) -> str:
    text = [f"{title}\n", f"{title} is a page number {page_id}.", "Section::::History.", "It has a history."]
    return json.dumps({"_id": str(page_id), "wikipedia_id": str(page_id), "wikipedia_title": title, "text": text,
                       "anchors": [], "categories": "x,y"})  # fmt: skip


def _mention(mention_id: str, text: str, gold: int | None, meta: dict | None = None) -> str:
    output = (
        [{"answer": "x", "provenance": [{"wikipedia_id": str(gold), "title": "x"}]}]
        if gold
        else [{"answer": "x"}]
    )
    return json.dumps({"id": mention_id, "input": text, "output": output, "meta": meta or {}})


@pytest.fixture
def kilt_files(tmp_path) -> tuple[dict[str, Path], Path]:
    (tmp_path / "train.jsonl").write_text(
        _mention("t1", "EU rejects [START_ENT] German [END_ENT] call to boycott", 3) + "\n"
        + _mention("t2", "no markers here", 5, {"left_context": "Peter", "mention": "Blackburn", "right_context": "said"})
        + "\n"
    )  # fmt: skip
    (tmp_path / "dev.jsonl").write_text(_mention("d1", "[START_ENT] Japan [END_ENT] began", 7) + "\n")
    pages = [_page(i, f"Page {i}") for i in range(10)]
    (tmp_path / "ks.json").write_text("\n".join(pages) + "\n")
    return {"train": tmp_path / "train.jsonl", "val": tmp_path / "dev.jsonl"}, tmp_path / "ks.json"


def test_round_trip_to_schema(kilt_files):
    files, knowledge_source = kilt_files
    mentions, entities = read_kilt_aida(files, knowledge_source)
    assert tuple(mentions["train"].column_names) == MENTION_COLUMNS
    first, second = mentions["train"].to_list()
    assert (first["left_context"], first["mention"], first["right_context"]) == (
        "EU rejects",
        "German",
        "call to boycott",
    )
    assert (second["mention"], second["label_id"], second["world"]) == ("Blackburn", "5", "wikipedia")
    assert sorted(entities["entity_id"]) == ["3", "5", "7"]  # restricted to the golds
    page = entities.to_list()[0]
    assert page["title"] == "Page 3" and page["text"] == "Page 3 is a page number 3. It has a history."
    first_mentions, first_pages = read_kilt_aida(
        files, knowledge_source, restrict="none", max_pages=4, skip_invalid=True
    )
    assert first_pages["entity_id"] == ["0", "1", "2", "3"]
    assert first_mentions["train"]["mention_id"] == ["t1"]  # golds 5 and 7 are not among the first 4 pages


def test_invalid_lines_named_and_counted(kilt_files, tmp_path, caplog):
    files, knowledge_source = kilt_files
    with open(files["train"], "a") as handle:
        handle.write('{"id": "broken"\n' + _mention("t4", "[START_ENT] Mars [END_ENT]", 999_999) + "\n")
    with pytest.raises(InvalidDataError, match=r"train\.jsonl:3: malformed JSON"):
        read_kilt_aida(files, knowledge_source)
    args = ["--mention_files", f"train={files['train']}", "--knowledge_source", str(knowledge_source)]
    main([*args, "--output_dir", str(tmp_path / "out"), "--skip_invalid"])
    summary = " ".join(r.getMessage() for r in caplog.records)
    assert "malformed_json: 1" in summary and "gold_missing: 1" in summary


MEASURE = """
import resource, sys, json
from data_scripts.kilt_aida import read_kilt_aida
with open("/proc/self/status") as status:  # current RSS after the imports (KiB)
    before = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
mentions, entities = read_kilt_aida({"train": sys.argv[1]}, sys.argv[2])
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"increase_kib": after - before, "entities": len(entities), "mentions": len(mentions["train"])}))
"""


@pytest.mark.slow
def test_knowledge_source_streams_with_bounded_memory(tmp_path):
    pages, golds = 200_000, [17, 99_999, 199_998]
    knowledge_source = tmp_path / "ks.json"
    padding = "lorem ipsum dolor sit amet " * 40
    with open(knowledge_source, "w") as handle:
        for i in range(pages):
            handle.write(
                f'{{"_id": "{i}", "wikipedia_id": "{i}", "wikipedia_title": "Page {i}", '
                f'"text": ["Page {i}\\n", "Page {i} is about {i}. {padding}"], "anchors": []}}\n'
            )
    (tmp_path / "m.jsonl").write_text(
        "".join(_mention(f"m{g}", f"x [START_ENT] P{g} [END_ENT] y", g) + "\n" for g in golds)
    )
    size_kib = knowledge_source.stat().st_size // 1024
    result = subprocess.run(
        [sys.executable, "-c", MEASURE, str(tmp_path / "m.jsonl"), str(knowledge_source)],
        capture_output=True, text=True, check=True, cwd=Path(__file__).resolve().parents[1],
    )  # fmt: skip
    measured = json.loads(result.stdout.strip().splitlines()[-1])
    print(
        f"knowledge source {size_kib / 1024:.0f} MiB; peak RSS increase {measured['increase_kib'] / 1024:.1f} MiB"
    )
    assert measured["entities"] == 3 and measured["mentions"] == 3
    assert measured["increase_kib"] < size_kib / 4  # a constant (~30 MiB), not the file
