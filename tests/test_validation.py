"""One test per bad input of issue 9: each fails with a message naming the file and line (or id/field/flag)."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import datasets
import pytest

from data_scripts.dictd import read_glossary
from data_scripts.io import load_processed, write_processed
from data_scripts.kilt_aida import main as kilt_main
from data_scripts.kilt_aida import read_kilt_aida
from data_scripts.validation import InvalidDataError
from data_scripts.zeshel import read_zeshel
from hf_models.atomic import CorruptFolderError

from .conftest import make_tiny_tables


def _zeshel(sample: Path, tmp_path: Path) -> Path:
    root = tmp_path / "zeshel"
    shutil.copytree(sample, root)
    return root


def _edit(path: Path, line: int, **changes) -> None:
    lines = path.read_text().splitlines()
    record = json.loads(lines[line])
    record.update(changes)
    lines[line] = json.dumps(record)
    path.write_text("\n".join(lines) + "\n")


# ------------------------------------------------------------------------------------------------ Zeshel
ZESHEL_CASES = {
    "null_document_id": ("documents/military.json", 0, {"document_id": None}, r"military\.json:1: field 'document_id'"),
    "empty_document_id": ("documents/military.json", 1, {"document_id": " "}, r"military\.json:2: field 'document_id'"),
    "empty_title": ("documents/starwars.json", 0, {"title": ""}, r"starwars\.json:1: entity '\w+' has an empty title"),
    "text_not_string": ("documents/starwars.json", 1, {"text": ["a", "b"]}, r"starwars\.json:2: field 'text' must be a string"),
    "float_span": ("mentions/train.json", 0, {"start_index": 614.0}, r"train\.json:1: field 'start_index' must be an integer, got 614\.0"),
    "word_span": ("mentions/train.json", 1, {"end_index": "five"}, r"train\.json:2: field 'end_index' must be an integer"),
    "null_mention_id": ("mentions/train.json", 2, {"mention_id": None}, r"train\.json:3: field 'mention_id'"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(ZESHEL_CASES))
def test_zeshel_bad_field_names_file_line_and_field(case, zeshel_sample_dir, tmp_path):
    file, line, changes, message = ZESHEL_CASES[case]
    root = _zeshel(zeshel_sample_dir, tmp_path)
    _edit(root / file, line, **changes)
    with pytest.raises(InvalidDataError, match=message):
        read_zeshel(root, splits=("train",))


def test_zeshel_non_utf8_names_file_and_line(zeshel_sample_dir, tmp_path):
    root = _zeshel(zeshel_sample_dir, tmp_path)
    path = root / "mentions" / "train.json"
    lines = path.read_bytes().splitlines()
    lines[1] = lines[1].replace(b"Amasis", b"Am\xe4sis")  # latin-1, not UTF-8
    path.write_bytes(b"\n".join(lines) + b"\n")
    with pytest.raises(InvalidDataError, match=r"train\.json:2: not UTF-8 \(invalid byte 0xe4"):
        read_zeshel(root, splits=("train",))


def test_zeshel_duplicate_mention_id_across_splits(zeshel_sample_dir):
    with pytest.raises(InvalidDataError, match=r"val\.json:1: duplicate mention id '04118548A2FEB09B'"):
        read_zeshel(zeshel_sample_dir, splits=("train", "val"))


def test_zeshel_missing_named_split_file(zeshel_sample_dir, tmp_path):
    root = _zeshel(zeshel_sample_dir, tmp_path)
    (root / "mentions" / "test.json").unlink()
    with pytest.raises(
        FileNotFoundError, match=r"mentions/test\.json: no such split file \(--splits names 'test'\)"
    ):
        read_zeshel(root, splits=("train", "test"))


def test_empty_split_file_is_refused_by_the_writer(zeshel_sample_dir, tmp_path):
    root = _zeshel(zeshel_sample_dir, tmp_path)
    (root / "mentions" / "test.json").write_text("")
    mentions, entities = read_zeshel(root, splits=("train", "test"))
    assert len(mentions["test"]) == 0
    with pytest.raises(ValueError, match=r"split 'test' has no mentions"):
        write_processed(mentions, entities, tmp_path / "out")
    assert not (tmp_path / "out").exists(), "nothing may be written before every check passed"


# -------------------------------------------------------------------------------------------------- KILT
def _kilt(tmp_path: Path, page_text=None, mention_id="t1", dev_id="d1") -> tuple[dict[str, Path], Path]:
    def mention(mention_id, text, gold):
        output = [{"answer": "x", "provenance": [{"wikipedia_id": str(gold)}]}]
        return json.dumps({"id": mention_id, "input": text, "output": output})

    (tmp_path / "train.jsonl").write_text(
        mention(mention_id, "EU [START_ENT] German [END_ENT] call", 3) + "\n"
    )
    (tmp_path / "dev.jsonl").write_text(mention(dev_id, "[START_ENT] Japan [END_ENT] began", 4) + "\n")
    pages = []
    for i in range(6):
        text = [f"Page {i}\n", f"Page {i} is a page."] if page_text is None or i != 3 else page_text
        pages.append(json.dumps({"wikipedia_id": str(i), "wikipedia_title": f"Page {i}", "text": text}))
    (tmp_path / "ks.json").write_text("\n".join(pages) + "\n")
    return {"train": tmp_path / "train.jsonl", "val": tmp_path / "dev.jsonl"}, tmp_path / "ks.json"


def test_kilt_page_text_as_string(tmp_path):
    files, source = _kilt(tmp_path, page_text="Page 3 is one string, not a list of paragraphs")
    with pytest.raises(
        InvalidDataError, match=r"ks\.json:4: page '3': field 'text' must be a list of paragraph"
    ):
        read_kilt_aida(files, source)


def test_kilt_null_mention_id(tmp_path):
    files, source = _kilt(tmp_path, mention_id=None)
    with pytest.raises(InvalidDataError, match=r"train\.jsonl:1: field 'id' must be a non-empty string"):
        read_kilt_aida(files, source)


def test_kilt_duplicate_mention_id_across_splits(tmp_path):
    files, source = _kilt(tmp_path, dev_id="t1")
    with pytest.raises(InvalidDataError, match=r"dev\.jsonl \(id t1\): duplicate mention id 't1'"):
        read_kilt_aida(files, source)


def test_kilt_null_page_id(tmp_path):
    files, source = _kilt(tmp_path)
    lines = source.read_text().splitlines()
    lines[1] = json.dumps({"wikipedia_id": None, "wikipedia_title": "x", "text": ["x", "y"]})
    source.write_text("\n".join(lines) + "\n")
    with pytest.raises(InvalidDataError, match=r"ks\.json:2: field 'wikipedia_id' must be a non-empty"):
        read_kilt_aida(files, source, restrict="none")


def test_kilt_two_marked_spans(tmp_path):
    files, source = _kilt(tmp_path)
    files["train"].write_text(
        json.dumps({"id": "t9", "input": "[START_ENT] a [END_ENT] and [START_ENT] b [END_ENT]", "output": []})
        + "\n"
    )
    with pytest.raises(
        InvalidDataError, match=r"train\.jsonl:1: id 't9' has 2 \[START_ENT\] and 2 \[END_ENT\]"
    ):
        read_kilt_aida(files, source)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[START_ENT] a [END_ENT] b [END_ENT] c", r"has 1 \[START_ENT\] and 2 \[END_ENT\]"),
        ("x [START_ENT] a b c", r"\[START_ENT\] without an \[END_ENT\] after it"),
        ("x [START_ENT] [END_ENT] c", r"mention 't9' has an empty mention string"),
    ],
    ids=["two-ends", "start-only", "empty-mention"],
)
def test_kilt_markers_must_pair_around_a_mention(tmp_path, text, message):
    """Each once wrote a wrong row with exit 0 (a marker in the context, meta used instead, an empty mention)."""
    files, source = _kilt(tmp_path)
    record = {
        "id": "t9",
        "input": text,
        "meta": {"mention": "other"},
        "output": [{"provenance": [{"wikipedia_id": "1"}]}],
    }
    files["train"].write_text(json.dumps(record) + "\n")
    with pytest.raises(InvalidDataError, match=message):
        read_kilt_aida(files, source)


def test_kilt_candidate_file_entries_must_be_ids(tmp_path):
    from data_scripts.kilt_aida import candidate_ids
    from data_scripts.validation import ProblemLog

    path = tmp_path / "c.jsonl"
    for body, message in (
        ('{"candidates": "300"}', "must be a list, got str"),
        ('{"candidates": [{"id": 3}]}', "entries must be entity ids"),
    ):
        path.write_text(body + "\n")
        with pytest.raises(ValueError, match=r"c\.jsonl:1: .*" + message):
            candidate_ids(path, ProblemLog(skip_invalid=False))
    path.write_text('{"candidates": ["300", {"entity_id": 12}]}\n')
    assert candidate_ids(path, ProblemLog(skip_invalid=False)) == {"300", "12"}


def test_kilt_mention_files_without_split(tmp_path, capsys):
    files, source = _kilt(tmp_path)
    with pytest.raises(SystemExit):
        kilt_main(
            ["--mention_files", str(files["train"]), "--knowledge_source", str(source), "--output_dir", "x"]
        )
    error = capsys.readouterr().err
    assert f"--mention_files '{files['train']}': expected SPLIT=PATH" in error


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--mention_files", "train=A", "train=B"], "--mention_files names split 'train' more than once"),
        (["--mention_files", "train="], "--mention_files 'train=': expected SPLIT=PATH"),
        (["--mention_files", "train=A", "--description_chars", "-5"], "--description_chars must be >= 1"),
        (["--mention_files", "train=A", "--max_pages", "0"], "--max_pages must be >= 1"),
        (["--mention_files", "train=A", "--candidate_file", "c.jsonl"], "--candidate_file is read only with"),
    ],
)
def test_kilt_bad_flag_values_are_named(flags, message, capsys):
    with pytest.raises(SystemExit):
        kilt_main([*flags, "--knowledge_source", "ks.json", "--output_dir", "x"])
    assert message in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------- dictd
def test_dictd_offsets_outside_the_dict_file_name_the_index_line(tmp_path):
    root = tmp_path / "dictd"
    root.mkdir()
    body = b"Unix\n\n   <operating system> An {operating system}.\n"
    (root / "foldoc.index").write_text("unix\tA\tz\n")  # offset 0, length 51 > the 20 bytes written
    (root / "foldoc.dict.dz").write_bytes(gzip.compress(body[:20]))
    with pytest.raises(
        ValueError, match=r"foldoc\.index:1: entry 'unix' at offset 0, length 51 lies outside"
    ):
        read_glossary(root, "foldoc")


# -------------------------------------------------------------------------------------- write_processed
def _tables():
    return make_tiny_tables({"alpha": "train", "beta": "val"}, entities_per_world=3, mentions_per_world=2)


def _with_entity(entities: datasets.Dataset, row: int, **changes) -> datasets.Dataset:
    rows = entities.to_list()
    rows[row].update(changes)
    return datasets.Dataset.from_list(rows)


WRITE_CASES = {
    "duplicate_entity_id": (lambda m, e: (m, _with_entity(e, 1, entity_id="alpha-e0")), r"entities row 1 .*'alpha-e0'.*duplicate entity_id"),
    "empty_entity_id": (lambda m, e: (m, _with_entity(e, 2, entity_id="")), r"entities row 2 .*entity_id must be a non-empty"),
    "null_entity_id": (lambda m, e: (m, _with_entity(e, 2, entity_id="None")), r"entities row 2 .*entity_id must be a non-empty"),
    "empty_title": (lambda m, e: (m, _with_entity(e, 0, title=" ")), r"entities row 0 .*empty title"),
    "bad_split_name": (lambda m, e: (datasets.DatasetDict({"tr ain": m["train"]}), e), r"split name 'tr ain'"),
    "duplicate_mention_across_splits": (
        lambda m, e: (datasets.DatasetDict({"train": m["train"], "val": m["train"]}), e),
        r"split 'val' row 0 \(mention_id 'alpha-m0'\): duplicate mention_id \(already in split 'train'\)",
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(WRITE_CASES))
def test_write_processed_validates_before_touching_the_folder(case, tmp_path):
    mentions, entities = _tables()
    out = tmp_path / "out"
    write_processed(mentions, entities, out)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    bad_mentions, bad_entities = WRITE_CASES[case][0](mentions, entities)
    with pytest.raises(ValueError, match=WRITE_CASES[case][1]):
        write_processed(bad_mentions, bad_entities, out)
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before, "the folder was touched"


def test_write_processed_refuses_another_dataset_unless_overwrite(tmp_path):
    mentions, entities = _tables()
    out = tmp_path / "out"
    write_processed(mentions, entities, out, pretty_name="Zeshel entity linking")
    (out / "ATTRIBUTION.md").write_text("kept")
    with pytest.raises(FileExistsError, match=r"holds the dataset 'Zeshel entity linking'.*--overwrite"):
        write_processed(mentions, entities, out, pretty_name="KILT AIDA-CoNLL entity linking")
    write_processed(mentions, entities, out, pretty_name="Zeshel entity linking")  # a rebuild: fine
    assert (out / "ATTRIBUTION.md").read_text() == "kept", "files outside the layout are carried over"
    write_processed(mentions, entities, out, pretty_name="KILT AIDA-CoNLL entity linking", overwrite=True)
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "mine.txt").write_text("x")
    with pytest.raises(FileExistsError, match=r"notes is not empty and holds no processed dataset"):
        write_processed(mentions, entities, tmp_path / "notes")


def test_load_processed_checks_the_manifest(tmp_path):
    mentions, entities = _tables()
    out = tmp_path / "out"
    write_processed(mentions, entities, out)
    mentions["train"].select([1, 0]).to_parquet(str(out / "mentions" / "train.parquet"))  # reordered rows
    with pytest.raises(
        CorruptFolderError, match=r"mentions/train\.parquet has 2 rows whose mention_ids do not"
    ):
        load_processed(out)
    write_processed(mentions, entities, out)
    (out / "mentions" / "test.parquet").write_bytes((out / "mentions" / "val.parquet").read_bytes())  # stale
    with pytest.raises(CorruptFolderError, match=r"mentions/test\.parquet is not listed in .*manifest\.json"):
        load_processed(out)
    write_processed(mentions, entities, out)
    (out / "entities" / "beta.parquet").unlink()
    with pytest.raises(
        CorruptFolderError, match=r"entities/beta\.parquet \('beta'\) is listed .* but missing"
    ):
        load_processed(out)


def test_load_processed_checks_counts_of_a_folder_without_manifest(tmp_path):
    """The state the old write_processed left after a failure: train and val only, counts.json still lists test."""
    mentions, entities = make_tiny_tables({"a": "train", "b": "val", "c": "test"}, 3, 2)
    out = tmp_path / "out"
    write_processed(mentions, entities, out)
    (out / "manifest.json").unlink()
    (out / "mentions" / "test.parquet").unlink()
    with pytest.raises(
        CorruptFolderError, match=r"mentions/test\.parquet disagrees with .*counts\.json \(missing\)"
    ):
        load_processed(out)


def test_kilt_output_not_a_list_of_objects(tmp_path):
    files, source = _kilt(tmp_path)
    files["train"].write_text(
        json.dumps({"id": "t7", "input": "[START_ENT] a [END_ENT]", "output": "Q42"}) + "\n"
    )
    with pytest.raises(
        InvalidDataError, match=r"train\.jsonl:1: id 't7': field 'output' must be a list of objects"
    ):
        read_kilt_aida(files, source)
