"""data_scripts.jsonl (your own knowledge base as JSON lines) and data_scripts.aliases (the alias table).

Every bad row is an error naming file:line and the field; both mention forms; plain and .gz; world optional; the
one documented command on a slice of wsd_dev, with load_processed / load_aliases round trips and checksums.
"""

from __future__ import annotations

import gzip
import json
import math
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from data_scripts.aliases import ALIASES_FILE, AliasTable, load_aliases, normalize
from data_scripts.io import check_processed, load_processed
from data_scripts.jsonl import main, read_jsonl_tables
from data_scripts.validation import InvalidDataError
from hf_models.atomic import CorruptFolderError

SLICE = Path(__file__).parent / "data" / "wsd_dev_slice"

ENTITIES = [
    {"entity_id": "e1", "title": "Alpha", "text": "The first letter.", "world": "greek"},
    {"entity_id": "e2", "title": "Alpha Centauri", "text": "A star system.", "world": "greek"},
    {"entity_id": 3, "title": "Beta", "text": "The second letter.", "world": "greek"},
    {"entity_id": "e4", "title": "Aleph", "text": "A Hebrew letter.", "world": "hebrew"},
]
MENTIONS = [
    {"mention_id": "m1", "label_id": "e1", "world": "greek", "left": "read", "mention": "Alpha", "right": "first"},
    {"mention_id": "m2", "label_id": "e2", "world": "greek", "text": "We saw alpha centauri.", "start": 7,
     "end": 21, "alias": "Alpha_Centauri", "category": "astro"},
    {"mention_id": 7, "label_id": "e4", "world": "hebrew", "mention": "aleph", "lemma": "Aleph"},
]  # fmt: skip
ALIASES = [
    {"alias": "alpha", "world": "greek", "candidates": ["e1", "e2"], "counts": [5, 1]},
    {"alias": "Alpha Centauri", "world": "greek", "candidates": ["e2"]},
    {"alias": "aleph", "world": "hebrew", "candidates": ["e4"], "counts": [0]},
]


def _write(path: Path, rows: list, compress: bool = False) -> Path:
    lines = b"".join((r if isinstance(r, bytes) else json.dumps(r).encode()) + b"\n" for r in rows)
    path.write_bytes(gzip.compress(lines) if compress else lines)
    return path


def _files(tmp_path: Path, entities=ENTITIES, mentions=MENTIONS, aliases=ALIASES, compress=False) -> dict:
    suffix = ".jsonl.gz" if compress else ".jsonl"
    return {
        "entities": _write(tmp_path / f"entities{suffix}", entities, compress),
        "mentions": {"train": _write(tmp_path / f"train{suffix}", mentions, compress)},
        "aliases": _write(tmp_path / f"aliases{suffix}", aliases, compress),
    }


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gz"])
def test_both_mention_forms_plain_and_gz(tmp_path, compress):
    files = _files(tmp_path, compress=compress)
    mentions, entities, aliases = read_jsonl_tables(files["entities"], files["mentions"], files["aliases"])
    assert entities["entity_id"] == ["e1", "e2", "3", "e4"]
    rows = mentions["train"].to_list()
    assert [(r["left_context"], r["mention"], r["right_context"]) for r in rows] == [
        ("read", "Alpha", "first"),
        ("We saw", "alpha centauri", "."),  # text[7:21], end exclusive
        ("", "aleph", ""),
    ]
    assert [r["alias"] for r in rows] == [
        "alpha",
        "alpha centauri",
        "aleph",
    ]  # surface / alias / lemma, normalized
    assert [r["mention_id"] for r in rows] == ["m1", "m2", "7"] and rows[1]["category"] == "astro"
    assert aliases.candidates("greek", "ALPHA") == (["e1", "e2"], [5, 1])
    assert aliases.candidates("greek", "alpha_centauri") == (["e2"], None)
    assert aliases.mention_candidates(mentions["train"]) == [["e1", "e2"], ["e2"], ["e4"]]


def test_world_optional(tmp_path):
    entities = [{k: v for k, v in e.items() if k != "world"} for e in ENTITIES]
    mentions = [{k: v for k, v in m.items() if k != "world"} for m in MENTIONS]
    aliases = [{k: v for k, v in a.items() if k != "world"} for a in ALIASES]
    files = _files(tmp_path, entities, mentions, aliases)
    mentions_out, entities_out, table = read_jsonl_tables(
        files["entities"], files["mentions"], files["aliases"]
    )
    assert set(entities_out["world"]) == {"kb"} and set(mentions_out["train"]["world"]) == {"kb"}
    assert table.worlds == {"kb"}
    _, entities_out, _ = read_jsonl_tables(files["entities"], files["mentions"], world="letters")
    assert set(entities_out["world"]) == {"letters"}


M = "train.jsonl"
E = "entities.jsonl"
A = "aliases.jsonl"
BASE_MENTION = {"mention_id": "m9", "label_id": "e1", "world": "greek", "mention": "Alpha"}
SPAN_MENTION = {
    "mention_id": "m9",
    "label_id": "e1",
    "world": "greek",
    "text": "an Alpha here",
    "start": 3,
    "end": 8,
}
BAD_ROWS = {
    # (file, bad row or raw bytes, words the error must hold besides file:line)
    "entity_missing_text": (E, {"entity_id": "e9", "title": "T"}, "['text']"),
    "entity_title_type": (E, {"entity_id": "e9", "title": 5, "text": "t"}, "'title'"),
    "entity_empty_id": (E, {"entity_id": " ", "title": "T", "text": "t"}, "'entity_id'"),
    "entity_float_id": (E, {"entity_id": 1.5, "title": "T", "text": "t"}, "'entity_id'"),
    "entity_empty_title": (E, {"entity_id": "e9", "title": " ", "text": "t"}, "empty title"),
    "entity_empty_text": (E, {"entity_id": "e9", "title": "T", "text": ""}, "empty text"),
    "entity_duplicate": (E, {"entity_id": "e1", "title": "T", "text": "t"}, "duplicate entity id 'e1'"),
    "entity_bad_world": (E, {"entity_id": "e9", "title": "T", "text": "t", "world": "a b"}, "'world'"),
    "malformed_json": (E, b'{"entity_id": "e9",', "malformed JSON"),
    "non_object": (E, b'["e9", "T", "t"]', "expected a JSON object"),
    "non_utf8": (M, b'{"mention_id": "m9", "mention": "\xff"}', "not UTF-8"),
    "mention_missing_id": (M, {"label_id": "e1", "mention": "x"}, "['mention_id']"),
    "mention_missing_label": (M, {"mention_id": "m9", "mention": "x"}, "['label_id']"),
    "mention_null_label": (M, {**BASE_MENTION, "label_id": None}, "'label_id'"),
    "mention_unknown_label": (M, {**BASE_MENTION, "label_id": "zz"}, "field 'label_id': 'zz' is not an entity"),
    "mention_label_other_world": (M, {**BASE_MENTION, "label_id": "e4"}, "'label_id': 'e4' is an entity of world 'hebrew'"),
    "mention_world_without_entities": (M, {**BASE_MENTION, "world": "latin"}, "field 'world': world 'latin'"),
    "mention_duplicate_id": (M, {**BASE_MENTION, "mention_id": "m1"}, "duplicate mention id 'm1'"),
    "mention_missing_mention": (M, {"mention_id": "m9", "label_id": "e1", "world": "greek"}, "['mention']"),
    "mention_empty_mention": (M, {**BASE_MENTION, "mention": "  "}, "'mention' is an empty string"),
    "mention_left_type": (M, {**BASE_MENTION, "left": ["a"]}, "'left'"),
    "mention_category_type": (M, {**BASE_MENTION, "category": 3}, "'category'"),
    "mention_empty_lemma": (M, {**BASE_MENTION, "lemma": ""}, "'lemma' is an empty string"),
    "mention_alias_type": (M, {**BASE_MENTION, "alias": 4}, "'alias'"),
    "mention_alias_blank_once_normalized": (M, {**BASE_MENTION, "alias": "__"}, "'alias'"),
    "span_missing_text": (M, {**BASE_MENTION, "start": 0, "end": 2}, "['text']"),
    "span_missing_end": (M, {k: v for k, v in SPAN_MENTION.items() if k != "end"}, "['end']"),
    "span_float_start": (M, {**SPAN_MENTION, "start": 3.0}, "'start' must be an integer"),
    "span_out_of_range": (M, {**SPAN_MENTION, "end": 99}, "span [3, 99)"),
    "span_empty": (M, {**SPAN_MENTION, "end": 3}, "span [3, 3)"),
    "span_negative": (M, {**SPAN_MENTION, "start": -1}, "span [-1, 8)"),
    "span_not_matching": (M, {**SPAN_MENTION, "mention": "Beta"}, "field 'mention' is 'Beta' but text[3:8]"),
    "span_blank": (M, {**SPAN_MENTION, "start": 2, "end": 3}, "text[2:3] is blank"),
    "alias_missing_candidates": (A, {"alias": "x", "world": "greek"}, "['candidates']"),
    "alias_empty": (A, {"alias": " ", "world": "greek", "candidates": ["e1"]}, "'alias' is an empty string"),
    "alias_candidates_not_list": (A, {"alias": "x", "world": "greek", "candidates": "e1"}, "'candidates'"),
    "alias_candidates_empty": (A, {"alias": "x", "world": "greek", "candidates": []}, "'candidates'"),
    "alias_unknown_candidate": (A, {"alias": "x", "world": "greek", "candidates": ["e1", "zz"]},
                                "'candidates': entry 1 ('zz') is not an entity"),
    "alias_candidate_other_world": (A, {"alias": "x", "world": "greek", "candidates": ["e4"]},
                                    "'candidates': entry 0 ('e4') is an entity of world 'hebrew'"),
    "alias_candidate_twice": (A, {"alias": "x", "world": "greek", "candidates": ["e1", "e1"]}, "listed twice"),
    "alias_candidate_not_id": (A, {"alias": "x", "world": "greek", "candidates": [None]}, "is not an id"),
    "alias_counts_length": (A, {"alias": "x", "world": "greek", "candidates": ["e1"], "counts": [1, 2]},
                            "'counts' must be a list of 1"),
    "alias_negative_count": (A, {"alias": "x", "world": "greek", "candidates": ["e1"], "counts": [-1]}, "'counts'"),
    "alias_float_count": (A, {"alias": "x", "world": "greek", "candidates": ["e1"], "counts": [1.5]}, "'counts'"),
    "alias_duplicate": (A, {"alias": "ALPHA", "world": "greek", "candidates": ["e1"]}, "already on line 1"),
    "alias_bad_world": (A, {"alias": "x", "world": "", "candidates": ["e1"]}, "'world'"),
}  # fmt: skip


@pytest.mark.parametrize("kind", sorted(BAD_ROWS))
def test_every_bad_row_names_file_line_and_field(tmp_path, kind):
    name, bad, words = BAD_ROWS[kind]
    base = {E: ENTITIES, M: MENTIONS, A: ALIASES}
    rows = {file: list(value) for file, value in base.items()}
    rows[name].append(bad)
    files = _files(tmp_path, rows[E], rows[M], rows[A])
    line = len(rows[name])
    with pytest.raises(InvalidDataError) as caught:
        read_jsonl_tables(files["entities"], files["mentions"], files["aliases"])
    message = str(caught.value)
    assert f"{tmp_path / name}:{line}:" in message and words in message, message


def test_skip_invalid_counts_and_skips(tmp_path, caplog):
    mentions = [*MENTIONS, {**BASE_MENTION, "label_id": "zz"}, {**SPAN_MENTION, "end": 99}]
    aliases = [*ALIASES, {"alias": "x", "world": "greek", "candidates": ["zz"]}]
    files = _files(tmp_path, mentions=mentions, aliases=aliases)
    out, _, table = read_jsonl_tables(
        files["entities"], files["mentions"], files["aliases"], skip_invalid=True
    )
    assert len(out["train"]) == 3 and len(table) == 3
    assert "skipped 3 invalid record(s)" in caplog.text


def test_broken_gzip_names_the_file(tmp_path):
    files = _files(tmp_path, compress=True)
    data = files["entities"].read_bytes()
    files["entities"].write_bytes(data[: len(data) // 2])
    with pytest.raises(InvalidDataError, match=r"entities\.jsonl\.gz:\d+: not a readable gzip stream"):
        read_jsonl_tables(files["entities"], files["mentions"])


def test_split_names(tmp_path, capsys):
    files = _files(tmp_path)
    with pytest.raises(ValueError, match="val=FILE"):
        read_jsonl_tables(files["entities"], {"dev": files["mentions"]["train"]})
    argv = ["--entities", str(files["entities"]), "--mentions", f"dev={files['mentions']['train']}"]
    with pytest.raises(SystemExit):
        main([*argv, "--output_dir", str(tmp_path / "out")])
    assert "--mentions val=FILE" in capsys.readouterr().err


def test_alias_table_api():
    assert normalize("  New_York\tCITY ") == "new york city" == normalize(normalize("New York City"))
    assert normalize("Straße") == "strasse"
    table = AliasTable.from_rows(ALIASES)
    assert len(table) == 3 and ("greek", "Alpha") in table and ("hebrew", "alpha") not in table
    assert table.candidates("greek", "nothing") == ([], None)
    prior = table.log_prior("greek", "alpha")  # add-one: (5 + 1) / (6 + 2), (1 + 1) / (6 + 2)
    assert prior == pytest.approx({"e1": math.log(6 / 8), "e2": math.log(2 / 8)})
    assert table.log_prior("greek", "alpha", smoothing=0.5)["e1"] == pytest.approx(math.log(5.5 / 7))
    assert table.log_prior("greek", "alpha centauri") == {"e2": 0.0}  # no counts: uniform
    assert table.log_prior("hebrew", "aleph") == {"e4": 0.0} and table.log_prior("greek", "zz") == {}
    assert table.candidates_for(["greek", "hebrew"], ["Alpha", "x"]) == [["e1", "e2"], []]
    with pytest.raises(ValueError, match="smoothing"):
        table.log_prior("greek", "alpha", smoothing=0)
    with pytest.raises(ValueError, match="given twice"):
        AliasTable.from_rows([*ALIASES, {"alias": "ALPHA", "world": "greek", "candidates": ["e1"]}])
    with pytest.raises(ValueError, match="candidate 'e4' is an entity of world 'hebrew'"):
        AliasTable.from_rows([{"alias": "a", "world": "greek", "candidates": ["e4"]}]).validate(
            {"e1": "greek", "e4": "hebrew"}
        )


def _convert(output_dir: Path, *extra: str, aliases: bool = True) -> None:
    argv = [
        "--entities", str(SLICE / "entities.jsonl.gz"),
        "--mentions", f"train={SLICE / 'train_mentions.jsonl.gz'}",
        "--mentions", f"val={SLICE / 'dev_mentions.jsonl.gz'}",
        "--output_dir", str(output_dir), *extra,
    ]  # fmt: skip
    main([*argv, "--aliases", str(SLICE / "aliases.jsonl.gz")] if aliases else argv)


def test_wsd_dev_slice_one_command(tmp_path):
    out = tmp_path / "wsd_dev"
    _convert(out)
    mentions, entities = load_processed(out)
    assert {s: len(d) for s, d in mentions.items()} == {"train": 18, "val": 10} and len(entities) == 41
    assert sorted(set(entities["world"])) == ["adj", "adv", "noun", "verb"]
    assert "alias" in mentions["val"].column_names
    table = load_aliases(out)
    assert len(table) == 31
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["aliases"]["file"] == ALIASES_FILE and manifest["aliases"]["rows"] == 31
    val = mentions["val"].to_list()
    assert val[-1]["alias"] == "point out"  # the lemma point_out: underscores read as spaces
    candidates = table.mention_candidates(mentions["val"])
    assert all(m["label_id"] in c for m, c in zip(val, candidates, strict=True))  # the slice keeps them
    ids, counts = table.candidates("verb", "point_out")
    assert val[-1]["label_id"] in ids and len(counts) == len(ids)
    with gzip.open(SLICE / "aliases.jsonl.gz", "rt") as handle:
        raw = {json.loads(line)["alias"] for line in handle}
    assert set(pq.read_table(out / ALIASES_FILE)["alias"].to_pylist()) == {normalize(a) for a in raw}

    # a changed alias table is refused by its checksum (load_aliases and check_processed / load_processed)
    changed = pq.read_table(out / ALIASES_FILE).to_pylist()
    changed[0]["counts"] = [c + 1 for c in changed[0]["counts"]]
    pq.write_table(AliasTable.from_rows(changed).to_arrow(), out / ALIASES_FILE)
    with pytest.raises(CorruptFolderError, match="aliases.parquet does not match its checksum"):
        load_aliases(out)
    with pytest.raises(CorruptFolderError, match="aliases.parquet does not match its checksum"):
        load_processed(out)

    # rewritten without an alias table: the old file is not carried over, the folder has none
    _convert(out, aliases=False)
    assert not (out / ALIASES_FILE).exists() and load_aliases(out) is None
    check_processed(out)
    shutil.copy(SLICE / "aliases.jsonl.gz", out / ALIASES_FILE)  # a foreign file
    with pytest.raises(CorruptFolderError, match="is not listed"):
        check_processed(out)


def test_wsd_dev_slice_featurized(tmp_path, tiny_bert_dir):
    """With --tokenizer the featurized tables keep the alias column (extra columns are carried through)."""
    out = tmp_path / "featurized"
    _convert(out, "--tokenizer", str(tiny_bert_dir), "--max_length", "24")
    mentions, entities = load_processed(out)
    assert {"alias", "mention_input_ids"} <= set(mentions["train"].column_names)
    assert (
        len(mentions["train"][0]["mention_input_ids"]) == 24 and "entity_input_ids" in entities.column_names
    )
    assert load_aliases(out) is not None
