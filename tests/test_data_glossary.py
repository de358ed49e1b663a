"""The embedded default dataset data/glossary_el and the dictd converter."""

from __future__ import annotations

import gzip
import json
from collections import Counter
from pathlib import Path

import pytest

from data_scripts.dictd import b64_number, build_corpus, read_glossary_tables
from data_scripts.io import counts_table, load_processed

DATASET = Path(__file__).resolve().parents[1] / "data" / "glossary_el"


@pytest.fixture(scope="module")
def glossary():
    return load_processed(DATASET)


def test_counts_match_the_card(glossary):
    mentions, entities = glossary
    counts = json.loads((DATASET / "counts.json").read_text())
    assert {s: dict(Counter(d["world"])) for s, d in mentions.items()} == counts["mentions"]
    assert dict(Counter(entities["world"])) == counts["entities"]
    assert counts_table(counts) in (DATASET / "README.md").read_text()
    assert (
        2000 <= len(mentions["train"]) <= 4000
        and len(mentions["val"]) >= 200
        and len(mentions["test"]) >= 200
    )
    assert all(300 <= n <= 2500 for n in counts["entities"].values())
    assert (DATASET / "ATTRIBUTION.md").exists() and (DATASET / "LICENSE-GFDL-1.2.txt").exists()


def test_zero_shot_and_golds_resolve(glossary):
    mentions, entities = glossary
    world_of = dict(zip(entities["entity_id"], entities["world"], strict=True))
    assert len(world_of) == len(entities)  # unique ids
    assert all(text.strip() for text in entities["text"])
    worlds = {split: set(d["world"]) for split, d in mentions.items()}
    assert (
        not worlds["train"] & worlds["val"]
        and not worlds["train"] & worlds["test"]
        and not worlds["val"] & worlds["test"]
    )
    train_entities = {e for e, w in world_of.items() if w in worlds["train"]}
    for split, dataset in mentions.items():
        assert len(set(dataset["mention_id"])) == len(dataset)
        for label, world in zip(dataset["label_id"], dataset["world"], strict=True):
            assert world_of[label] == world
            assert (label in train_entities) == (split == "train")


B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def _b64(number: int) -> str:
    digits = ""
    while True:
        digits = B64[number % 64] + digits
        number //= 64
        if not number:
            return digits


def test_dictd_converter_on_a_written_glossary(tmp_path):
    entries = {
        "unix": "Unix\n\n   <operating system> An {operating system} written in {C}.\n",
        "operating system": "operating system\n\n   <operating system> Runs {programs}. See {Unix}.\n",
        "c": "C\n\n   <language> A {programming language} used by {Unix}.\n",
        "program": "program\n\n   <programming> What a {C} compiler builds for {Unix}.\n",
    }
    body, index = b"", []
    for headword, text in entries.items():
        data = text.encode()
        index.append(f"{headword}\t{_b64(len(body))}\t{_b64(len(data))}")
        body += data
    (tmp_path / "foldoc.index").write_text("\n".join(sorted(index)) + "\n")
    (tmp_path / "foldoc.dict.dz").write_bytes(gzip.compress(body))
    assert b64_number(_b64(123456)) == 123456
    corpus = build_corpus(tmp_path, ("foldoc",))
    assert corpus.unresolved == 1  # {programming language}; {programs} resolves through the plural fallback
    splits = {"train": ("foldoc_systems",), "test": ("foldoc_languages",)}
    mentions, entities = read_glossary_tables(tmp_path, glossaries=("foldoc",), splits=splits)
    train = mentions["train"].to_list()
    assert {(m["mention"], m["world"]) for m in train} == {
        ("operating system", "foldoc_systems"),
        ("Unix", "foldoc_systems"),
    }
    from_unix = next(m for m in train if m["mention"] == "operating system")
    assert from_unix["left_context"] == "Unix <operating system> An" and from_unix[
        "right_context"
    ].startswith("written in C .")
    # {C} in the Unix entry targets a test world from a train-world context: dropped (no cross-split text)
    assert len(mentions["test"]) == 0
    assert set(entities["world"]) == {"foldoc_systems", "foldoc_languages"}


def test_plural_fallback_prefers_dropping_one_s():
    from data_scripts.dictd import resolve

    lookup = {"cas": "CAS", "case": "case", "class": "class", "query": "query"}
    assert resolve("cases", lookup) == "case"  # once "CAS": "-es" was tried before "-s"
    assert resolve("classes", lookup) == "class"
    assert resolve("queries", lookup) == "query"


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--max_mentions", "tset=0"], "'tset' is not a split"),
        (["--max_mentions", "val=-1"], "the cap must be an integer >= 1"),
        (["--splits", "train"], "expected SPLIT=WORLD"),
        (["--splits", "train=a,b", "val=b"], "puts world 'b' in more than one split"),
        (["--splits", "train=a", "train=b"], "names split 'train' more than once"),
    ],
)
def test_dictd_bad_flags_are_named(flags, message, capsys, tmp_path):
    from data_scripts.dictd import main

    with pytest.raises(SystemExit):
        main(["--dictd_dir", str(tmp_path), "--output_dir", str(tmp_path / "out"), *flags])
    assert message in capsys.readouterr().err
