"""NCE losses over candidate scores whose column 0 is the gold entity.

This file is copied into saved model folders (``trust_remote_code``): it imports only torch.
"""

from __future__ import annotations

import math

import torch

LOSSES = ("nce", "adjusted")


def _upcast(tensor: torch.Tensor) -> torch.Tensor:
    """float16/bfloat16 -> float32 (softmax in low precision is lossy); other dtypes unchanged."""
    return tensor.float() if tensor.dtype in (torch.float16, torch.bfloat16) else tensor


def nce_example_losses(scores: torch.Tensor) -> torch.Tensor:
    """-log pi_theta(1 | x, y_{1:K}) of eq. (3) for every candidate set: the summand of eq. (11).

    Args:
        scores: [..., K] with K >= 1 (last-axis column 0 = gold, 1..K-1 = negatives).

    Returns:
        [...] per-example losses.
    """
    if scores.dim() < 1 or scores.shape[-1] < 1:
        raise ValueError(f"nce_example_losses needs scores [..., K] with K >= 1; got {tuple(scores.shape)}")
    return -_upcast(scores).log_softmax(dim=-1)[..., 0]


def nce_loss(scores: torch.Tensor) -> torch.Tensor:
    """Eq. (11): ``-1/N sum_i log softmax(s(x_i, y_i,1..K))_1``; the gold is column 0.

    Args:
        scores: [B, K] with K >= 1 (column 0 = gold, 1..K-1 = negatives).

    Returns:
        the scalar mean loss over the batch.
    """
    if scores.dim() != 2 or scores.shape[1] < 1:
        raise ValueError(f"nce_loss needs scores [B, K] with K >= 1; got {tuple(scores.shape)}")
    return nce_example_losses(scores).mean()  # [B] -> scalar


def adjusted_nce_loss(scores: torch.Tensor, negative_log_probs: torch.Tensor) -> torch.Tensor:
    """Eq. (10): eq. (11) on scores where each negative y becomes ``s(x, y) - log((K-1) nu(y|x, y1))``.

    Args:
        scores: [B, K] (column 0 = gold, left unchanged).
        negative_log_probs: log nu(y_k | x, y_1) of the K-1 negatives, [B, K-1].

    Returns:
        the scalar mean loss over the batch.
    """
    if scores.dim() != 2 or negative_log_probs.shape != (scores.shape[0], scores.shape[1] - 1):
        raise ValueError(
            "adjusted_nce_loss needs scores [B, K] and negative_log_probs [B, K-1]; got "
            f"scores {tuple(scores.shape)}, negative_log_probs {tuple(negative_log_probs.shape)}"
        )
    num_negatives = scores.shape[1] - 1
    scores = _upcast(scores)
    correction = negative_log_probs.to(scores) + math.log(max(num_negatives, 1))  # [B, K-1]
    adjusted = torch.cat([scores[:, :1], scores[:, 1:] - correction], dim=1)  # [B, K]
    return nce_loss(adjusted)
