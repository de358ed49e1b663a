"""The seeded draws the negative samplers (:mod:`hf_models.training.samplers`) are built from.

Gumbel-top-k (sequential sampling without replacement, P proportional to exp(logits)), Floyd's uniform k-subsets
(no [n, E] tensor), top-k with ties broken towards the lower index, and the per-draw proposal probabilities of
eq. (10). Every draw takes a ``torch.Generator`` or a :class:`~hf_models.training.keyed_noise.KeyedNoise` (random numbers
hashed from their coordinates, so any chunking draws the same negatives).
"""

from __future__ import annotations

import math

import torch

from .keyed_noise import KeyedNoise

_ORDER_COUNTER = 1 << 20  # keyed counters of the shuffle after Floyd's draws (the draws use 0..k-1)

Noise = torch.Generator | KeyedNoise


def _rand(shape: tuple[int, ...], generator: torch.Generator, device: torch.device, dtype=torch.float32):
    """U[0, 1) on the generator's device, moved to ``device`` (a CPU generator works for CUDA scores and the
    draws do not depend on where the scores live)."""
    return torch.rand(shape, generator=generator, device=generator.device, dtype=dtype).to(device)


def excluded_logits(scores: torch.Tensor, gold: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """float32 copy of scores [n, E] with the gold and the disallowed entities set to -inf."""
    logits = scores.float().clone()  # [n, E]
    if mask is not None:
        logits.masked_fill_(~mask, -math.inf)
    logits.scatter_(1, gold[:, None], -math.inf)
    return logits


def top_k_positions(keys: torch.Tensor, k: int) -> torch.Tensor:
    """Column positions [n, k] of the k largest ``keys`` [n, c] per row, sorted by decreasing key, equal keys by
    increasing position (so a row's result does not depend on how its columns were chunked)."""
    n, _ = keys.shape
    if k == 0:
        return torch.empty(n, 0, dtype=torch.long, device=keys.device)
    values, pos = keys.topk(k, dim=1)  # [n, k]
    threshold = values[:, -1:]  # [n, 1]
    if n and not bool(((keys >= threshold).sum(1) == k).all()):  # a tie straddles the k-th place
        above, tied = keys > threshold, keys == threshold  # [n, c]
        need = k - above.sum(1, keepdim=True)
        take = above | (tied & (tied.long().cumsum(1) <= need))  # exactly k per row, lowest tied first
        pos = take.nonzero()[:, 1].view(n, k)
    pos = pos.sort(1).values  # ascending positions, then a stable sort by decreasing key
    order = keys.gather(1, pos).sort(dim=1, descending=True, stable=True).indices
    return pos.gather(1, order)


def top_k_lowest_index(
    keys: torch.Tensor, k: int, ids: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The k largest ``keys`` [n, c] per row, ties broken towards the lower id -> (values [n, k], ids [n, k]).

    ``ids`` [n, c] (default: the column positions) must be ascending along each row.
    """
    pos = top_k_positions(keys, k)
    if ids is None:
        return keys.gather(1, pos), pos
    return keys.gather(1, pos), ids.gather(1, pos)


def perturbed_keys(logits: torch.Tensor, noise: Noise) -> torch.Tensor:
    """Gumbel-perturbed logits [n, E]: logits + G, G = -log(-log U) ~ Gumbel(0, 1) (eq. 8 via Gumbel-top-k).

    A generator draws U with ``rand`` (+ log, faster than ``exponential_`` on CPU; U clamped away from 0 so
    the noise stays finite and excluded (-inf) logits stay -inf); a KeyedNoise hashes each (row, column) and
    the keys are float64.
    """
    if isinstance(noise, KeyedNoise):
        return logits.double() + noise.gumbel(logits.shape[1], logits.device)  # [n, E] float64
    u = _rand(tuple(logits.shape), noise, logits.device)  # [n, E]
    u.clamp_(min=torch.finfo(u.dtype).tiny).log_().neg_().log_()  # -log U ~ Exp(1), then its log
    return logits - u


def _gumbel_top_k(logits: torch.Tensor, k: int, noise: Noise) -> torch.Tensor:
    """k indices per row [n, k] drawn sequentially without replacement with P proportional to exp(logits)
    (Gumbel-top-k: the top k of logits + Gumbel noise)."""
    return top_k_lowest_index(perturbed_keys(logits, noise), k)[1]


def _row_uniform(noise: Noise, num_rows: int, counters: range, device) -> torch.Tensor:
    """U(0, 1) float64 [n, len(counters)]: keyed by (row, counter), or the generator's next numbers."""
    if isinstance(noise, KeyedNoise):
        return noise.row_uniform(list(counters), device)
    return _rand((num_rows, len(counters)), noise, device, torch.float64)


def _floyd_subset(num_rows: int, population: int, k: int, generator: Noise, device) -> torch.Tensor:
    """A uniform k-subset of range(population) per row [num_rows, k] in random order (Floyd's algorithm).

    Vectorised over rows; the Python loop runs over the k draws only. Memory O(num_rows * k).
    """
    chosen = torch.empty(num_rows, k, dtype=torch.long, device=device)  # [n, k]
    for step, j in enumerate(range(population - k, population)):
        u = _row_uniform(generator, num_rows, range(step, step + 1), device)[:, 0]
        t = (u * (j + 1)).long().clamp_(max=j)  # uniform on {0..j}
        seen = (chosen[:, :step] == t[:, None]).any(1) if step else torch.zeros_like(t, dtype=torch.bool)
        chosen[:, step] = torch.where(seen, torch.full_like(t, j), t)
    order = _row_uniform(generator, num_rows, range(_ORDER_COUNTER, _ORDER_COUNTER + k), device)
    order = order.argsort(1)  # uniform shuffle
    return chosen.gather(1, order)


def _skip_excluded(ranks: torch.Tensor, excluded: torch.Tensor) -> torch.Tensor:
    """Map ranks r in range(E - m) to the r-th id of range(E) that is not in ``excluded`` [n, m] (distinct)."""
    ids = ranks.clone()  # [n, k]
    for column in excluded.sort(1).values.unbind(1):  # ascending: shift past every excluded id <= current id
        ids += (column[:, None] <= ids).long()
    return ids


def uniform_excluding(
    excluded: torch.Tensor,
    num_entities: int,
    k: int,
    generator: Noise,
    mask: torch.Tensor | None,
) -> torch.Tensor:
    """k distinct ids per row [n, k], uniform over allowed ids not in ``excluded`` [n, m] (m distinct ids).

    Without a mask, no [n, E] tensor is materialised (Floyd + rank mapping); with a mask, Gumbel-top-k over
    uniform logits restricted to the allowed entities.
    """
    n = excluded.shape[0]
    if k == 0:
        return excluded.new_empty(n, 0)
    if mask is None:
        ranks = _floyd_subset(n, num_entities - excluded.shape[1], k, generator, excluded.device)
        return _skip_excluded(ranks, excluded)
    logits = torch.zeros(mask.shape, device=mask.device).masked_fill_(~mask, -math.inf)  # [n, E]
    logits.scatter_(1, excluded, -math.inf)
    if isinstance(generator, KeyedNoise):  # not the hard part's Gumbel noise again
        generator = generator.salted(1)
    return _gumbel_top_k(logits, k, generator)


def uniform_log_probs(ids: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    """log(1 / count) broadcast to ids [n, k]; count [n] = number of allowed non-gold entities."""
    return (-count.double().log()).float()[:, None].expand(ids.shape).contiguous()


def mixture_log_probs(
    logits_at: torch.Tensor, log_normalizer: torch.Tensor, count: torch.Tensor, hard_share: float
) -> torch.Tensor:
    """log(q softmax(s) + (1 - q) / count) per negative [n, k]: the per-draw proposal of eq. (10).

    logits_at [n, k]: the scores of the chosen ids; log_normalizer [n]: logsumexp of the scores over the allowed
    non-gold entities; count [n]: their number; q = hard_share (1: hard, 0: uniform).
    """
    if hard_share == 0.0:
        return uniform_log_probs(logits_at, count)
    hard = logits_at.float() - log_normalizer.float()[:, None]
    if hard_share == 1.0:
        return hard
    uniform = uniform_log_probs(logits_at, count)
    return torch.logaddexp(hard + math.log(hard_share), uniform + math.log1p(-hard_share))


def random_order_draws(gold: torch.Tensor, num_entities: int, k: int, noise: Noise) -> torch.Tensor:
    """k distinct non-gold ids per row [n, k] in uniformly random order (Floyd + rank mapping; no [n, E])."""
    return uniform_excluding(gold[:, None], num_entities, k, noise, None)


def num_random_draws(num_negatives: int, num_hard: int) -> int:
    """How many ordered uniform draws a row needs: none for hard/topk, K - 1 otherwise (see module doc)."""
    return 0 if num_hard == num_negatives else num_negatives


def combine_hard_and_random(hard: torch.Tensor, draws: torch.Tensor, num_negatives: int) -> torch.Tensor:
    """[hard ids, then the first K-1-k_hard ``draws`` that are not hard] -> [n, K-1] (positions into draws).

    Returns the column positions into ``draws`` [n, K-1] of the kept random ids (so callers can carry their
    scores along); the kept ids are ``draws.gather(1, positions)``.
    """
    n, num_rand = hard.shape[0], num_negatives - hard.shape[1]
    if num_rand == 0:
        return draws.new_empty(n, 0)
    fresh = ~(draws[:, :, None] == hard[:, None, :]).any(2)  # [n, K-1]
    keep = fresh & (fresh.long().cumsum(1) <= num_rand)  # the first num_rand fresh draws
    return keep.nonzero()[:, 1].view(n, num_rand)
