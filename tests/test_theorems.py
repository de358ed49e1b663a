"""Theorems 3.1 / 3.2 and eq. (10) checked by exact enumeration of negative tuples on tiny label spaces (float64).

Finding recorded here (see ``test_theorem32_does_not_hold_for_iid_model_negatives``): with gamma defined by
eq. (6) -- the probability that y is a candidate *and* is selected, so a label drawn twice counts twice --
Theorem 3.2 does not hold: for iid negatives from p_theta = pop, gamma_theta != p_theta in general and the
gradient of J_HARD differs from that of J_CE. The proof drops the candidate count of y (footnote 1 keeps it)
and treats prod_k exp(s(y_k)) / Z(x, y_{1:K}) as a normalised product distribution. What does hold exactly:
K = |Y| without replacement (Section 3.1 remark), the bias shrinking as pop gets peaky (the delta heuristic),
and the bias-corrected loss eq. (10) with iid nu proportional to exp(s) (Blanc & Rendle, 2018).
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from hf_models.analysis.bias import (
    NEGATIVE_SCHEMES,
    PROPOSALS,
    cross_entropy,
    exact_gradient_bias,
    flat_grad,
    gamma_by_input,
    gamma_exact,
    negative_tuple_log_probs,
    population_rows,
    theorem31_bias,
)
from hf_models.modeling.losses import adjusted_nce_loss

DT = torch.float64


def _toy_model(num_inputs: int = 3, num_labels: int = 5, seed: int = 0):
    """A one-hidden-layer ReLU scorer over a tiny label space: returns features, params and score(features)."""
    g = torch.Generator().manual_seed(seed)
    features = torch.randn(num_inputs, 4, generator=g, dtype=DT)
    w1 = torch.randn(4, 6, generator=g, dtype=DT).requires_grad_()
    w2 = torch.randn(6, num_labels, generator=g, dtype=DT).requires_grad_()
    return features, [w1, w2], lambda x: torch.relu(x @ w1) @ w2


@pytest.mark.parametrize("scheme", NEGATIVE_SCHEMES)
@pytest.mark.parametrize("proposal", PROPOSALS)
def test_theorem31_formula_equals_autograd_difference(scheme, proposal):
    """b(theta) from Theorem 3.1 == grad J_CE - grad J_HARD (exact expectation over all tuples), |Y|=5, K=3."""
    features, params, model = _toy_model()
    pop = torch.rand(3, 5, generator=torch.Generator().manual_seed(1), dtype=DT).softmax(-1) ** 2
    pop = pop / pop.sum(1, keepdim=True)
    row_input, gold, weights = population_rows(pop)  # every (x, y1) with weight pop(x) pop(y1|x)

    def score_fn():
        return model(features)[row_input]

    autograd_bias = exact_gradient_bias(score_fn, params, gold, 2, scheme, proposal, weights).bias
    formula = theorem31_bias(score_fn, params, gold, 2, scheme, proposal, weights)
    assert autograd_bias.norm() > 1e-3  # the bias is not trivially zero
    assert torch.allclose(formula, autograd_bias, atol=1e-10, rtol=0)


def _brute_force_gamma(scores: torch.Tensor, pop: torch.Tensor, k: int) -> torch.Tensor:
    """eq. (6) by explicit loops for iid negatives from p_theta: sum over y_{1:K} of pop(y1) prod p(y_k) count pi."""
    p = scores.softmax(0)
    gamma = torch.zeros_like(p)
    for labels in itertools.product(range(len(p)), repeat=k):
        prob = pop[labels[0]] * math.prod(float(p[y]) for y in labels[1:])
        pi = scores[list(labels)].softmax(0)
        for position, y in enumerate(labels):
            gamma[y] += prob * pi[position]
    return gamma


def _iid_gamma_at_optimum(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """gamma_theta(.|x) of eq. (6) for one x, iid negatives from p_theta, p_theta = pop; returns (gamma, p)."""
    pop = scores.softmax(0)[None]  # [1, Y]
    row_input, gold, weights = population_rows(pop)
    rows = gamma_exact(scores[None][row_input], gold, k - 1, scheme="iid", proposal="model")
    return gamma_by_input(rows, weights, row_input, 1)[0], pop[0]


def test_gamma_enumeration_matches_brute_force():
    scores = torch.tensor([1.5, 0.3, -0.2, -1.0, 0.7], dtype=DT)
    gamma, p = _iid_gamma_at_optimum(scores, k=3)
    assert torch.allclose(gamma, _brute_force_gamma(scores, p, 3), atol=1e-12)
    assert torch.isclose(gamma.sum(), torch.tensor(1.0, dtype=DT))


def test_theorem32_does_not_hold_for_iid_model_negatives():
    """Closed form, |Y| = 2, K = 2, p = pop = (0.9, 0.1): gamma(0) = 0.9 (2 * 0.9 * 0.1 / 1 + 0.9) = 0.972."""
    gamma, p = _iid_gamma_at_optimum(torch.tensor([0.9, 0.1], dtype=DT).log(), k=2)
    assert torch.allclose(gamma, torch.tensor([0.972, 0.028], dtype=DT), atol=1e-12)
    # |Y| = 5, K = 3 (the requested setting): gamma differs from p by far more than 1e-6 ...
    gamma, p = _iid_gamma_at_optimum(torch.tensor([1.5, 0.3, -0.2, -1.0, 0.7], dtype=DT), k=3)
    assert (gamma - p).abs().max() > 1e-2
    # ... and so does the gradient: grad J_CE = 0 at p_theta = pop but grad J_HARD != 0 (Theorem 3.1).
    logits = torch.tensor([1.5, 0.3, -0.2, -1.0, 0.7], dtype=DT).requires_grad_()
    pop = logits.detach().softmax(0)[None]
    row_input, gold, weights = population_rows(pop)
    result = exact_gradient_bias(lambda: logits[None][row_input], [logits], gold, 2, "iid", "model", weights)
    assert result.ce_grad.abs().max() < 1e-12
    assert result.nce_grad.abs().max() > 1e-2


def test_gamma_equals_p_when_k_equals_label_space():
    """Section 3.1: without duplicates and K = |Y|, gamma_theta = p_theta and J_HARD = J_CE for any pop."""
    features, params, model = _toy_model(num_labels=4)
    pop = torch.rand(3, 4, generator=torch.Generator().manual_seed(2), dtype=DT).softmax(-1)
    row_input, gold, weights = population_rows(pop)
    for scheme in ("distinct", "sequential"):
        gamma = gamma_by_input(
            gamma_exact(model(features)[row_input], gold, 3, scheme), weights, row_input, 3
        )
        assert torch.allclose(gamma, model(features).softmax(-1), atol=1e-12)
        result = exact_gradient_bias(
            lambda: model(features)[row_input], params, gold, 3, scheme, "model", weights
        )
        assert result.bias.abs().max() < 1e-12


def test_iid_bias_vanishes_as_population_approaches_a_point_mass():
    """The delta heuristic of Section 3.1: with p_theta = pop = (1 - eps, eps * w), |gamma - p| = O(eps).

    (It is not monotone in the entropy in general: gamma = p also holds for a uniform pop.)"""
    w = torch.tensor([0.4, 0.3, 0.2, 0.1], dtype=DT)
    gaps = []
    for eps in (1e-1, 1e-2, 1e-3):
        gamma, p = _iid_gamma_at_optimum(torch.cat([torch.tensor([1 - eps], dtype=DT), eps * w]).log(), 3)
        gaps.append(float((gamma - p).abs().sum()))
    assert gaps[0] > 1e-2 and gaps[1] < 0.2 * gaps[0] and gaps[2] < 0.2 * gaps[1]


def test_eq10_with_iid_model_proposal_is_unbiased():
    """eq. (10) with iid negatives nu(y|x, y1) = p_theta(y|x) / (1 - p_theta(y1|x)) on Y minus {y1} has
    grad J_PRIOR = grad J_CE exactly (Blanc & Rendle, 2018) -- the identity Theorem 3.2 aims at."""
    features, params, model = _toy_model()
    gold = torch.tensor([1, 3, 0])
    scores = model(features)  # [3, 5]
    logits = scores.detach().scatter(1, gold[:, None], -math.inf)
    tuples, log_h = negative_tuple_log_probs(logits, gold, 2, "iid")  # gold has q = 0 -> h = 0 there
    log_nu = logits.log_softmax(-1)
    expected = scores.new_zeros(())
    for row, t in zip(*torch.nonzero(log_h > -math.inf, as_tuple=True), strict=True):
        candidates = torch.cat([gold[row, None], tuples[t]])
        loss = adjusted_nce_loss(scores[row, candidates][None], log_nu[row, tuples[t]][None])
        expected = expected + log_h[row, t].exp() * loss / len(gold)
    grad_prior = flat_grad(expected, params, retain_graph=True)
    grad_ce = flat_grad(cross_entropy(scores, gold), params)
    assert torch.allclose(grad_prior, grad_ce, atol=1e-10, rtol=0)
