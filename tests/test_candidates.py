"""App. B candidates: Zeshel's released TF-IDF candidates and BM25 candidates, in the retrievers' file format."""

import json

import pytest
from transformers import AutoTokenizer

from data_scripts import bm25
from data_scripts.featurize import featurize_entities, featurize_mentions, prepare_tokenizer
from data_scripts.io import load_processed, write_processed
from data_scripts.zeshel import main as zeshel_main
from data_scripts.zeshel import read_zeshel, tfidf_candidate_records
from hf_models.index.evaluation import read_candidate_file
from hf_models.index.tables import EntityTable, MentionTable
from hf_models.recipes.recipe import fixed_negatives, run_reranker_recipe

from .conftest import REPO_ROOT, make_tiny_tables


def test_tfidf_candidates_convert_and_load(tmp_path, zeshel_sample_dir, tiny_bert_dir):
    processed, candidates = tmp_path / "zeshel", tmp_path / "tfidf"
    zeshel_main(
        ["--zeshel_dir", str(zeshel_sample_dir), "--output_dir", str(processed), "--splits", "train",
         "--tfidf_candidates_dir", str(candidates)]
    )  # fmt: skip
    released = [json.loads(line) for line in (zeshel_sample_dir / "tfidf_candidates" / "train.json").open()]
    written = [json.loads(line) for line in (candidates / "train.jsonl").open()]
    assert [r["mention_id"] for r in written] == [r["mention_id"] for r in released]
    for mine, theirs in zip(written, released, strict=True):
        assert mine["candidates"] == theirs["tfidf_candidates"]  # same ids, same order (best first)
        assert mine["scores"] == sorted(mine["scores"], reverse=True)
    # the reranker recipe's reader resolves them against the processed tables
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert_dir)
    prepare_tokenizer(tokenizer)
    mentions, entities = load_processed(processed)
    table = EntityTable.from_dataset(featurize_entities(entities, tokenizer, max_length=16))
    train = MentionTable.from_dataset(featurize_mentions(mentions["train"], tokenizer, max_length=16), table)
    ranking = read_candidate_file(candidates / "train.jsonl", train, table)
    assert ranking.rows.shape == (4, len(released[0]["tfidf_candidates"]))
    assert fixed_negatives(ranking, train, 3).ids.shape == (4, 3)


def test_tfidf_unknown_candidate_is_named(tmp_path, zeshel_sample_dir):
    mentions, entities = read_zeshel(zeshel_sample_dir, splits=("train",))
    world_of = dict(zip(entities["entity_id"], entities["world"], strict=True))
    first = json.loads((zeshel_sample_dir / "tfidf_candidates" / "train.json").open().readline())
    del world_of[first["tfidf_candidates"][0]]
    with pytest.raises(ValueError, match=r"train.json:1: mention .* unknown candidate"):
        tfidf_candidate_records(zeshel_sample_dir, "train", mentions["train"], world_of)


def _rewrite_tfidf(source, target, edit) -> None:
    """A copy of the release's train candidates with ``edit(records)`` applied."""
    records = [json.loads(line) for line in (source / "tfidf_candidates" / "train.json").open()]
    (target / "tfidf_candidates").mkdir(parents=True)
    edit(records)
    (target / "tfidf_candidates" / "train.json").write_text("".join(json.dumps(r) + "\n" for r in records))


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda rs: rs.append({**rs[0], "tfidf_candidates": rs[0]["tfidf_candidates"][:1]}),
         r"train\.json:5: mention '04118548A2FEB09B' already has candidates on line 1"),
        (lambda rs: rs[0]["tfidf_candidates"].append(rs[0]["tfidf_candidates"][0]),
         r"train\.json:1: mention .* lists candidate .* more than once"),
        (lambda rs: rs[0]["tfidf_candidates"].append(rs[2]["tfidf_candidates"][0]),
         r"train\.json:1: mention .* is in world 'military' but candidate .* is in world"),
    ],
    ids=["duplicate-line", "duplicate-candidate", "other-world"],
)  # fmt: skip
def test_tfidf_candidates_must_be_one_line_of_distinct_same_world_entities(
    tmp_path, zeshel_sample_dir, edit, message
):
    mentions, entities = read_zeshel(zeshel_sample_dir, splits=("train",))
    world_of = dict(zip(entities["entity_id"], entities["world"], strict=True))
    _rewrite_tfidf(zeshel_sample_dir, tmp_path, edit)
    with pytest.raises(ValueError, match=message):
        tfidf_candidate_records(tmp_path, "train", mentions["train"], world_of)


def test_bm25_candidates_rank_the_surface_match_first():
    mentions, entities = make_tiny_tables({"alpha": "train"}, entities_per_world=12, mentions_per_world=10)
    records = bm25.bm25_candidates(mentions["train"], entities, k=5)
    words = {
        e: set(f"{t} {x}".split())
        for e, t, x in zip(entities["entity_id"], entities["title"], entities["text"], strict=True)
    }
    golds_found = 0
    for record, surface, gold in zip(
        records, mentions["train"]["mention"], mentions["train"]["label_id"], strict=True
    ):
        assert len(record["candidates"]) == 5 and record["world"] == "alpha"
        assert record["scores"] == sorted(record["scores"], reverse=True)
        if record["scores"][0] > 0:  # a scored query word: the best entity contains it
            assert surface in words[record["candidates"][0]]
        golds_found += gold in record["candidates"]
    assert golds_found >= 5  # the surface is a word of the gold's title: BM25 finds most golds in the top 5


def test_bm25_candidate_files_train_the_reranker(tmp_path, tiny_bert_dir):
    """BM25 candidate files (written by the CLI) are the reranker recipe's --candidates_dir input."""
    mentions, entities = make_tiny_tables(
        {"alpha": "train", "beta": "train", "gamma": "val", "delta": "test"}
    )
    write_processed(mentions, entities, tmp_path / "data")
    bm25.main(["--dataset_dir", str(tmp_path / "data"), "--output_dir", str(tmp_path / "bm25"), "--k", "6"])
    for split, count in (("train", 20), ("val", 10), ("test", 10)):
        lines = (tmp_path / "bm25" / f"{split}.jsonl").read_text().splitlines()
        assert len(lines) == count and len(json.loads(lines[0])["candidates"]) == 6
    results = run_reranker_recipe(
        ["--config", str(REPO_ROOT / "recipes/configs/zeshel_rerank.yaml"), "--encoder", str(tiny_bert_dir),
         "--dataset_dir", str(tmp_path / "data"), "--candidates_dir", str(tmp_path / "bm25"),
         "--output_dir", str(tmp_path / "reranker"), "--max_length", "24", "--num_candidates", "4",
         "--num_train_epochs", "1", "--max_train_mentions", "8", "--use_cpu", "true", "--bf16", "false",
         "--report_to", "none", "--disable_tqdm", "true", "--save_strategy", "no", "--eval_strategy", "no",
         "--load_best_model_at_end", "false", "--eval_top_k", "6"]
    )  # fmt: skip
    assert set(results) == {"val", "test"}
    for metrics in results.values():
        assert metrics["unnormalized_accuracy"] <= metrics["recall@6"] + 1e-9
