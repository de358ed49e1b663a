"""EntityLinker with an alias table (hf_models/linking/alias_candidates.py): a mention whose alias key has candidates
gets exactly those, re-scored with the log prior; others are searched in their whole world as before; the table
is saved with the index, checked on load, and a changed file is refused."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from data_scripts.aliases import ALIASES_FILE, AliasTable
from hf_models.atomic import CorruptFolderError
from hf_models.linking import EntityLinker
from hf_models.linking.cli import main

from .test_linker import save_retriever

ENTITIES = [
    {"entity_id": "bank_river", "world": "kb", "title": "bank", "text": "the land beside a river"},
    {"entity_id": "bank_money", "world": "kb", "title": "bank", "text": "a place that keeps money"},
    {"entity_id": "lisp", "world": "kb", "title": "lisp", "text": "a programming language"},
    {"entity_id": "python", "world": "kb", "title": "python", "text": "another programming language"},
    {"entity_id": "java", "world": "kb", "title": "java", "text": "an island and a language"},
    {"entity_id": "snake", "world": "zoo", "title": "python", "text": "a large snake"},
    {"entity_id": "lion", "world": "zoo", "title": "lion", "text": "a large cat"},
]
ALIASES = [
    {"alias": "Bank", "world": "kb", "candidates": ["bank_river", "bank_money"], "counts": [1, 9]},
    {"alias": "python", "world": "kb", "candidates": ["python"], "counts": [3]},
    {"alias": "python", "world": "zoo", "candidates": ["snake"], "counts": None},
]
BANK = {"text": "I went to the bank today", "spans": [[14, 18]], "world": "kb"}
OTHER = {"text": "I wrote java today", "spans": [[8, 12]], "world": "kb"}  # no alias: whole-world search


@pytest.fixture(scope="module")
def retriever_dir(tiny_bert_dir, tmp_path_factory):
    from hf_models import DualEncoderModel

    return save_retriever(DualEncoderModel, tiny_bert_dir, tmp_path_factory.mktemp("dual"))


@pytest.fixture(scope="module")
def kb_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("kb") / "kb.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in ENTITIES))
    return path


def new_linker(retriever_dir) -> EntityLinker:
    return EntityLinker.from_pretrained(retriever_dir, max_length=32, show_progress=False)


def links(linker, inputs, top_k=5) -> list[dict]:
    return [
        mention for result in linker.link(inputs, top_k=top_k) for mention in result.to_dict()["mentions"]
    ]


def same(entities: list[dict], expected: list[dict]) -> bool:
    """The same entities in the same order with the same scores (up to float noise of batch composition)."""
    return [e["entity_id"] for e in entities] == [e["entity_id"] for e in expected] and all(
        a["score"] == pytest.approx(b["score"], abs=1e-4) for a, b in zip(entities, expected, strict=True)
    )


def test_alias_candidates_replace_the_world_search(retriever_dir, kb_file):
    linker = new_linker(retriever_dir).build_index(kb_file)
    plain = links(linker, [BANK, OTHER], top_k=5)
    assert all("source" not in mention for mention in plain)  # without a table: the output is unchanged
    every = {e["entity_id"]: e["score"] for e in links(linker, [BANK], top_k=5)[0]["entities"]}

    linker.set_aliases(AliasTable.from_rows(ALIASES), prior_weight=0.0)
    bank, other = links(linker, [BANK, OTHER], top_k=5)
    assert bank["source"] == "alias" and other["source"] == "index"
    assert {e["entity_id"] for e in bank["entities"]} == {"bank_river", "bank_money"}
    for entity in bank["entities"]:  # weight 0: the retriever's own scores, from the index vectors
        assert entity["score"] == pytest.approx(every[entity["entity_id"]], abs=1e-5)
    assert sum(e["probability"] for e in bank["entities"]) == pytest.approx(1.0)
    assert same(other["entities"], plain[1]["entities"])  # no alias candidates: the whole world, as before
    assert len(links(linker, [BANK], top_k=1)[0]["entities"]) == 1  # top_k still caps the list

    linker.set_aliases(AliasTable.from_rows(ALIASES), prior_weight=100.0)  # the prior decides: count 9 vs 1
    assert links(linker, [BANK])[0]["entities"][0]["entity_id"] == "bank_money"
    zoo = links(linker, [{"text": "a python!", "spans": [[2, 8]], "world": "zoo"}])[0]
    assert [e["entity_id"] for e in zoo["entities"]] == ["snake"]  # keys are looked up in the mention's world

    # an explicit key with the input: 'alias' for one span, 'aliases' parallel to 'spans' (null = the surface)
    given = {"text": "the money place", "start": 4, "end": 9, "alias": "BANK", "world": "kb"}
    assert links(linker, [given])[0]["source"] == "alias"
    two = {"text": "bank and java", "spans": [[0, 4], [9, 13]], "aliases": [None, "python"], "world": "kb"}
    first, second = links(linker, [two])
    assert first["source"] == second["source"] == "alias" and second["entities"][0]["entity_id"] == "python"
    with pytest.raises(ValueError, match="input 0: 'alias' is the alias key of one given mention"):
        linker.link([{"text": "the bank", "alias": "bank", "world": "kb"}])  # detected mentions
    with pytest.raises(ValueError, match="input 0: 'aliases' must be a list with one key"):
        linker.link([{**two, "aliases": ["bank"]}])

    linker.set_aliases(None)
    assert all(
        map(
            same,
            [m["entities"] for m in links(linker, [BANK, OTHER], top_k=5)],
            [m["entities"] for m in plain],
        )
    )


def test_saved_with_the_index_and_checked_on_load(retriever_dir, kb_file, tmp_path):
    linker = new_linker(retriever_dir).build_index(
        kb_file, aliases=AliasTable.from_rows(ALIASES), prior_weight=2.0
    )
    folder = linker.save_index(tmp_path / "index")
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["aliases"]["file"] == ALIASES_FILE and manifest["aliases"]["prior_weight"] == 2.0
    assert manifest["aliases"]["rows"] == 3
    loaded = new_linker(retriever_dir).load_index(folder)
    assert loaded.prior_weight == 2.0 and loaded.aliases.entries == linker.aliases.entries
    assert links(loaded, [BANK, OTHER]) == links(linker, [BANK, OTHER])

    # a changed alias file is refused by its checksum; a file the manifest does not list is refused too
    rows = pq.read_table(folder / ALIASES_FILE).to_pylist()
    rows[0]["counts"] = [9, 1]
    pq.write_table(AliasTable.from_rows(rows).to_arrow(), folder / ALIASES_FILE)
    with pytest.raises(CorruptFolderError, match="aliases.parquet does not match its checksum"):
        new_linker(retriever_dir).load_index(folder)
    del manifest["aliases"]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CorruptFolderError, match="aliases.parquet is not listed"):
        new_linker(retriever_dir).load_index(folder)

    # an index saved without a table still loads, without one
    plain = new_linker(retriever_dir).build_index(kb_file).save_index(tmp_path / "plain")
    assert not (plain / ALIASES_FILE).exists()
    reloaded = new_linker(retriever_dir).load_index(plain)
    assert reloaded.aliases is None and "source" not in links(reloaded, [BANK])[0]


def test_bad_tables_and_weights_are_named(retriever_dir, kb_file, tmp_path):
    linker = new_linker(retriever_dir).build_index(kb_file)
    with pytest.raises(ValueError, match="alias 'bank' of world 'kb': candidate 'nope' is not an entity"):
        linker.set_aliases(AliasTable.from_rows([{"alias": "bank", "world": "kb", "candidates": ["nope"]}]))
    with pytest.raises(ValueError, match="candidate 'snake' is an entity of world 'zoo'"):
        linker.set_aliases(AliasTable.from_rows([{"alias": "bank", "world": "kb", "candidates": ["snake"]}]))
    with pytest.raises(ValueError, match="prior_weight must be a finite number >= 0"):
        linker.set_aliases(AliasTable.from_rows(ALIASES), prior_weight=-1.0)
    with pytest.raises(FileNotFoundError, match="has no alias table"):
        linker.set_aliases(tmp_path)
    with pytest.raises(ValueError, match="no entity index"):
        new_linker(retriever_dir).set_aliases(AliasTable.from_rows(ALIASES))


def test_cli_builds_an_index_with_aliases(retriever_dir, kb_file, tmp_path, capsys):
    table = tmp_path / ALIASES_FILE
    AliasTable.from_rows(ALIASES).write(table)
    index = tmp_path / "index"
    build = ["build-index", "--retriever", str(retriever_dir), "--entities", str(kb_file), "--index", str(index),
             "--no_progress", "--max_length", "32"]  # fmt: skip
    assert main([*build, "--aliases", str(table), "--prior_weight", "2"]) == 0
    assert json.loads((index / "manifest.json").read_text())["aliases"]["prior_weight"] == 2.0
    inputs, output = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    inputs.write_text(json.dumps(BANK) + "\n" + json.dumps(OTHER) + "\n")
    link = [
        "--retriever",
        str(retriever_dir),
        "--index",
        str(index),
        "--input",
        str(inputs),
        "--output",
        str(output),
    ]
    assert main([*link, "--no_progress"]) == 0
    records = [json.loads(line) for line in output.read_text().splitlines()]
    assert [r["mentions"][0]["source"] for r in records] == ["alias", "index"]
    capsys.readouterr()
    assert main([*build, "--prior_weight", "2"]) == 2
    assert "--prior_weight weights the alias table's log prior" in capsys.readouterr().err


def test_a_reranker_scores_the_alias_candidates_before_the_prior(
    retriever_dir, tiny_bert_dir, kb_file, tmp_path
):
    from hf_models import JointRerankerModel

    JointRerankerModel.from_encoder(str(tiny_bert_dir)).save_pretrained(tmp_path / "joint")
    linker = EntityLinker.from_pretrained(
        retriever_dir, tmp_path / "joint", max_length=32, show_progress=False
    )
    linker.build_index(kb_file, aliases=AliasTable.from_rows(ALIASES))
    reranked = {e["entity_id"]: e["score"] for e in links(linker, [BANK])[0]["entities"]}
    assert set(reranked) == {"bank_river", "bank_money"}
    linker.set_aliases(AliasTable.from_rows(ALIASES), prior_weight=1.0)
    with_prior = {e["entity_id"]: e["score"] for e in links(linker, [BANK])[0]["entities"]}
    priors = AliasTable.from_rows(ALIASES).log_prior("kb", "bank")  # add-one: log 2/12, log 10/12
    for entity_id, score in with_prior.items():
        assert score == pytest.approx(reranked[entity_id] + priors[entity_id], abs=1e-4)
