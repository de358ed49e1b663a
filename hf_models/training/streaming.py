"""Exact streaming negative sampling: a host-memory entity store streamed to the device in chunks.

At Zeshel size a sum-of-max store is 332,632 x 128 x 768 values (65 GB in fp16) and one mention's full score row
over the training pool is 332,632 floats, so the miner never materialises either on the device. For a chunk of
mentions it streams this process's shard of the pool's entities (host memory, pinned when CUDA is present) to
the device ``chunk_size`` entities at a time and keeps, per mention:

- the running top ``k_hard`` of the Gumbel-perturbed logits ``s + G`` (hard / mixed) or of ``s`` (topk), with
  ties broken towards the lower pool position (:func:`~hf_models.training.draws.top_k_positions`);
- the running logsumexp of the allowed non-gold logits (the normalizer of the proposal of eq. 10);
- the logits of the mention's pre-drawn ordered uniform ids (the random part of mixed, see :func:`~hf_models.training.draws.random_order_draws`).

G comes from :class:`~hf_models.training.keyed_noise.KeyedNoise`, a hash of (seed, epoch, mention id, entity id), so each
(mention, entity) key is the same whatever the chunking; the top-k of a union is the top-k of the partial top-k
lists, so merging chunks (and the partial lists of N processes, each holding 1/N of the entities) gives exactly
the full-row sampler's draw (tested: ``tests/test_streaming.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..modeling.scoring import Representation
from .draws import top_k_positions
from .keyed_noise import KeyedNoise


@dataclass
class PartialDraw:
    """Running results for n mentions over the entities seen so far (pool positions; -1 / -inf = empty)."""

    keys: torch.Tensor  # [n, k] perturbed keys (float64 for hard/mixed, the logits for topk)
    ids: torch.Tensor  # [n, k] long pool positions
    logits: torch.Tensor  # [n, k] float32 scores of ids (gold excluded)
    log_normalizer: torch.Tensor  # [n] float32 logsumexp of the allowed non-gold logits seen
    draw_logits: torch.Tensor  # [n, R] float32 logits of the pre-drawn uniform ids (nan = not seen)

    @classmethod
    def empty(cls, num_rows: int, num_draws: int, key_dtype: torch.dtype, device) -> PartialDraw:
        return cls(
            keys=torch.empty(num_rows, 0, dtype=key_dtype, device=device),
            ids=torch.empty(num_rows, 0, dtype=torch.long, device=device),
            logits=torch.empty(num_rows, 0, device=device),
            log_normalizer=torch.full((num_rows,), -torch.inf, device=device),
            draw_logits=torch.full((num_rows, num_draws), torch.nan, device=device),
        )

    def to(self, device) -> PartialDraw:
        return PartialDraw(*(getattr(self, f).to(device) for f in self.__dataclass_fields__))


def merge_partials(parts: list[PartialDraw], k: int) -> PartialDraw:
    """The partial results of disjoint entity sets -> the result over their union (top-k of the top-k's)."""
    keys = torch.cat([p.keys for p in parts], 1)  # [n, sum k_i]
    ids = torch.cat([p.ids for p in parts], 1)
    logits = torch.cat([p.logits for p in parts], 1)
    order = ids.argsort(dim=1, stable=True)  # top_k_positions breaks ties by column: columns by ascending id
    keys, ids, logits = keys.gather(1, order), ids.gather(1, order), logits.gather(1, order)
    pos = top_k_positions(keys, min(k, keys.shape[1]))
    draw_logits = parts[0].draw_logits
    for part in parts[1:]:
        draw_logits = torch.where(torch.isnan(draw_logits), part.draw_logits, draw_logits)
    return PartialDraw(
        keys=keys.gather(1, pos),
        ids=ids.gather(1, pos),
        logits=logits.gather(1, pos),
        log_normalizer=torch.stack([p.log_normalizer for p in parts]).logsumexp(0),
        draw_logits=draw_logits,
    )


def pin_if_cuda(rep: Representation) -> Representation:
    """Page-lock a host store when CUDA is present (asynchronous host -> device copies)."""
    if torch.cuda.is_available() and rep.vectors.device.type == "cpu":
        return Representation(vectors=rep.vectors.pin_memory(), mask=rep.mask.pin_memory())
    return rep


@torch.no_grad()
def stream_partial(
    model,
    mentions: Representation,
    store: Representation,
    store_start: int,
    gold: torch.Tensor,
    num_hard: int,
    noise: KeyedNoise | None,
    draws: torch.Tensor,
    *,
    chunk_size: int,
    device: torch.device,
    score_dtype: torch.dtype = torch.float32,
) -> PartialDraw:
    """Score n mentions against ``store`` (entities ``store_start ..`` of the pool, host memory) chunk by chunk.

    mentions: [n, L, H] representations; gold [n] and draws [n, R]: pool positions; noise: the mentions' keyed
    noise with one column key per POOL entity (None = greedy top-k); score_dtype: the dtype both sides are cast to
    for the products (the index's ``score_dtype``: float32 exact, bf16 on GPUs). Returns this store's
    :class:`PartialDraw`; keys, logsumexp and selections are computed in float32 / float64 whatever score_dtype.
    """
    n, num_draws = gold.shape[0], draws.shape[1]
    mentions = mentions.to(device, score_dtype)
    gold, draws = gold.to(device), draws.to(device)
    key_dtype = torch.float32 if noise is None else torch.float64
    result = PartialDraw.empty(n, num_draws, key_dtype, device)
    rows = torch.arange(n, device=device)
    for start in range(0, len(store), chunk_size):
        end = min(start + chunk_size, len(store))
        block = store[start:end].to(device, non_blocking=True).to(score_dtype)  # [c, L', H]
        logits = model.score_all(mentions, block).float()  # [n, c]
        first, width = store_start + start, end - start
        local_gold = gold - first
        inside = (local_gold >= 0) & (local_gold < width)
        logits[rows[inside], local_gold[inside]] = -torch.inf  # the gold is never a negative
        result.log_normalizer = torch.logaddexp(result.log_normalizer, logits.logsumexp(1))
        if num_draws:
            local = draws - first
            seen = (local >= 0) & (local < width)
            picked = logits.gather(1, local.clamp(0, width - 1))
            result.draw_logits = torch.where(seen, picked, result.draw_logits)
        if num_hard:
            if noise is None:
                keys = logits
            else:
                keys = logits.double() + noise.cols(slice(first, first + width)).gumbel(device=device)
            pos = top_k_positions(keys, min(num_hard, width))  # [n, k']
            chunk = PartialDraw(
                keys=keys.gather(1, pos),
                ids=pos + first,
                logits=logits.gather(1, pos),
                log_normalizer=result.log_normalizer,
                draw_logits=result.draw_logits,
            )
            merged = merge_partials([result, chunk], num_hard)
            result.keys, result.ids, result.logits = merged.keys, merged.ids, merged.logits
    return result
