"""How far low-precision scores are from fp32 ones, in the terms that matter to retrieval and to hard negatives.

:func:`exactness_report` compares two score matrices of the same mentions x entities (e.g. bf16 products with fp32
accumulation vs fp32) and reports the largest absolute difference, the overlap of the top-k lists, and the total
variation distance of the hard sampler's first draw, p(y | x) ∝ exp(s(x, y)) over every entity but the gold
(eq. 8 / Section 6.3: the later draws are the same distribution renormalized without the earlier ones).
"""

from __future__ import annotations

import torch


def first_draw_distribution(scores: torch.Tensor, gold: torch.Tensor | None = None) -> torch.Tensor:
    """softmax of each row of ``scores`` [N, E] with the gold column (``gold`` [N], optional) excluded -> [N, E]."""
    logits = scores.double()
    if gold is not None:
        logits = logits.scatter(1, gold.long()[:, None], float("-inf"))
    return logits.softmax(dim=1)


def exactness_report(
    reference: torch.Tensor, approx: torch.Tensor, gold: torch.Tensor | None = None, k: int = 64
) -> dict[str, float]:
    """Compare ``approx`` [N, E] with ``reference`` [N, E] scores.

    Returns:
        max_abs_diff: max |approx - reference| over all pairs;
        reference_scale: max |reference| (to read the difference against);
        topk_overlap: mean over mentions of |top-k(approx) ∩ top-k(reference)| / k (k capped at E);
        first_draw_tv: max over mentions of the total-variation distance 1/2 Σ_y |p_approx(y) - p_ref(y)| of the
            hard sampler's first draw (gold excluded when ``gold`` [N] is given);
        mean_first_draw_tv: the same, averaged over mentions.
    """
    if reference.shape != approx.shape or reference.dim() != 2:
        raise ValueError(
            f"exactness_report needs two [N, E] score matrices of one shape; got {tuple(reference.shape)} and "
            f"{tuple(approx.shape)}"
        )
    reference, approx = reference.double(), approx.double()
    k = min(k, reference.shape[1])
    top_ref = reference.topk(k, dim=1).indices
    top_approx = approx.topk(k, dim=1).indices
    hits = torch.zeros_like(reference, dtype=torch.bool).scatter(1, top_ref, True).gather(1, top_approx)
    tv = 0.5 * (first_draw_distribution(approx, gold) - first_draw_distribution(reference, gold)).abs().sum(1)
    return {
        "max_abs_diff": float((approx - reference).abs().max()),
        "reference_scale": float(reference.abs().max()),
        "topk_overlap": float(hits.double().mean()),
        "first_draw_tv": float(tv.max()),
        "mean_first_draw_tv": float(tv.mean()),
    }
