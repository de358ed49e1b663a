"""Monte-Carlo gradient-bias estimators (Appendix C) against exact enumeration on tiny label spaces."""

from __future__ import annotations

import math

import pytest
import torch
from scipy.stats import chisquare
from torch import nn

from hf_models.analysis.bias import (
    cross_entropy,
    exact_gradient_bias,
    exact_nce_loss,
    expected_nce_loss,
    gradient_bias,
    negative_tuple_log_probs,
    population_rows,
)
from hf_models.training.samplers import hard_negatives

DT = torch.float64


@pytest.fixture
def toy():
    """A one-hidden-layer ReLU scorer over |Y| = 6 labels for 3 inputs with golds (float64)."""
    g = torch.Generator().manual_seed(0)
    features = torch.randn(3, 4, generator=g, dtype=DT)
    params = [
        torch.randn(4, 6, generator=g, dtype=DT).requires_grad_(),
        torch.randn(6, 6, generator=g, dtype=DT),
    ]
    params[1].requires_grad_()
    return (lambda: torch.relu(features @ params[0]) @ params[1]), params, torch.tensor([0, 2, 5])


@pytest.mark.parametrize(("strategy", "proposal"), [("hard", "model"), ("random", "uniform")])
def test_monte_carlo_bias_converges_to_exact(toy, strategy, proposal):
    """MC over 20000 draws of K - 1 = 2 negatives vs the exact sequential without-replacement expectation."""
    score_fn, params, gold = toy
    exact = exact_gradient_bias(score_fn, params, gold, 2, "sequential", proposal)
    mc = gradient_bias(score_fn, params, gold, strategy, 2, 20_000, torch.Generator().manual_seed(1))
    assert mc.ce_loss == pytest.approx(exact.ce_loss) and torch.allclose(mc.ce_grad, exact.ce_grad)
    assert mc.nce_loss == pytest.approx(exact.nce_loss, rel=0.01)
    assert (mc.bias - exact.bias).norm() < 0.05 * exact.bias.norm()
    few = gradient_bias(score_fn, params, gold, strategy, 2, 20, torch.Generator().manual_seed(1))
    assert (few.bias - exact.bias).norm() > (mc.bias - exact.bias).norm()  # more draws, closer


def test_hard_sampler_draws_sequential_not_literal_eq8_tuples():
    """Gumbel-top-k tuples follow sequential without-replacement sampling (Section 6.3); eq. (8) read literally
    (iid conditioned on distinct) is a different distribution that the same chi-square test rejects."""
    scores = torch.tensor([[2.0, 1.0, 0.5, 0.0, -1.0]], dtype=DT)
    gold, n = torch.tensor([0]), 20_000
    ids = hard_negatives(
        scores.float().expand(n, -1), gold.expand(n), 2, torch.Generator().manual_seed(0)
    ).ids
    counts = torch.bincount(ids[:, 0] * 5 + ids[:, 1], minlength=25).double()
    pvalues = {}
    for scheme in ("sequential", "distinct"):
        tuples, log_h = negative_tuple_log_probs(scores, gold, 2, scheme)
        keep = log_h[0] > -math.inf
        observed = counts[(tuples[:, 0] * 5 + tuples[:, 1])[keep]]
        pvalues[scheme] = chisquare(observed.numpy(), (log_h[0, keep].exp() * n).numpy()).pvalue
    assert pvalues["sequential"] > 1e-3 and pvalues["distinct"] < 1e-10


def test_schemes_agree_for_one_negative_and_normalise():
    scores = torch.randn(4, 6, generator=torch.Generator().manual_seed(2), dtype=DT)
    gold = torch.tensor([0, 1, 2, 5])
    one = [negative_tuple_log_probs(scores, gold, 1, s)[1] for s in ("distinct", "sequential")]
    assert torch.allclose(one[0], one[1])
    for scheme in ("iid", "distinct", "sequential"):
        assert torch.allclose(
            negative_tuple_log_probs(scores, gold, 3, scheme)[1].exp().sum(1), torch.ones(4, dtype=DT)
        )


def test_mixed_and_topk_estimates_are_finite(toy):
    score_fn, params, gold = toy
    for strategy in ("mixed", "topk"):
        result = gradient_bias(score_fn, params, gold, strategy, 3, 50, torch.Generator().manual_seed(0))
        assert math.isfinite(result.bias_norm) and result.bias.shape == (4 * 6 + 6 * 6,)


def test_draw_chunking_matches_unchunked(monkeypatch, toy):
    import hf_models.analysis.bias as bias

    score_fn, _, gold = toy
    full = expected_nce_loss(score_fn(), gold, "hard", 2, 40, torch.Generator().manual_seed(3))
    monkeypatch.setattr(bias, "_DRAW_CHUNK_ELEMENTS", 3 * 6 * 7)  # 7 draws per chunk
    chunked = expected_nce_loss(score_fn(), gold, "hard", 2, 40, torch.Generator().manual_seed(3))
    assert torch.isfinite(chunked) and chunked.item() == pytest.approx(full.item(), rel=0.2)


def test_population_rows_and_soft_cross_entropy():
    pop = torch.rand(3, 8, generator=torch.Generator().manual_seed(4), dtype=DT).div(0.05).softmax(-1)
    scores = torch.randn(3, 8, generator=torch.Generator().manual_seed(5), dtype=DT)
    row_input, gold, weights = population_rows(pop)  # all 24 rows
    assert row_input.numel() == 24 and weights.sum() == pytest.approx(1.0)
    assert cross_entropy(scores[row_input], gold, weights) == pytest.approx(cross_entropy(scores, pop).item())
    row_input, gold, weights = population_rows(pop, support_tol=1e-3)
    kept = torch.zeros_like(pop)
    kept[row_input, gold] = pop[row_input, gold]
    assert row_input.numel() < 24 and (1 - kept.sum(1)).max() <= 1e-3


def test_works_with_an_nn_module_in_float32():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 7))
    features, gold = torch.randn(4, 5), torch.tensor([0, 1, 2, 3])
    result = gradient_bias(
        lambda: model(features),
        list(model.parameters()),
        gold,
        "hard",
        3,
        30,
        torch.Generator().manual_seed(0),
    )
    assert result.bias.numel() == sum(p.numel() for p in model.parameters()) and math.isfinite(
        result.bias_norm
    )
    assert exact_nce_loss(model(features), gold, 2).item() > 0


def test_enumeration_errors():
    scores, gold = torch.zeros(1, 4), torch.tensor([0])
    with pytest.raises(ValueError, match="unknown negative scheme"):
        negative_tuple_log_probs(scores, gold, 2, "gibbs")
    with pytest.raises(ValueError, match="unknown proposal"):
        exact_nce_loss(scores, gold, 2, proposal="adversarial")
    with pytest.raises(ValueError, match="too many"):
        negative_tuple_log_probs(torch.zeros(1, 1000), gold, 3, "iid")
