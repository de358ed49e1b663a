"""Alias candidates and priors in evaluation (hf_models/index/alias_metrics.py): known scores -> known accuracies,
the prior flipping decisions, the weight tuned on one split and applied to another, the one scoring path shared
with rerank, and a recipe run on the wsd_dev slice reporting the alias metrics."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest
import torch

from data_scripts.aliases import AliasTable
from hf_models.index.alias_metrics import (
    alias_accuracy,
    alias_candidates,
    alias_keys,
    alias_metrics,
    alias_mfs_accuracy,
    alias_prior_accuracy,
    alias_recall,
    evaluate_alias_splits,
    predict,
    tune_prior_weight,
)
from hf_models.index.evaluation import Ranking, candidate_scores, rerank
from hf_models.index.tables import EntityTable, MentionTable

from .conftest import REPO_ROOT

INF = float("-inf")
# 4 mentions, up to 3 candidates (global entity rows, -1 pads); mention 2 has no alias candidates
ROWS = torch.tensor([[0, 1, 2], [3, 4, -1], [-1, -1, -1], [5, 6, -1]])
GOLD = torch.tensor([1, 3, 7, 6])
SCORES = torch.tensor([[2.0, 1.5, 0.0], [0.0, 1.0, INF], [INF, INF, INF], [0.9, 1.0, INF]])
PRIORS = torch.tensor(
    [
        [math.log(0.1), math.log(0.8), math.log(0.1)],  # the prior prefers the gold (row 1)
        [math.log(0.9), math.log(0.1), INF],  # ... and here (row 3)
        [INF, INF, INF],
        [math.log(0.5), math.log(0.5), INF],  # a tie: the most-frequent baseline takes the first (wrong)
    ]
)


def test_known_scores_give_known_accuracies():
    assert alias_recall(ROWS, GOLD) == 75.0  # mention 2 has no candidates
    assert predict(SCORES, ROWS).tolist() == [0, 4, -1, 6]
    assert alias_accuracy(SCORES, ROWS, GOLD) == 25.0  # only mention 3; no candidates counts wrong
    assert alias_prior_accuracy(SCORES, PRIORS, ROWS, GOLD, 0.0) == 25.0  # weight 0: the retriever alone
    assert alias_prior_accuracy(SCORES, PRIORS, ROWS, GOLD, 1.0) == 75.0  # the prior flips mentions 0 and 1
    assert alias_prior_accuracy(SCORES, PRIORS, ROWS, GOLD, 0.25) == 50.0  # only mention 0 flips
    assert alias_mfs_accuracy(PRIORS, ROWS, GOLD) == 50.0  # mentions 0 and 1; mention 3's tie -> first, wrong


def test_tuning_picks_the_best_weight_and_the_smaller_on_ties():
    # 0 -> 25, 0.25 -> 50, then 75 from 0.5 on: the smallest of the best
    assert tune_prior_weight(SCORES, PRIORS, ROWS, GOLD) == 0.5
    assert tune_prior_weight(SCORES, PRIORS, ROWS, GOLD, grid=(8, 1, 0.25)) == 1.0
    assert tune_prior_weight(SCORES, PRIORS, ROWS, GOLD, grid=(0.0,)) == 0.0
    with pytest.raises(ValueError, match="empty grid"):
        tune_prior_weight(SCORES, PRIORS, ROWS, GOLD, grid=())
    metrics = alias_metrics(SCORES, PRIORS, ROWS, GOLD, 0.5)
    assert metrics == {
        "alias_recall": 75.0,
        "alias_accuracy": 25.0,
        "alias_prior_accuracy": 75.0,
        "alias_mfs_accuracy": 50.0,
        "prior_weight": 0.5,
        "alias_num_candidates": 7 / 4,
    }


def test_no_candidates_anywhere_counts_every_mention_wrong():
    rows, gold = torch.full((3, 0), -1), torch.tensor([0, 1, 2])
    empty = torch.full((3, 0), INF)
    assert predict(empty, rows).tolist() == [-1, -1, -1]
    assert alias_recall(rows, gold) == alias_accuracy(empty, rows, gold) == 0.0
    assert alias_prior_accuracy(empty, empty, rows, gold, 1.0) == alias_mfs_accuracy(empty, rows, gold) == 0.0


# ------------------------------------------------------------------------- tables, scoring, splits
def entity_table() -> EntityTable:
    """7 entities of world w (e0..e6) and one of world v; token 1 of entity r is 10 + r (the fake model's score)."""
    ids = [f"e{r}" for r in range(7)] + ["v0"]
    input_ids = torch.tensor([[1, 10 + r, 2] for r in range(len(ids))])
    return EntityTable(ids, ["w"] * 7 + ["v"], ids, input_ids, torch.ones_like(input_ids))


def mention_table(surfaces: list[str], golds: list[int], keys: list[str] | None = None) -> MentionTable:
    n = len(surfaces)
    input_ids = torch.tensor([[1, 5, 2]] * n)
    return MentionTable(
        mention_ids=[f"m{i}" for i in range(n)],
        worlds=["w"] * n,
        categories=[""] * n,
        surfaces=surfaces,
        contexts=surfaces,
        gold_rows=torch.tensor(golds),
        input_ids=input_ids,
        attention_mask=torch.ones_like(input_ids),
        alias_keys=keys,
    )


class EntityTokenModel(torch.nn.Module):
    """Scores a candidate by its entity's second token id (a known score per entity row: 10 + row)."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))

    def forward(self, **inputs):
        return SimpleNamespace(scores=inputs["entity_input_ids"][..., 1].float() + self.weight)


TABLE = AliasTable.from_rows(
    [
        {"alias": "Bank", "world": "w", "candidates": ["e2", "e1"], "counts": [9, 1]},
        {"alias": "point_out", "world": "w", "candidates": ["e3", "e4", "e5"], "counts": None},
    ]
)


def test_alias_candidates_rows_priors_and_keys():
    mentions = mention_table(["BANK", "points", "River"], [1, 3, 0], keys=None)
    assert alias_keys(mentions) == ["bank", "points", "river"]  # no alias column: the normalized surface
    candidates = alias_candidates(TABLE, mentions, entity_table())
    assert candidates.rows.tolist() == [[2, 1], [-1, -1], [-1, -1]]  # C = the most candidates of a mention
    assert candidates.log_priors[0, :2].tolist() == pytest.approx([math.log(10 / 12), math.log(2 / 12)])
    keyed = alias_candidates(
        TABLE, mention_table(["banks", "points"], [1, 3], ["bank", "point out"]), entity_table()
    )
    assert keyed.rows.tolist() == [[2, 1, -1], [3, 4, 5]]  # the recorded keys win over the surfaces
    assert keyed.log_priors[1].tolist() == pytest.approx([-math.log(3)] * 3)  # no counts: uniform
    assert alias_keys(mention_table(["Bank", "x"], [1, 0], ["", "point out"])) == ["bank", "point out"]
    wrong = AliasTable.from_rows([{"alias": "bank", "world": "w", "candidates": ["e1", "e99"]}])
    with pytest.raises(
        ValueError, match=r"candidate 'e99' of alias 'bank' \(world 'w', mention 'm0'\) is not in"
    ):
        alias_candidates(wrong, mentions, entity_table())
    elsewhere = AliasTable.from_rows([{"alias": "bank", "world": "w", "candidates": ["v0"]}])
    with pytest.raises(ValueError, match="candidate 'v0' .* is in world 'v'"):
        alias_candidates(elsewhere, mentions, entity_table())


def test_candidate_scores_keep_candidate_order_and_rerank_sorts_them():
    entities, mentions = entity_table(), mention_table(["a", "b"], [0, 3])
    rows = torch.tensor([[4, 0, -1], [1, 6, 3]])
    scores = candidate_scores(EntityTokenModel(), rows, mentions, entities, cross=False, batch_size=1)
    assert scores.tolist() == [[14.0, 10.0, INF], [11.0, 16.0, 13.0]]
    ranked = rerank(EntityTokenModel(), Ranking(rows, torch.zeros(2, 3)), mentions, entities, cross=False)
    assert ranked.rows.tolist() == [[4, 0, -1], [6, 3, 1]] and ranked.scores[1].tolist() == [16.0, 13.0, 11.0]
    assert candidate_scores(
        EntityTokenModel(), torch.full((2, 0), -1), mentions, entities, cross=False
    ).shape == (2, 0)


def test_weight_tuned_on_the_eval_split_is_applied_unchanged_to_test():
    # the model prefers e2 for "bank" (score 12 vs 11); gold e1 wins only with the prior... which prefers e2 too
    # (count 9): so the prior never helps here and weight 0 stays; "point out" candidates: e5 scores best.
    eval_split = mention_table(["bank", "point out"], [2, 5])
    test_split = mention_table(["bank", "nothing"], [1, 0])
    results = evaluate_alias_splits(
        EntityTokenModel(), TABLE, {"val": eval_split, "test": test_split}, entity_table(), "val", cross=False
    )
    assert results["val"]["alias_accuracy"] == 100.0 and results["val"]["prior_weight"] == 0.0
    assert results["test"]["prior_weight"] == 0.0
    assert results["test"]["alias_accuracy"] == 0.0 and results["test"]["alias_recall"] == 50.0
    assert results["test"]["alias_mfs_accuracy"] == 0.0
    # a table whose counts favour the gold of the eval split: a positive weight is chosen and carried to test
    favour = AliasTable.from_rows(
        [{"alias": "bank", "world": "w", "candidates": ["e2", "e1"], "counts": [0, 100]}]
    )
    results = evaluate_alias_splits(
        EntityTokenModel(), favour, {"val": mention_table(["bank"], [1]), "test": test_split}, entity_table(),
        "val", cross=False,
    )  # fmt: skip
    assert results["val"]["prior_weight"] == 0.25 and results["val"]["alias_prior_accuracy"] == 100.0
    assert results["test"]["prior_weight"] == 0.25 and results["test"]["alias_prior_accuracy"] == 50.0
    without = evaluate_alias_splits(
        EntityTokenModel(), favour, {"test": test_split}, entity_table(), None, cross=False
    )
    assert without["test"]["prior_weight"] == 0.0


# ------------------------------------------------------------------------- a recipe on the wsd_dev slice
def test_recipe_on_the_wsd_dev_slice_reports_alias_metrics(tmp_path, tiny_bert_dir):
    from hf_models.recipes.recipe import print_metrics, run_retriever_recipe

    from .test_data_jsonl import _convert
    from .test_recipes import COMMON

    data = tmp_path / "wsd_dev"
    _convert(data)
    results = run_retriever_recipe(
        ["--config", str(REPO_ROOT / "recipes/configs/demo_som.yaml"), "--encoder", str(tiny_bert_dir),
         "--dataset_dir", str(data), "--output_dir", str(tmp_path / "out"), *COMMON,
         "--eval_split", "val", "--test_split", "train", "--max_train_mentions", "8", "--num_candidates", "2", "--eval_strategy", "no",
         "--save_strategy", "no", "--load_best_model_at_end", "false"]
    )  # fmt: skip
    assert set(results) == {"val", "train"}
    for metrics in results.values():
        assert {"alias_recall", "alias_accuracy", "alias_prior_accuracy", "alias_mfs_accuracy"} <= set(
            metrics
        )
        assert 0.0 <= metrics["alias_accuracy"] <= metrics["alias_recall"] <= 100.0
    assert (
        results["val"]["alias_recall"] == 100.0
    )  # the slice keeps every dev gold among its alias candidates
    assert (
        results["val"]["prior_weight"] == results["train"]["prior_weight"]
    )  # tuned on val, applied unchanged
    print_metrics(results)


def test_print_metrics_without_alias_metrics_is_unchanged(capsys):
    from hf_models.recipes.recipe import print_metrics

    print_metrics({"val": {"recall@64": 50.0, "recall@1": 10.0, "num_mentions": 4.0}})
    assert "| split | recall@64 | recall@1 | num_mentions |" in capsys.readouterr().out


def test_alias_negative_pool_trains_from_the_alias_table_and_needs_one(tmp_path, tiny_bert_dir):
    """--negative_pool alias draws from the training mentions' alias candidates; without an alias table the
    recipe stops before training, naming the flag."""
    from hf_models.recipes.recipe import run_retriever_recipe

    from .test_data_jsonl import _convert
    from .test_recipes import COMMON

    data = tmp_path / "wsd_dev"
    _convert(data)
    argv = ["--config", str(REPO_ROOT / "recipes/configs/kb_dual.yaml"), "--encoder", str(tiny_bert_dir),
            "--dataset_dir", str(data), *COMMON, "--eval_split", "val", "--test_split", "", "--num_train_epochs", "1",
            "--negative_pool", "alias", "--num_candidates", "2", "--eval_strategy", "no", "--save_strategy", "no",
            "--load_best_model_at_end", "false"]  # fmt: skip
    results = run_retriever_recipe([*argv, "--output_dir", str(tmp_path / "out")])
    assert "alias_accuracy" in results["val"]
    (data / "aliases.parquet").unlink()
    manifest = json.loads((data / "manifest.json").read_text())
    manifest.pop("aliases", None)
    (data / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="--negative_pool alias needs an alias table"):
        run_retriever_recipe([*argv, "--output_dir", str(tmp_path / "out2")])
