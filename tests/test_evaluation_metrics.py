"""Metric definitions (Section 6.1): recall micro, accuracies macro over worlds, per category."""

import pytest

from hf_models.index.evaluation import linking_metrics


def test_linking_metrics_by_hand():
    gold = ["a", "b", "c", "d"]
    ranked = [["a", "x"], ["x", "b"], ["x", "y"], ["d"]]
    worlds = ["w1", "w1", "w2", "w2"]
    categories = ["LOW_OVERLAP", "HIGH_OVERLAP", "LOW_OVERLAP", ""]
    m = linking_metrics(gold, ranked, worlds, categories, ks=(1, 2))
    assert m["recall@1"] == pytest.approx(50.0)
    assert m["recall@2"] == pytest.approx(75.0)
    # w1: top1 1/2, w2: top1 1/2 -> macro 50; normalized: w1 1/2 (both retrieved), w2 1/1 (only d retrieved)
    assert m["unnormalized_accuracy"] == pytest.approx(50.0)
    assert m["normalized_accuracy"] == pytest.approx(75.0)
    assert m["LOW_OVERLAP/recall@2"] == pytest.approx(50.0)
    assert m["LOW_OVERLAP/accuracy"] == pytest.approx(50.0)
    assert m["HIGH_OVERLAP/accuracy"] == pytest.approx(0.0)
    assert "/accuracy" not in "".join(k for k in m if k.startswith("/"))  # empty category is not reported


def test_macro_differs_from_micro():
    gold = ["a"] * 3 + ["b"]
    ranked = [["a"]] * 3 + [["z"]]
    worlds = ["big"] * 3 + ["small"]
    m = linking_metrics(gold, ranked, worlds, ks=(1,))
    assert m["recall@1"] == pytest.approx(75.0)  # micro
    assert m["unnormalized_accuracy"] == pytest.approx(50.0)  # macro: (100 + 0) / 2


def test_unretrieved_gold_counts_as_wrong_not_dropped():
    m = linking_metrics(["a", "b"], [["a"], []], ["w", "w"], ks=(1,))
    assert m["unnormalized_accuracy"] == pytest.approx(50.0)
    assert m["normalized_accuracy"] == pytest.approx(100.0)
    assert m["num_mentions"] == 2


def test_length_mismatch_is_an_error():
    with pytest.raises(ValueError, match="differ in length"):
        linking_metrics(["a"], [], ["w"])


def test_normalized_accuracy_counts_golds_in_the_top_k_only():
    """Section 6.1: normalized accuracy considers a mention only if its gold is in the top-64 (here top-2)
    candidates; a longer list once counted golds found anywhere in it."""
    m = linking_metrics(["a", "b"], [["a", "x", "y"], ["x", "y", "b"]], ["w", "w"], ks=(1, 2), normalized_k=2)
    assert m["recall@2"] == pytest.approx(50.0)
    assert m["normalized_accuracy"] == pytest.approx(100.0)  # only "a" is in its top 2: ranked first
    # the recall ks do not move the denominator (a reranker reported at k = 1 still normalizes over its 64)
    one = linking_metrics(["a", "b"], [["a", "x"], ["x", "b"]], ["w", "w"], ks=(1,))
    assert one["normalized_accuracy"] == pytest.approx(50.0)
