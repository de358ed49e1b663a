"""Eq. (11) and eq. (10) against cross-entropy and a hand computation."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from hf_models.modeling.losses import adjusted_nce_loss, nce_loss
from hf_models.modeling.modeling_retriever import candidate_loss


def test_nce_loss_is_cross_entropy_with_gold_at_zero() -> None:
    scores = torch.randn(5, 7, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(nce_loss(scores), F.cross_entropy(scores, torch.zeros(5, dtype=torch.long)))


def test_nce_loss_by_hand() -> None:
    scores = torch.tensor([[2.0, 1.0, 0.0], [0.0, 0.0, 0.0]], dtype=torch.float64)
    row0 = -math.log(math.exp(2) / (math.exp(2) + math.exp(1) + 1))
    row1 = -math.log(1 / 3)
    assert nce_loss(scores).item() == pytest.approx((row0 + row1) / 2, abs=1e-12)


def test_adjusted_nce_loss_by_hand() -> None:
    """s_bar = s for the gold, s - log((K-1) nu(y|x, y1)) for each negative (K = 3)."""
    scores = torch.tensor([[1.0, 2.0, 0.5]], dtype=torch.float64)
    nu = [0.7, 0.3]
    log_nu = torch.tensor([nu], dtype=torch.float64).log()
    s_bar = [1.0, 2.0 - math.log(2 * nu[0]), 0.5 - math.log(2 * nu[1])]
    expected = -math.log(math.exp(s_bar[0]) / sum(math.exp(s) for s in s_bar))
    assert adjusted_nce_loss(scores, log_nu).item() == pytest.approx(expected, abs=1e-12)


def test_adjusted_equals_plain_when_nu_is_uniform_over_k_minus_1() -> None:
    """log((K-1) * 1/(K-1)) = 0: the adjustment vanishes."""
    scores = torch.randn(4, 6, dtype=torch.float64)
    uniform = torch.full((4, 5), -math.log(5), dtype=torch.float64)
    torch.testing.assert_close(adjusted_nce_loss(scores, uniform), nce_loss(scores))


def test_loss_shape_errors_and_selection() -> None:
    with pytest.raises(ValueError, match=r"\(2, 4\).*\(2, 2\)"):
        adjusted_nce_loss(torch.zeros(2, 4), torch.zeros(2, 2))
    with pytest.raises(ValueError, match=r"\(4,\)"):
        nce_loss(torch.zeros(4))
    with pytest.raises(ValueError, match="loss"):
        candidate_loss(torch.zeros(2, 3), loss="hinge")
    scores, log_nu = torch.randn(2, 3), torch.randn(2, 2)
    torch.testing.assert_close(candidate_loss(scores, log_nu), nce_loss(scores))
    torch.testing.assert_close(candidate_loss(scores, log_nu, "adjusted"), adjusted_nce_loss(scores, log_nu))


def test_low_precision_scores_are_upcast() -> None:
    scores = torch.randn(3, 4)
    assert nce_loss(scores.bfloat16()).dtype == torch.float32
