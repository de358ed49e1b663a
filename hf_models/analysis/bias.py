"""Gradient bias of hard-negative NCE (Zhang & Stratos, 2021, Theorems 3.1 and 3.2, Section 6.4, Appendix C).

Everything works on "rows": row r is an input x_r with a gold label y1_r and a weight w_r (the weights sum to
one). Rows represent the expectation over (x, y1) ~ pop either empirically (a batch of mentions with their gold
entities, w_r = 1/R, as in Appendix C) or exactly (every (x, y1) of a small population with
w = pop(x) pop(y1|x); see ``population_rows``). A model enters only through ``score_fn() -> scores [R, Y]``,
a differentiable function of ``params`` returning s_theta(x_r, y) over the whole label space Y (e.g. a dual
encoder scoring 64 mentions against 128 entities, or a toy network), so any torch model can be plugged in.

- ``cross_entropy``: J_CE, eq. (2), normalising over all of Y.
- ``expected_nce_loss``: J_HARD, eq. (5), estimated by Monte Carlo over ``num_draws`` negative draws from
  ``hf_models.training.samplers`` (random / hard / mixed / topk). Negatives are sampled from detached scores: h is a
  fixed distribution in Theorem 3.1, exactly as in training.
- ``gradient_bias``: b(theta) = grad J_CE - grad J_HARD (Section 3.1) with the Monte-Carlo J_HARD.
- Exact enumeration for tiny label spaces: ``negative_tuple_log_probs`` (h of eq. 5 for the schemes below),
  ``exact_nce_loss``, ``gamma_exact`` (eq. 6), ``exact_gradient_bias`` and ``theorem31_bias`` (the right-hand
  side of Theorem 3.1).

Negative schemes h(y_{2:K} | x, y1) built from a per-row proposal (``proposal="model"``: p_theta(.|x) from the
row's detached scores; ``"uniform"``: uniform over Y):

- ``iid``: prod_k q(y_k) over all of Y (gold and repeats allowed) -- the setting of Theorem 3.2;
- ``distinct``: eq. (8) read literally: the iid product restricted to distinct, gold-free tuples, renormalised;
- ``sequential``: sequential sampling without replacement from q over Y minus {y1} (Section 6.3), which is
  what Gumbel-top-k (``samplers.hard_negatives`` / ``random_negatives``) draws. It differs from ``distinct``
  for K - 1 >= 2.

The NCE loss of one candidate set, -log pi_theta(1 | x, y_{1:K}) with the gold at column 0 (eqs. 3, 11), is
``hf_models.modeling.losses.nce_example_losses`` on [..., K] tensors (per draw and per enumerated tuple) -- the same
function whose batch mean is the training loss.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from ..modeling.losses import nce_example_losses
from ..training.samplers import sample_negatives

logger = logging.getLogger(__name__)

ScoreFn = Callable[[], torch.Tensor]
NEGATIVE_SCHEMES = ("iid", "distinct", "sequential")
PROPOSALS = ("model", "uniform")
_MAX_TUPLES = 2_000_000
_DRAW_CHUNK_ELEMENTS = 1 << 23


@dataclass
class GradientBias:
    """Losses, flat gradients [d] and the bias b(theta) = grad J_CE - grad J_HARD of Section 3.1."""

    ce_loss: float
    nce_loss: float
    ce_grad: torch.Tensor
    nce_grad: torch.Tensor
    bias: torch.Tensor

    @property
    def bias_norm(self) -> float:
        return float(self.bias.norm())


# ------------------------------------------------------------------------------------------------ helpers


def _row_weights(weights: torch.Tensor | None, num_rows: int, like: torch.Tensor) -> torch.Tensor:
    """Row weights [R] (uniform 1/R when None)."""
    if weights is None:
        return torch.full((num_rows,), 1.0 / num_rows, dtype=like.dtype, device=like.device)
    if weights.shape != (num_rows,):
        raise ValueError(f"weights must be [R] = [{num_rows}], got {tuple(weights.shape)}")
    return weights.to(like.dtype)


def flat_grad(loss: torch.Tensor, params: Sequence[torch.Tensor], retain_graph: bool = False) -> torch.Tensor:
    """d loss / d params concatenated into one vector [d] (zeros for parameters the loss does not use)."""
    grads = torch.autograd.grad(loss, list(params), retain_graph=retain_graph, allow_unused=True)
    return torch.cat(
        [(torch.zeros_like(p) if g is None else g).reshape(-1) for p, g in zip(params, grads, strict=True)]
    )


def population_rows(
    pop: torch.Tensor, input_weights: torch.Tensor | None = None, support_tol: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Enumerate (x, y1) ~ pop as rows: pop [X, Y] conditional pop(y|x), input_weights [X] pop(x) (uniform).

    Labels are kept per x in decreasing pop(y|x) until the dropped mass is at most ``support_tol``; weights
    pop(x) pop(y1|x) are renormalised over the kept rows (so they define a truncated population exactly).
    Returns row_input [R], gold [R], weights [R].
    """
    num_inputs = pop.shape[0]
    px = _row_weights(input_weights, num_inputs, pop)
    probs, labels = pop.sort(1, descending=True)  # [X, Y]
    dropped_before = 1.0 - (probs.cumsum(1) - probs)  # mass not yet kept when reaching each label
    keep = dropped_before > support_tol  # [X, Y]
    keep[:, 0] = True
    row_input = torch.arange(num_inputs, device=pop.device)[:, None].expand_as(labels)[keep]
    weights = (px[:, None] * probs)[keep]
    return row_input, labels[keep], weights / weights.sum()


def cross_entropy(
    scores: torch.Tensor, gold: torch.Tensor, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """J_CE, eq. (2): sum_r w_r (-log p_theta(y1_r | x_r)), with p_theta of eq. (1) over all of Y.

    scores [R, Y]; gold [R] label ids or [R, Y] a target distribution pop(.|x_r) (exact expectation).
    """
    log_p = scores.log_softmax(-1)  # [R, Y]
    w = _row_weights(weights, scores.shape[0], scores)
    per_row = -(gold * log_p).sum(-1) if gold.dim() == 2 else -log_p.gather(1, gold[:, None]).squeeze(1)
    return (w * per_row).sum()


# ------------------------------------------------------------------------------------------- Monte Carlo


def expected_nce_loss(
    scores: torch.Tensor,
    gold: torch.Tensor,
    strategy: str,
    num_negatives: int,
    num_draws: int,
    generator: torch.Generator,
    weights: torch.Tensor | None = None,
    hard_fraction: float = 0.5,
) -> torch.Tensor:
    """Monte-Carlo J_HARD, eq. (5): sum_r w_r (1/S) sum_s -log pi_theta(1 | x_r, y1_r, y^(s)_{2:K}).

    scores [R, Y] (differentiable), gold [R]; S = ``num_draws`` independent draws of K - 1 = ``num_negatives``
    negatives per row from ``samplers.sample_negatives(strategy, ...)`` on the detached scores (Appendix C uses
    S = 500, K = 8). Draws are processed in chunks to bound memory. Returns a scalar.
    """
    num_rows, num_labels = scores.shape
    w = _row_weights(weights, num_rows, scores)
    detached = scores.detach()
    chunk = max(1, _DRAW_CHUNK_ELEMENTS // max(1, num_rows * num_labels))
    total = scores.new_zeros(())
    for start in range(0, num_draws, chunk):
        c = min(chunk, num_draws - start)
        sample = sample_negatives(
            strategy,
            None if strategy == "random" else detached.repeat(c, 1),  # [c*R, Y]
            gold.repeat(c),  # [c*R]
            num_negatives,
            generator,
            hard_fraction=hard_fraction,
            num_entities=num_labels,
        )
        candidates = torch.cat([gold[None, :, None].expand(c, -1, 1), sample.ids.view(c, num_rows, -1)], 2)
        candidate_scores = scores[None].expand(c, -1, -1).gather(2, candidates)  # [c, R, K]
        total = total + (nce_example_losses(candidate_scores) * w).sum()  # sum over draws and rows
    return total / num_draws


def gradient_bias(
    score_fn: ScoreFn,
    params: Sequence[torch.Tensor],
    gold: torch.Tensor,
    strategy: str,
    num_negatives: int,
    num_draws: int,
    generator: torch.Generator,
    weights: torch.Tensor | None = None,
    hard_fraction: float = 0.5,
) -> GradientBias:
    """b(theta) = grad J_CE - grad J_HARD (Section 3.1; Appendix C), J_HARD by ``expected_nce_loss``.

    One call of ``score_fn`` -> scores [R, Y]; both gradients by autograd w.r.t. ``params``.
    """
    scores = score_fn()
    ce = cross_entropy(scores, gold, weights)
    nce = expected_nce_loss(
        scores, gold, strategy, num_negatives, num_draws, generator, weights, hard_fraction
    )
    return _bias_from_losses(ce, nce, params)


def _bias_from_losses(ce: torch.Tensor, nce: torch.Tensor, params: Sequence[torch.Tensor]) -> GradientBias:
    ce_grad = flat_grad(ce, params, retain_graph=True)
    nce_grad = flat_grad(nce, params)
    return GradientBias(ce.item(), nce.item(), ce_grad, nce_grad, ce_grad - nce_grad)


# ------------------------------------------------------------------------------------ exact enumeration


def _proposal_logits(scores: torch.Tensor, proposal: str) -> torch.Tensor:
    """Detached unnormalised log q [R, Y]: the model scores (p_theta) or zeros (uniform)."""
    if proposal not in PROPOSALS:
        raise ValueError(f"unknown proposal {proposal!r}; expected one of {PROPOSALS}")
    return scores.detach() if proposal == "model" else torch.zeros_like(scores.detach())


def negative_tuple_log_probs(
    logits: torch.Tensor, gold: torch.Tensor, num_negatives: int, scheme: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """All ordered tuples y_{2:K} in Y^(K-1) and log h(y_{2:K} | x_r, y1_r) for each row (see module docstring).

    logits [R, Y] unnormalised log q; gold [R]. Returns tuples [T, K-1] (T = Y^(K-1)) and log_h [R, T]
    (-inf outside the support). ``distinct`` is eq. (8); ``iid`` is the h of Theorem 3.2.
    """
    if scheme not in NEGATIVE_SCHEMES:
        raise ValueError(f"unknown negative scheme {scheme!r}; expected one of {NEGATIVE_SCHEMES}")
    num_labels = logits.shape[1]
    if num_labels**num_negatives > _MAX_TUPLES:
        raise ValueError(f"|Y|^(K-1) = {num_labels}^{num_negatives} tuples is too many to enumerate")
    tuples = torch.tensor(
        list(itertools.product(range(num_labels), repeat=num_negatives)), dtype=torch.long, device=gold.device
    ).view(-1, num_negatives)  # [T, K-1]
    if scheme == "iid":
        log_q = logits.log_softmax(-1)  # [R, Y], gold included
        return tuples, log_q[:, tuples].sum(-1)  # [R, T]
    distinct = (tuples[:, :, None] != tuples[:, None, :]).sum((1, 2)) == num_negatives * (num_negatives - 1)
    valid = distinct[None, :] & (tuples[None, :, :] != gold[:, None, None]).all(-1)  # [R, T]
    log_q = logits.scatter(1, gold[:, None], float("-inf")).log_softmax(-1)  # [R, Y] over Y minus {y1}
    picked = log_q[:, tuples]  # [R, T, K-1]
    if scheme == "distinct":
        log_h = picked.sum(-1).masked_fill(~valid, float("-inf"))
        return tuples, log_h - log_h.logsumexp(-1, keepdim=True)
    mass_before = picked.exp().cumsum(-1) - picked.exp()  # q mass already drawn before each position
    log_h = (picked - torch.log1p(-mass_before.clamp(max=1.0))).sum(-1)
    return tuples, log_h.masked_fill(~valid, float("-inf"))


def _enumerated_candidates(
    scores: torch.Tensor, gold: torch.Tensor, num_negatives: int, scheme: str, proposal: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Candidates [R, T, K] (gold first), their scores [R, T, K] and h [R, T] (detached) for every tuple."""
    tuples, log_h = negative_tuple_log_probs(_proposal_logits(scores, proposal), gold, num_negatives, scheme)
    num_rows = scores.shape[0]
    candidates = torch.cat(
        [gold[:, None, None].expand(-1, tuples.shape[0], 1), tuples[None].expand(num_rows, -1, -1)], 2
    )
    candidate_scores = scores.gather(1, candidates.view(num_rows, -1)).view(candidates.shape)
    return candidates, candidate_scores, log_h.exp()


def exact_nce_loss(
    scores: torch.Tensor,
    gold: torch.Tensor,
    num_negatives: int,
    scheme: str = "sequential",
    proposal: str = "model",
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """J_HARD, eq. (5), exactly: sum_r w_r sum_{y_{2:K}} h(y_{2:K} | x_r, y1_r) (-log pi_theta(1 | x_r, y_{1:K})).

    scores [R, Y] tiny Y; h is detached (a fixed distribution, as in Theorem 3.1). Returns a scalar.
    """
    _, candidate_scores, h = _enumerated_candidates(scores, gold, num_negatives, scheme, proposal)
    w = _row_weights(weights, scores.shape[0], scores)
    return (w * (h * nce_example_losses(candidate_scores)).sum(-1)).sum()


def gamma_exact(
    scores: torch.Tensor,
    gold: torch.Tensor,
    num_negatives: int,
    scheme: str = "sequential",
    proposal: str = "model",
) -> torch.Tensor:
    """Per-row gamma of eq. (6) given y1_r: sum_{y_{2:K}} h(y_{2:K}|x_r, y1_r) sum_k pi_theta(k|x_r, y_{1:K}) [y_k = y].

    scores [R, Y] -> [R, Y] (each row sums to one). Average rows of one x with weights pop(y1|x)
    (``gamma_by_input``) to obtain gamma_theta(y|x) of eq. (6).
    """
    candidates, candidate_scores, h = _enumerated_candidates(
        scores.detach(), gold, num_negatives, scheme, proposal
    )
    mass = h[..., None] * candidate_scores.softmax(-1)  # [R, T, K]
    gamma = torch.zeros_like(scores, dtype=mass.dtype)
    return gamma.scatter_add_(1, candidates.flatten(1), mass.flatten(1))


def gamma_by_input(
    gamma_rows: torch.Tensor, weights: torch.Tensor, row_input: torch.Tensor, num_inputs: int
) -> torch.Tensor:
    """gamma_theta(y|x) [X, Y] of eq. (6) from per-row gammas [R, Y] with row weights pop(x) pop(y1|x) [R]."""
    total = torch.zeros(num_inputs, gamma_rows.shape[1], dtype=gamma_rows.dtype, device=gamma_rows.device)
    total.index_add_(0, row_input, weights[:, None] * gamma_rows)
    return total / total.sum(1, keepdim=True)


def exact_gradient_bias(
    score_fn: ScoreFn,
    params: Sequence[torch.Tensor],
    gold: torch.Tensor,
    num_negatives: int,
    scheme: str = "sequential",
    proposal: str = "model",
    weights: torch.Tensor | None = None,
) -> GradientBias:
    """b(theta) = grad J_CE - grad J_HARD with J_HARD by exact enumeration (``exact_nce_loss``)."""
    scores = score_fn()
    ce = cross_entropy(scores, gold, weights)
    nce = exact_nce_loss(scores, gold, num_negatives, scheme, proposal, weights)
    return _bias_from_losses(ce, nce, params)


def theorem31_bias(
    score_fn: ScoreFn,
    params: Sequence[torch.Tensor],
    gold: torch.Tensor,
    num_negatives: int,
    scheme: str = "sequential",
    proposal: str = "model",
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Theorem 3.1: b_i(theta) = E_x [sum_y eps_theta(y|x) d s_theta(x, y) / d theta_i], eps = p_theta - gamma_theta.

    Evaluated per row (gamma given y1_r, weighted by w_r; summing rows of one x recovers the expectation over
    y1 ~ pop(.|x) inside eq. 6) as the gradient of sum_r w_r sum_y eps_r(y) s_theta(x_r, y) with eps fixed.
    Returns the flat vector [d].
    """
    scores = score_fn()  # [R, Y]
    eps = scores.detach().softmax(-1) - gamma_exact(scores, gold, num_negatives, scheme, proposal)  # [R, Y]
    w = _row_weights(weights, scores.shape[0], scores)
    return flat_grad((w[:, None] * eps * scores).sum(), params)
