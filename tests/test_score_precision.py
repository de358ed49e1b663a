"""Length-sorted, trimmed all-pairs scoring and bf16 scoring with fp32 accumulation (issue 13)."""

import pytest
import torch

from hf_models.analysis.precision import exactness_report, first_draw_distribution
from hf_models.index.entity_index import EntityIndex
from hf_models.modeling.all_pairs import all_pairs_score
from hf_models.modeling.modeling_retriever import MODEL_BY_ARCHITECTURE


def varied_side(rows: int, width: int, hidden: int, generator, min_len: int = 1):
    """Random vectors [rows, width, hidden] with random prefix lengths; the padding holds garbage (not zeros)."""
    vectors = torch.randn(rows, width, hidden, generator=generator, dtype=torch.float64) * 0.3
    lengths = torch.randint(min_len, width + 1, (rows,), generator=generator)
    return vectors, torch.arange(width)[None, :] < lengths[:, None]


def reference_scores(query, qmask, key, kmask):
    """Sum-of-max pair by pair, masks applied by selection (no padding ever enters a product)."""
    out = torch.zeros(query.shape[0], key.shape[0], dtype=torch.float64)
    for n in range(query.shape[0]):
        for e in range(key.shape[0]):
            if kmask[e].any():
                out[n, e] = (query[n][qmask[n]] @ key[e][kmask[e]].T).amax(dim=1).sum()
    return out


@pytest.mark.parametrize("chunk_size", [None, 1, 3])
def test_sorted_trimmed_scoring_equals_pairwise_reference_in_input_order(chunk_size):
    generator = torch.Generator().manual_seed(3)
    query, qmask = varied_side(4, 7, 5, generator)
    key, kmask = varied_side(11, 9, 5, generator, min_len=0)  # includes keys with no real column
    kmask[2] = False
    qmask[:, 5:] = False  # every query shorter than its padded width: the query side is trimmed
    got = all_pairs_score(query, qmask, key, kmask, "hard", chunk_size=chunk_size)
    torch.testing.assert_close(got, reference_scores(query, qmask, key, kmask), atol=1e-10, rtol=1e-10)
    assert torch.equal(got[:, 2], torch.zeros(4, dtype=torch.float64))


def test_bf16_scores_accumulate_in_fp32_within_measured_bounds():
    generator = torch.Generator().manual_seed(0)
    query, qmask = varied_side(16, 16, 64, generator, min_len=4)
    key, kmask = varied_side(300, 24, 64, generator, min_len=2)
    query, key = query.float(), key.float()
    reference = all_pairs_score(query, qmask, key, kmask, "hard")
    low = all_pairs_score(query.bfloat16(), qmask, key.bfloat16(), kmask, "hard")
    assert low.dtype == torch.float32  # the column maxima are summed in fp32
    gold = torch.randint(0, 300, (16,), generator=generator)
    report = exactness_report(reference, low, gold, k=10)
    # measured 0.034 / 26.8, overlap 1.0, TV 0.0063 (see benchmarks/README.md for the real-model numbers)
    assert report["max_abs_diff"] <= 0.005 * report["reference_scale"]
    assert report["topk_overlap"] >= 0.9
    assert report["first_draw_tv"] <= 0.02
    summed_in_bf16 = (low.bfloat16().float() - reference).abs().max()  # what a bf16 sum would round to
    assert report["max_abs_diff"] < float(summed_in_bf16) * 2


def test_exactness_report_by_hand():
    reference = torch.tensor([[3.0, 1.0, 0.0]])
    report = exactness_report(reference, torch.tensor([[3.0, 0.0, 1.0]]), torch.tensor([0]), k=1)
    assert report["max_abs_diff"] == 1.0 and report["topk_overlap"] == 1.0
    p = first_draw_distribution(reference, torch.tensor([0]))[0]
    assert p[0] == 0 and torch.isclose(p[1], torch.tensor(1 / (1 + torch.e**-1), dtype=torch.float64))
    assert report["first_draw_tv"] == pytest.approx(float(p[1] - p[2]))
    with pytest.raises(ValueError, match="one shape"):
        exactness_report(reference, reference[:, :2])


def test_index_scores_in_the_requested_dtype(tiny_bert_dir, tiny_el):
    _, entities, splits = tiny_el
    torch.manual_seed(0)
    model = MODEL_BY_ARCHITECTURE["som"].from_encoder(str(tiny_bert_dir)).eval()
    val = splits["val"]
    scores = {}
    for dtype in ("float32", "bfloat16"):
        index = EntityIndex(model, encode_dtype="float32", score_dtype=dtype, show_progress=False)
        assert index.score_dtype == getattr(torch, dtype)
        index.add_world("gamma", *entities.world_subset("gamma"))
        mentions = index.encode_mentions(val.input_ids, val.attention_mask)
        scores[dtype] = index.score("gamma", mentions)
        top, _ = index.search("gamma", mentions, 5)
        torch.testing.assert_close(top, scores[dtype].topk(5).values)
    report = exactness_report(scores["float32"], scores["bfloat16"], k=5)
    assert report["max_abs_diff"] <= 0.01 * report["reference_scale"] and report["topk_overlap"] >= 0.8
    auto = EntityIndex(model, encode_dtype="bfloat16", show_progress=False)
    assert auto.score_dtype == torch.bfloat16  # multi-vector: follows the encode dtype
    dual = MODEL_BY_ARCHITECTURE["dual"].from_encoder(str(tiny_bert_dir))
    assert EntityIndex(dual, encode_dtype="bfloat16", show_progress=False).score_dtype == torch.float32
    with pytest.raises(ValueError, match="score_dtype"):
        EntityIndex(model, score_dtype="int8")
