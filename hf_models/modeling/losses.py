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


def distinct_slots(candidate_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The first slot of each distinct entity in a batch's candidates [B, C], and every slot's distinct index.

    Returns ``first`` [U] (slot b*C + c of each distinct id's first occurrence) and ``inverse`` [B*C] (slot ->
    position in ``first``), so a shared batch encodes each entity once: ``reps[first][inverse]`` = every slot's rep.
    """
    flat = candidate_ids.reshape(-1)  # [B*C]
    _, inverse = torch.unique(flat, return_inverse=True)  # [B*C] in 0..U-1
    slots = torch.arange(len(flat), device=flat.device)
    first = torch.full((int(inverse.max()) + 1,), len(flat), device=flat.device, dtype=slots.dtype)
    first = first.scatter_reduce(0, inverse, slots, reduce="amin")  # [U]
    return first, inverse


def shared_candidate_scores(all_scores: torch.Tensor, candidate_ids: torch.Tensor) -> torch.Tensor:
    """Candidate sets shared across a batch: each mention against the union of all B x C candidates (not in the paper).

    Mention i keeps its own gold (slot ``i*C``) as column 0 and takes every other distinct entity of the batch as a
    negative, so eq. (11) on the result sees up to B x C - 1 negatives for the encoding cost of C per mention (the
    batch's hard negatives and, as in-batch negatives, the other mentions' golds). Masked with -inf: every other
    slot holding mention i's gold entity, and every repeat of an entity already present earlier in the batch.

    Args:
        all_scores: [B, B*C] scores of each mention against every candidate slot (slot b*C + c = mention b's c-th
            candidate, c = 0 its gold).
        candidate_ids: [B, C] entity ids (any integer ids; equal ids = the same entity) of those slots.

    Returns:
        [B, B*C]: column 0 = own gold, the other columns the remaining slots in batch order (-inf where masked).
    """
    batch, num_slots = all_scores.shape
    if candidate_ids.dim() != 2 or candidate_ids.shape[0] != batch or candidate_ids.numel() != num_slots:
        raise ValueError(
            "shared_candidate_scores needs all_scores [B, B*C] and candidate_ids [B, C]; got "
            f"all_scores {tuple(all_scores.shape)}, candidate_ids {tuple(candidate_ids.shape)}"
        )
    num_cands = candidate_ids.shape[1]
    flat = candidate_ids.reshape(-1).to(all_scores.device)  # [B*C]
    slot = torch.arange(num_slots, device=all_scores.device)  # [B*C]
    same = flat[:, None] == flat[None, :]  # [B*C, B*C]
    repeat = (same & (slot[None, :] < slot[:, None])).any(dim=1)  # [B*C]: an earlier slot holds this entity
    own = torch.arange(batch, device=all_scores.device) * num_cands  # [B]: each mention's gold slot
    is_gold = flat[None, :] == flat[own][:, None]  # [B, B*C]
    masked = (is_gold | repeat[None, :]) & (slot[None, :] != own[:, None])  # [B, B*C]
    scores = all_scores.masked_fill(masked, float("-inf"))
    others = slot[None, :].expand(batch, -1)[slot[None, :] != own[:, None]].view(batch, num_slots - 1)
    order = torch.cat([own[:, None], others], dim=1)  # [B, B*C]: own gold first
    return scores.gather(1, order)
