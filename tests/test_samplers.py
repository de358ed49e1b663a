"""Negative samplers (Section 6.3; eq. 8): validity, determinism, distributions, errors."""

from __future__ import annotations

import math

import pytest
import torch
from scipy.stats import chisquare

from hf_models.training.samplers import (
    STRATEGIES,
    hard_negatives,
    mixed_negatives,
    random_negatives,
    sample_negatives,
    topk_negatives,
)

N, E, K1 = 12, 40, 7  # rows, entities, K - 1


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture
def scores() -> torch.Tensor:
    return torch.randn(N, E, generator=_gen(123)) * 2.0  # [N, E]


@pytest.fixture
def gold() -> torch.Tensor:
    return torch.randint(0, E, (N,), generator=_gen(7))


def _check_valid(ids: torch.Tensor, gold: torch.Tensor, k: int, num_entities: int) -> None:
    assert ids.shape == (gold.shape[0], k) and ids.dtype == torch.long
    assert (ids != gold[:, None]).all(), "gold among negatives"
    assert ((ids >= 0) & (ids < num_entities)).all()
    assert all(len(set(row)) == k for row in ids.tolist()), "duplicate negatives"


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_valid_and_deterministic(strategy, scores, gold):
    first = sample_negatives(strategy, scores, gold, K1, _gen(1), hard_fraction=0.4)
    again = sample_negatives(strategy, scores, gold, K1, _gen(1), hard_fraction=0.4)
    other = sample_negatives(strategy, scores, gold, K1, _gen(2), hard_fraction=0.4)
    _check_valid(first.ids, gold, K1, E)
    assert first.log_probs.shape == (N, K1) and torch.isfinite(first.log_probs).all()
    assert torch.equal(first.ids, again.ids) and torch.equal(first.log_probs, again.log_probs)
    if strategy != "topk":
        assert not torch.equal(first.ids, other.ids)


def test_random_without_scores_huge_label_space():
    gold = torch.tensor([0, 5_899_999, 3_000_000])
    out = sample_negatives("random", None, gold, 63, _gen(), num_entities=5_900_000)
    _check_valid(out.ids, gold, 63, 5_900_000)
    assert torch.allclose(out.log_probs, torch.full((3, 63), -math.log(5_899_999)))


def test_random_all_entities_when_k_equals_e_minus_one(gold):
    out = random_negatives(gold, E - 1, _gen(), num_entities=E)
    _check_valid(out.ids, gold, E - 1, E)  # every non-gold entity exactly once


def test_mixed_counts_and_log_probs(scores, gold):
    p, num_hard = 0.4, round(0.4 * K1)
    out = mixed_negatives(scores, gold, K1, _gen(), hard_fraction=p)
    _check_valid(out.ids, gold, K1, E)
    soft = scores.scatter(1, gold[:, None], -math.inf).softmax(1)  # hard proposal over non-gold
    q = num_hard / K1
    expected = (q * soft.gather(1, out.ids) + (1 - q) / (E - 1)).log()
    assert torch.allclose(out.log_probs, expected, atol=1e-5)
    # hard_fraction 1 is the hard sampler, 0 the uniform one (same draws for the same seed)
    assert torch.equal(
        mixed_negatives(scores, gold, K1, _gen(3), 1.0).ids, hard_negatives(scores, gold, K1, _gen(3)).ids
    )
    assert torch.allclose(
        mixed_negatives(scores, gold, K1, _gen(3), 0.0).log_probs, torch.tensor(-math.log(E - 1))
    )


def test_mixed_hard_part_comes_from_gumbel_top_k(scores, gold):
    """With sharply peaked scores the hard part must be the top entities, the random part anything else."""
    peaked = scores * 1000.0
    num_hard = round(0.5 * K1)
    out = mixed_negatives(peaked, gold, K1, _gen(), hard_fraction=0.5)
    top = topk_negatives(peaked, gold, num_hard).ids
    assert torch.equal(out.ids[:, :num_hard].sort(1).values, top.sort(1).values)


def test_topk_equals_sorted_greedy(scores, gold):
    out = topk_negatives(scores, gold, K1)
    for row in range(N):
        ranked = [e for e in scores[row].argsort(descending=True).tolist() if e != int(gold[row])]
        assert out.ids[row].tolist() == ranked[:K1]
    expected = scores.scatter(1, gold[:, None], -math.inf).log_softmax(1).gather(1, out.ids)
    assert torch.allclose(out.log_probs, expected, atol=1e-5)


def test_hard_log_probs_are_softmax_over_non_gold(scores, gold):
    out = hard_negatives(scores, gold, K1, _gen())
    expected = scores.scatter(1, gold[:, None], -math.inf).log_softmax(1).gather(1, out.ids)
    assert torch.allclose(out.log_probs, expected, atol=1e-5)


def _first_draw_counts(sample_fn, num_draws: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Counts of the FIRST negative over many independent rows of one score vector (entity 0 = gold)."""
    row = torch.linspace(-2.0, 2.0, 10)  # [E=10]
    scores = row[None].expand(num_draws, -1)  # [num_draws, 10]
    gold = torch.zeros(num_draws, dtype=torch.long)
    first = sample_fn(scores, gold)[:, 0]
    counts = torch.bincount(first, minlength=10)[1:].double()  # non-gold entities 1..9
    expected = row[1:].double().softmax(0) * num_draws
    return counts, expected


def test_hard_first_draw_matches_softmax_chi_square():
    counts, expected = _first_draw_counts(lambda s, g: hard_negatives(s, g, 3, _gen(5)).ids, 20_000)
    assert chisquare(counts.numpy(), expected.numpy()).pvalue > 1e-3
    # the same test rejects uniform sampling, so it has power
    uniform, _ = _first_draw_counts(lambda s, g: random_negatives(g, 3, _gen(5), num_entities=10).ids, 20_000)
    assert chisquare(uniform.numpy(), expected.numpy()).pvalue < 1e-6


def test_random_first_draw_is_uniform_chi_square():
    gold = torch.zeros(20_000, dtype=torch.long)
    ids = random_negatives(gold, 3, _gen(9), num_entities=10).ids  # [20000, 3]
    for column in range(3):  # every slot uniform over the 9 non-gold entities (random order)
        counts = torch.bincount(ids[:, column], minlength=10)[1:].numpy()
        assert chisquare(counts).pvalue > 1e-3


def test_candidate_mask_is_respected(scores, gold):
    mask = torch.rand(N, E, generator=_gen(11)) < 0.5
    mask[torch.arange(N), gold] = False  # the gold need not be allowed
    for strategy in STRATEGIES:
        out = sample_negatives(strategy, scores, gold, 5, _gen(), candidate_mask=mask)
        _check_valid(out.ids, gold, 5, E)
        assert mask.gather(1, out.ids).all(), strategy
    allowed = mask.sum(1)
    out = sample_negatives("random", None, gold, 5, _gen(), num_entities=E, candidate_mask=mask)
    assert torch.allclose(out.log_probs, -allowed.double().log().float()[:, None].expand(-1, 5))


def test_row_chunking_does_not_change_validity(monkeypatch, scores, gold):
    import hf_models.training.samplers as samplers

    monkeypatch.setattr(samplers, "_CHUNK_ELEMENTS", 3 * E)  # 3 rows per chunk
    for strategy in ("hard", "mixed", "topk"):
        _check_valid(sample_negatives(strategy, scores, gold, K1, _gen()).ids, gold, K1, E)
    assert torch.equal(topk_negatives(scores, gold, K1).ids, topk_negatives(scores, gold, K1).ids)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_negatives": E}, r"not enough entities.*E - 1 = 39"),
        ({"gold": torch.tensor([0] * (N - 1) + [E])}, "out of range"),
        ({"gold": torch.tensor([-1] + [0] * (N - 1))}, "out of range"),
        ({"gold": torch.zeros(N + 1, dtype=torch.long)}, r"scores must be \[N, E\]"),
        ({"gold": torch.zeros(N, 1, dtype=torch.long)}, "1-D"),
        ({"strategy": "greedy"}, "unknown negative strategy"),
        ({"num_negatives": 0}, ">= 1"),
        ({"hard_fraction": 1.5, "strategy": "mixed"}, "hard_fraction"),
        ({"candidate_mask": torch.ones(N, E - 1, dtype=torch.bool)}, "candidate_mask"),
        ({"num_entities": E + 1, "strategy": "random"}, "num_entities"),
    ],
)
def test_bad_inputs(kwargs, message, scores, gold):
    call = {"strategy": "hard", "scores": scores, "gold": gold, "num_negatives": K1, "generator": _gen()}
    call.update(kwargs)
    with pytest.raises(ValueError, match=message):
        sample_negatives(**call)


def test_hard_needs_scores_and_mask_may_leave_too_few(gold):
    with pytest.raises(ValueError, match="needs scores"):
        sample_negatives("hard", None, gold, 3, _gen(), num_entities=E)
    mask = torch.zeros(N, E, dtype=torch.bool)
    mask[:, :3] = True
    with pytest.raises(ValueError, match="not enough allowed entities"):
        sample_negatives("random", None, gold, 5, _gen(), num_entities=E, candidate_mask=mask)
