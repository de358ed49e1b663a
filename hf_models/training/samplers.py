"""Negative samplers for hard-negative NCE (Zhang & Stratos, 2021, Sections 3 and 6.3).

Pure, seeded functions over a score matrix ``scores`` [N, E] (row i: s_theta(x_i, y) for every entity y) and
gold ids ``gold`` [N]. They know nothing of models; ``entity_index`` produces the score rows, the trainer turns
the returned ids into candidates ``[gold, negatives...]`` (gold at column 0, eq. 11).

Strategies (``num_negatives`` = K - 1 negatives per row, always distinct and never the gold):

- ``random``: uniform over the non-gold entities, without replacement (Section 6.3, "Random"). Needs no
  scores: with ``candidate_mask`` None it draws ids directly with Floyd's algorithm, so E may be huge.
- ``hard``: sequential sampling without replacement with probability proportional to exp(s) over the non-gold
  entities (Section 6.3, "Hard"; the without-replacement distribution of eq. 8), via Gumbel-top-k.
  NOTE: Gumbel-top-k samples the *sequential* (Plackett-Luce) without-replacement distribution that Section 6.3
  describes. Read literally, eq. (8) is the iid product ``prod_k p_theta(y_k|x)`` *conditioned* on the tuple
  being distinct and gold-free; for K - 1 >= 2 the two differ slightly (they coincide for K - 1 = 1).
  ``hf_models.analysis.bias`` enumerates both exactly.
- ``mixed``: ``round(hard_fraction * (K - 1))`` hard negatives as above, the rest uniform over the non-gold
  entities not already chosen (Section 6.3, "Mixed-p").
- ``topk``: the K - 1 highest-scoring non-gold entities (greedy; Gillick et al., 2019; the maximiser of
  Theorem 3.3), sorted by decreasing score.

``NegativeSample.log_probs`` [N, K-1] holds log nu(y | x, y1) for each returned id: the log probability of the
per-draw proposal nu over Y minus {y1} that the bias-corrected loss eq. (10) subtracts as log((K-1) nu):

- random: ``-log(E' )`` with E' the number of allowed non-gold entities of the row (E - 1 without a mask);
- hard: ``log softmax(s)`` over the allowed non-gold entities (the first-draw distribution);
- mixed: ``log(q * softmax(s) + (1 - q) / E')`` with q = (number of hard draws) / (K - 1): the mixture
  proposal from which a uniformly chosen slot is drawn;
- topk: greedy selection is a point mass, for which eq. (10) is undefined; we return the hard proposal
  ``log softmax(s)`` (useful as a diagnostic; do not read it as the sampling probability).

For without-replacement draws these are per-draw (first-draw) probabilities, the usual approximation when eq.
(10) is used with distinct negatives. Every function is deterministic given the ``torch.Generator`` state,
or, with a :class:`~hf_models.training.keyed_noise.KeyedNoise` in place of the generator, given (seed, epoch, row keys,
column keys): every random number is then a hash of its coordinates, so any row / column chunking (and the
streaming miner of ``hf_models.training.streaming``) draws exactly the same negatives. Selections are made by
:func:`~hf_models.training.draws.top_k_lowest_index` (ties broken towards the lower entity index), so they are deterministic too.
The random part of mixed draws, for each row, K - 1 distinct non-gold entities in uniformly random order
(Floyd) and keeps the first ones that are not hard negatives: a uniform subset of the remaining entities, and
the same draw whether the hard part was found in one pass or streamed.
Row chunks bound the memory to about ``_CHUNK_ELEMENTS`` temporary floats whatever N x E is.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from .draws import (
    Noise,
    combine_hard_and_random,
    excluded_logits,
    mixture_log_probs,
    num_random_draws,
    perturbed_keys,
    random_order_draws,
    top_k_lowest_index,
    uniform_excluding,
    uniform_log_probs,
)
from .keyed_noise import KeyedNoise

logger = logging.getLogger(__name__)

STRATEGIES = ("random", "hard", "mixed", "topk")
_CHUNK_ELEMENTS = 1 << 23  # temporary float32 elements per row chunk (32 MiB)


@dataclass
class NegativeSample:
    """K - 1 negatives per row and their per-draw proposal log-probabilities (see module docstring).

    ids: LongTensor [N, K-1], distinct per row, never the gold.
    log_probs: FloatTensor [N, K-1], log nu(y | x, y1) of eq. (10) for each id.
    """

    ids: torch.Tensor
    log_probs: torch.Tensor


# ----------------------------------------------------------------------------------------------- validation


def _check_inputs(
    scores: torch.Tensor | None,
    gold: torch.Tensor,
    num_negatives: int,
    num_entities: int | None,
    candidate_mask: torch.Tensor | None,
) -> int:
    """Validate shapes and ranges; return the number of entities E."""
    if gold.dim() != 1:
        raise ValueError(f"gold must be 1-D [N], got shape {tuple(gold.shape)}")
    if gold.dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.bool):
        raise ValueError(f"gold must hold integer entity ids, got dtype {gold.dtype}")
    n = gold.shape[0]
    if scores is not None:
        if scores.dim() != 2 or scores.shape[0] != n:
            raise ValueError(
                f"scores must be [N, E] with N = len(gold) = {n}, got shape {tuple(scores.shape)}"
            )
        if num_entities is not None and num_entities != scores.shape[1]:
            raise ValueError(f"num_entities={num_entities} but scores has E={scores.shape[1]} columns")
        num_entities = scores.shape[1]
    if num_entities is None:
        raise ValueError("num_entities is required when scores is None")
    if candidate_mask is not None and (
        candidate_mask.shape != (n, num_entities) or candidate_mask.dtype != torch.bool
    ):
        raise ValueError(
            f"candidate_mask must be a bool tensor [N, E] = [{n}, {num_entities}], "
            f"got {candidate_mask.dtype} {tuple(candidate_mask.shape)}"
        )
    if num_negatives < 1:
        raise ValueError(f"num_negatives (K - 1) must be >= 1, got {num_negatives}")
    if num_entities - 1 < num_negatives:
        raise ValueError(
            f"not enough entities: {num_negatives} negatives (K - 1) requested but only "
            f"E - 1 = {num_entities - 1} non-gold entities exist (E = {num_entities})"
        )
    if n and (int(gold.min()) < 0 or int(gold.max()) >= num_entities):
        raise ValueError(
            f"gold ids out of range [0, {num_entities}): min {int(gold.min())}, max {int(gold.max())}"
        )
    return num_entities


def _allowed_count(gold: torch.Tensor, candidate_mask: torch.Tensor, num_negatives: int) -> torch.Tensor:
    """Number of allowed non-gold entities per row [N]; raise if a row has fewer than K - 1."""
    gold_allowed = candidate_mask.gather(1, gold[:, None]).squeeze(1)  # [N]
    count = candidate_mask.sum(1) - gold_allowed.long()  # [N]
    if count.numel() and int(count.min()) < num_negatives:
        row = int(count.argmin())
        raise ValueError(
            f"not enough allowed entities: row {row} has {int(count[row])} allowed non-gold entities, "
            f"fewer than the {num_negatives} negatives (K - 1) requested"
        )
    return count


def _row_chunks(num_rows: int, num_cols: int) -> Iterator[slice]:
    """Row slices such that one chunk holds at most about ``_CHUNK_ELEMENTS`` entries."""
    step = max(1, _CHUNK_ELEMENTS // max(1, num_cols))
    for start in range(0, max(num_rows, 1), step):  # one empty chunk when num_rows == 0
        yield slice(start, min(start + step, num_rows))


def _counts(gold: torch.Tensor, num_entities: int, mask: torch.Tensor | None, k: int) -> torch.Tensor:
    """Allowed non-gold entities per row [n] (E - 1 without a mask)."""
    if mask is None:
        return torch.full(gold.shape, num_entities - 1, dtype=torch.long, device=gold.device)
    return _allowed_count(gold, mask, k)


# ----------------------------------------------------------------------------------------------- strategies


def random_negatives(
    gold: torch.Tensor,
    num_negatives: int,
    generator: Noise,
    num_entities: int,
    candidate_mask: torch.Tensor | None = None,
) -> NegativeSample:
    """Uniform negatives without replacement over the allowed non-gold entities (Section 6.3, "Random").

    gold [N]; returns ids [N, K-1] and log_probs = -log(E') (E' allowed non-gold entities, E - 1 by default).
    Without ``candidate_mask`` nothing of size [N, E] is built, so E may be in the millions.
    """
    num_entities = _check_inputs(None, gold, num_negatives, num_entities, candidate_mask)
    count = _counts(gold, num_entities, candidate_mask, num_negatives)  # [N]
    if candidate_mask is None:
        ids = random_order_draws(gold, num_entities, num_negatives, generator)
    else:
        ids = torch.cat(
            [
                uniform_excluding(
                    gold[rows, None],
                    num_entities,
                    num_negatives,
                    generator.rows(rows) if isinstance(generator, KeyedNoise) else generator,
                    candidate_mask[rows],
                )
                for rows in _row_chunks(gold.shape[0], num_entities)
            ]
        )
    return NegativeSample(ids, uniform_log_probs(ids, count))


def _scored_negatives(
    scores: torch.Tensor,
    gold: torch.Tensor,
    num_negatives: int,
    generator: Noise | None,
    num_hard: int,
    candidate_mask: torch.Tensor | None,
) -> NegativeSample:
    """Shared body of hard / mixed / topk: ``num_hard`` Gumbel-top-k draws (greedy top-k if generator is None),
    then ``num_negatives - num_hard`` uniform draws; log_probs is the mixture proposal of the module docstring."""
    num_entities = _check_inputs(scores, gold, num_negatives, None, candidate_mask)
    count = _counts(gold, num_entities, candidate_mask, num_negatives)  # [N]
    hard_share = num_hard / num_negatives
    ids_parts, log_prob_parts = [], []
    for rows in _row_chunks(gold.shape[0], num_entities):
        mask = None if candidate_mask is None else candidate_mask[rows]
        noise = generator.rows(rows) if isinstance(generator, KeyedNoise) else generator
        logits = excluded_logits(scores[rows], gold[rows], mask)  # [n, E]
        keys = logits if noise is None else perturbed_keys(logits, noise)
        hard = top_k_lowest_index(keys, num_hard)[1]  # [n, k_hard]; topk: sorted by decreasing score
        if mask is None and num_random_draws(num_negatives, num_hard):
            draws = random_order_draws(gold[rows], num_entities, num_negatives, noise)  # [n, K-1]
            rand = draws.gather(1, combine_hard_and_random(hard, draws, num_negatives))
        else:
            excluded = torch.cat([gold[rows, None], hard], 1)  # [n, 1 + k_hard]
            rand = uniform_excluding(excluded, num_entities, num_negatives - num_hard, noise, mask)
        ids = torch.cat([hard, rand], 1)  # [n, K-1]
        ids_parts.append(ids)
        log_prob_parts.append(
            mixture_log_probs(logits.gather(1, ids), logits.logsumexp(1), count[rows], hard_share)
        )
    return NegativeSample(torch.cat(ids_parts), torch.cat(log_prob_parts))


def hard_negatives(
    scores: torch.Tensor,
    gold: torch.Tensor,
    num_negatives: int,
    generator: Noise,
    candidate_mask: torch.Tensor | None = None,
) -> NegativeSample:
    """K - 1 distinct non-gold entities drawn without replacement with P proportional to exp(s) (Section 6.3,
    "Hard"; eq. 8) by Gumbel-top-k. scores [N, E], gold [N] -> ids [N, K-1], log_probs = log softmax(s) over
    the allowed non-gold entities (first-draw proposal)."""
    return _scored_negatives(scores, gold, num_negatives, generator, num_negatives, candidate_mask)


def mixed_negatives(
    scores: torch.Tensor,
    gold: torch.Tensor,
    num_negatives: int,
    generator: Noise,
    hard_fraction: float = 0.5,
    candidate_mask: torch.Tensor | None = None,
) -> NegativeSample:
    """Mixed-p (Section 6.3): round(p (K-1)) hard negatives (columns first) then uniform ones, all distinct.

    log_probs = log(q softmax(s) + (1 - q) / E') with q the realised hard share round(p (K-1)) / (K-1).
    """
    if not 0.0 <= hard_fraction <= 1.0:
        raise ValueError(f"hard_fraction must be in [0, 1], got {hard_fraction}")
    num_hard = round(hard_fraction * num_negatives)
    return _scored_negatives(scores, gold, num_negatives, generator, num_hard, candidate_mask)


def topk_negatives(
    scores: torch.Tensor,
    gold: torch.Tensor,
    num_negatives: int,
    candidate_mask: torch.Tensor | None = None,
) -> NegativeSample:
    """Greedy top K - 1 non-gold entities by score, highest first (Gillick et al., 2019; Theorem 3.3).

    log_probs is log softmax(s) over the allowed non-gold entities: a diagnostic only, since the greedy
    proposal is a point mass for which eq. (10) is undefined.
    """
    return _scored_negatives(scores, gold, num_negatives, None, num_negatives, candidate_mask)


def sample_negatives(
    strategy: str,
    scores: torch.Tensor | None,
    gold: torch.Tensor,
    num_negatives: int,
    generator: Noise,
    hard_fraction: float = 0.5,
    num_entities: int | None = None,
    candidate_mask: torch.Tensor | None = None,
) -> NegativeSample:
    """Dispatch to one strategy of ``STRATEGIES``. scores [N, E] (None allowed for "random" with
    ``num_entities``), gold [N] -> NegativeSample(ids [N, K-1], log_probs [N, K-1])."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown negative strategy {strategy!r}; expected one of {STRATEGIES}")
    if strategy == "random":
        if num_entities is None and scores is not None:
            num_entities = scores.shape[1]
        _check_inputs(scores, gold, num_negatives, num_entities, candidate_mask)
        return random_negatives(gold, num_negatives, generator, num_entities, candidate_mask)
    if scores is None:
        raise ValueError(f"strategy {strategy!r} needs scores [N, E]")
    if strategy == "hard":
        return hard_negatives(scores, gold, num_negatives, generator, candidate_mask)
    if strategy == "mixed":
        return mixed_negatives(scores, gold, num_negatives, generator, hard_fraction, candidate_mask)
    return topk_negatives(scores, gold, num_negatives, candidate_mask)
