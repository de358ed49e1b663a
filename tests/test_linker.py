"""EntityLinker on the real Zeshel excerpt with tiny random models: build -> save -> load -> link, reranking, errors
(bad knowledge-base ids, corrupt index files, bad inputs name the file and line)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from data_scripts.zeshel import read_zeshel
from hf_models.linking import EntityLinker, IndexMismatchError


def save_retriever(model_class, tiny_bert_dir: Path, folder: Path, **config) -> Path:
    """A tiny retriever built from the tiny BERT, saved with the tokenizer (what a trained model folder holds)."""
    from transformers import AutoTokenizer

    model_class.from_encoder(str(tiny_bert_dir), **config).save_pretrained(folder)
    AutoTokenizer.from_pretrained(tiny_bert_dir).save_pretrained(folder)
    return folder


def mention_records(mentions) -> list[dict]:
    """The sample's 4 mentions as the linker's (left, mention, right) dicts, with their world and id."""
    return [
        {
            "id": row["mention_id"],
            "world": row["world"],
            "left_context": row["left_context"],
            "mention": row["mention"],
            "right_context": row["right_context"],
        }
        for row in mentions
    ]


@pytest.fixture(scope="module")
def zeshel(zeshel_sample_dir):
    mentions, entities = read_zeshel(zeshel_sample_dir, splits=("train",))
    return mention_records(mentions["train"]), entities


@pytest.fixture(scope="module")
def dual_dir(tiny_bert_dir, tmp_path_factory) -> Path:
    from hf_models import DualEncoderModel

    return save_retriever(DualEncoderModel, tiny_bert_dir, tmp_path_factory.mktemp("dual"))


@pytest.fixture(scope="module")
def built_index(dual_dir, zeshel, tmp_path_factory) -> tuple[Path, list]:
    """The dual linker's index of the sample's documents, saved, and its links of the 4 mentions."""
    records, entities = zeshel
    linker = EntityLinker.from_pretrained(dual_dir, max_length=64, show_progress=False).build_index(entities)
    folder = linker.save_index(tmp_path_factory.mktemp("index") / "kb")
    return folder, entities_of(linker.link(records, top_k=8))


def entities_of(results) -> list:
    """The entity list of each result's single mention."""
    assert all(len(result.mentions) == 1 for result in results)
    return [result.mentions[0].entities for result in results]


def test_build_save_load_link(dual_dir, zeshel, built_index):
    records, entities = zeshel
    folder, before = built_index
    manifest = json.loads((folder / "manifest.json").read_text())
    assert set(manifest["worlds"]) == {"military", "pro_wrestling", "doctor_who", "starwars"}
    assert manifest["model"]["weights_sha256"] and manifest["tokenizer"]["special_tokens"]["[unused0]"] == 5

    linker = EntityLinker.from_pretrained(dual_dir, show_progress=False).load_index(folder)
    after = entities_of(linker.link(records, top_k=8))
    world_of = dict(zip(entities["entity_id"], entities["world"], strict=True))
    title_of = dict(zip(entities["entity_id"], entities["title"], strict=True))
    for record, ranked, ranked_before in zip(records, after, before, strict=True):
        world_size = sum(w == record["world"] for w in entities["world"])
        assert len(ranked) == min(8, world_size)
        assert [e.entity_id for e in ranked] == [e.entity_id for e in ranked_before]
        torch.testing.assert_close([e.score for e in ranked], [e.score for e in ranked_before])
        assert all(
            world_of[e.entity_id] == record["world"] and title_of[e.entity_id] == e.title for e in ranked
        )
        assert [e.score for e in ranked] == sorted((e.score for e in ranked), reverse=True)

    marked = [
        {
            "world": r["world"],
            "input": f"{r['left_context']} [START_ENT] {r['mention']} [END_ENT] {r['right_context']}",
        }
        for r in records
    ]
    same = entities_of(linker.link(marked, top_k=8))
    assert [[e.entity_id for e in m] for m in same] == [[e.entity_id for e in m] for m in after]
    for ranked in after:  # probabilities: softmax over the retrieved top-k
        assert sum(e.probability for e in ranked) == pytest.approx(1.0, abs=1e-5)
        assert [e.probability for e in ranked] == sorted((e.probability for e in ranked), reverse=True)


def test_reranker_resorts_the_retrieved_candidates(dual_dir, tiny_bert_dir, zeshel, built_index, tmp_path):
    from hf_models import JointRerankerModel

    JointRerankerModel.from_encoder(str(tiny_bert_dir)).save_pretrained(tmp_path / "joint")
    records, _ = zeshel
    folder, retrieved = built_index
    linker = EntityLinker.from_pretrained(dual_dir, tmp_path / "joint", show_progress=False).load_index(
        folder
    )
    reranked = entities_of(linker.link(records[:2], top_k=8))
    for ranked, before in zip(reranked, retrieved, strict=False):
        assert {e.entity_id for e in ranked} == {e.entity_id for e in before}
        assert [e.score for e in ranked] == sorted((e.score for e in ranked), reverse=True)


def test_index_built_by_another_model_is_refused(tiny_bert_dir, built_index, tmp_path):
    from hf_models import DualEncoderModel, SumOfMaxModel

    folder, _ = built_index
    som_dir = save_retriever(SumOfMaxModel, tiny_bert_dir, tmp_path / "som")
    with pytest.raises(IndexMismatchError, match=r"built by model .*dual.*this linker's model is .*som"):
        EntityLinker.from_pretrained(som_dir, show_progress=False).load_index(folder)

    other = DualEncoderModel.from_encoder(str(tiny_bert_dir))  # same config, different weights
    with torch.no_grad():
        other.mention_encoder.embeddings.word_embeddings.weight.add_(0.01)
    linker = EntityLinker(other, EntityLinker.from_pretrained(som_dir).tokenizer, show_progress=False)
    with pytest.raises(IndexMismatchError, match="weights_sha256"):
        linker.load_index(folder)
    with pytest.raises(FileNotFoundError, match="not an entity index"):
        linker.load_index(tmp_path)


def test_bad_inputs_name_their_position(dual_dir, built_index):
    linker = EntityLinker.from_pretrained(dual_dir, show_progress=False).load_index(built_index[0])
    good = {"world": "starwars", "input": "the [START_ENT] jedi [END_ENT] order"}
    with pytest.raises(ValueError, match=r"input 1: \[START_ENT\] at character 4 is not closed"):
        linker.link([good, {"world": "starwars", "input": "the [START_ENT] jedi order"}])
    with pytest.raises(ValueError, match=r"input 0: the marked span at character 2 is empty"):
        linker.link([{"world": "starwars", "text": "a [START_ENT]  [END_ENT] b"}])
    with pytest.raises(ValueError, match=r"input 0: no 'world' given and the index has 4 worlds"):
        linker.link(["the [START_ENT] jedi [END_ENT] order"])
    with pytest.raises(ValueError, match=r"input 0: span 0 \[3, 99\) is not inside the text"):
        linker.link([{"world": "starwars", "text": "the jedi", "spans": [[3, 99]]}])
    with pytest.raises(ValueError, match=r"input 0: span 0: span start must be an integer"):
        linker.link([{"world": "starwars", "text": "the jedi", "spans": [[1.5, 4]]}])
    with pytest.raises(TypeError, match=r"link\(\) takes a list of inputs"):
        linker.link("the [START_ENT] jedi [END_ENT] order")
    with pytest.raises(TypeError, match="input 0: an input must be a string or a JSON object"):
        linker.link([42])
    # the model's marker strings in a text are read as text (featurize splits special tokens): one mention, linked
    (result,) = linker.link(
        [{"world": "starwars", "input": "the [unused0] jedi went to [START_ENT] king city [END_ENT]"}]
    )
    assert [m.surface for m in result.mentions] == ["king city"]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (
            '{"entity_id": "e1", "title": "B", "text": "b"}',
            r"kb.jsonl:3: duplicate entity_id 'e1' \(first at .*kb.jsonl:1\)",
        ),
        ('{"entity_id": "", "title": "B", "text": "b"}', r"kb.jsonl:3: entity_id is empty"),
        ('{"entity_id": null, "title": "B", "text": "b"}', r"kb.jsonl:3: entity_id is null"),
        ('{"entity_id": "e3", "title": "B"', r"kb.jsonl:3: malformed JSON"),
        ('{"entity_id": "e3", "title": "NOT-UTF8", "text": "b"}', r"kb.jsonl:3: not UTF-8 text"),
    ],
)
def test_bad_entity_ids_name_file_and_line(dual_dir, tmp_path, line, message):
    first = '{"entity_id": "e1", "title": "A", "text": "a"}\n\n'
    (tmp_path / "kb.jsonl").write_bytes((first + line + "\n").encode("utf-8").replace(b"NOT-UTF8", b"\xff"))
    linker = EntityLinker.from_pretrained(dual_dir, show_progress=False)
    with pytest.raises(ValueError, match=message):
        linker.build_index(tmp_path / "kb.jsonl")


def test_corrupt_index_files_are_named(dual_dir, built_index, tmp_path):
    import shutil

    folder = shutil.copytree(built_index[0], tmp_path / "kb")
    vectors = next((folder / "vectors").rglob("representation.safetensors"))
    vectors.write_bytes(b"not a safetensors file")
    linker = EntityLinker.from_pretrained(dual_dir, show_progress=False)
    with pytest.raises(ValueError, match=r"vectors"):
        linker.load_index(folder)
    shutil.rmtree(folder)
    folder = shutil.copytree(built_index[0], tmp_path / "kb")
    entity_file = next(
        (folder / "entities").glob("*.parquet")
    )  # rows reordered: ids no longer match the vectors
    import datasets

    rows = datasets.Dataset.from_parquet(str(entity_file))
    rows.select(list(reversed(range(len(rows))))).to_parquet(str(entity_file))
    with pytest.raises(ValueError, match=r"does not hold the entities of the vectors"):
        linker.load_index(folder)
    (folder / "manifest.json").write_text('{"model": ')
    with pytest.raises(ValueError, match=r"kb/manifest.json: malformed JSON"):
        linker.load_index(folder)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("format_version", 99, "format_version 99 (this code reads 1)"),
        ("max_length", "x", "max_length 'x'"),
        ("max_length", 4, "max_length 4"),
        ("store_dtype", "int8", "store_dtype 'int8'"),
        ("shortlist_size", 0, "shortlist_size 0"),
    ],
)
def test_invalid_manifest_fields_are_named(dual_dir, built_index, tmp_path, field, value, message):
    """Each once loaded silently and changed the scores (int8 store) or failed at link time naming no file."""
    import json
    import shutil

    folder = shutil.copytree(built_index[0], tmp_path / "kb")
    manifest = json.loads((folder / "manifest.json").read_text())
    (folder / "manifest.json").write_text(json.dumps({**manifest, field: value}))
    with pytest.raises(ValueError, match=r"kb/manifest\.json: invalid " + re.escape(message)):
        EntityLinker.from_pretrained(dual_dir, show_progress=False).load_index(folder)


def test_index_settings_win_over_the_linker_s_and_say_so(dual_dir, built_index, caplog):
    linker = EntityLinker.from_pretrained(dual_dir, show_progress=False, max_length=40, backend="faiss")
    with caplog.at_level("WARNING"):
        linker.load_index(built_index[0])
    said = " ".join(r.getMessage() for r in caplog.records)
    assert (
        "max_length=64: using it instead of 40" in said
        and "backend='exact': using it instead of 'faiss'" in said
    )
    assert (linker.max_length, linker.index.backend) == (64, "exact")
    caplog.clear()
    with caplog.at_level("WARNING"):  # nothing chosen by the caller: the index's settings apply silently
        EntityLinker.from_pretrained(dual_dir, show_progress=False).load_index(built_index[0])
    assert "using it instead of" not in " ".join(r.getMessage() for r in caplog.records)


def test_tokenizer_that_no_longer_lowercases_is_refused(dual_dir, built_index):
    linker = EntityLinker.from_pretrained(dual_dir, show_progress=False)
    linker.tokenizer.do_lower_case = False  # "KING City" would become [UNK] [UNK] against lowercased vectors
    with pytest.raises(IndexMismatchError, match="lowercase"):
        linker.load_index(built_index[0])


def test_empty_knowledge_base_is_refused(dual_dir, tmp_path):
    import datasets

    linker = EntityLinker.from_pretrained(dual_dir, show_progress=False)
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(ValueError, match="empty knowledge base"):
        linker.build_index(tmp_path / "empty.jsonl")
    empty = datasets.Dataset.from_dict({"entity_id": [], "title": [], "text": []})
    with pytest.raises(ValueError, match="empty knowledge base"):
        linker.build_index(empty)
    with pytest.raises(ValueError, match="no entity index"):
        linker.link(["the [START_ENT] jedi [END_ENT] order"])


def test_dictionary_detection_uses_the_texts_own_world(dual_dir, zeshel, built_index):
    _, entities = zeshel
    linker = EntityLinker.from_pretrained(dual_dir, show_progress=False).load_index(built_index[0])
    titles = {
        w: [t for t, x in zip(entities["title"], entities["world"], strict=True) if x == w]
        for w in linker.worlds
    }
    own, other = titles["starwars"][0], titles["military"][0]
    text = f"first {own} then {other} ."
    (result,) = linker.link([{"world": "starwars", "text": text}], top_k=2)
    assert [m.surface for m in result.mentions] == [
        own
    ]  # military titles are not looked for in a starwars text
    assert all(e.world == "starwars" for m in result.mentions for e in m.entities)
