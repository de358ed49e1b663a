"""Negative mining: exact streaming draws from the training pool (or each mention's world), any process count.

Every epoch, for each pool (``training``: one pool with every entity of every training world, the paper's
setting, Sections 6.2-6.3; ``world``: one pool per world with that world's entities), each of the N processes
encodes its contiguous 1/N shard of the pool's entities into a host-memory store (the index's store dtype,
pinned when CUDA is present). The mentions are cut into fixed chunks (independent of N); for each chunk every
process encodes 1/N of its mentions (gathered), streams its entity shard through the device
(:func:`~hf_models.training.streaming.stream_partial`), and the partial top-(K-1) lists of the processes are gathered and
merged. All random numbers are keyed by (seed, epoch, mention id, entity id / counter), so the negatives are
exactly those of the full-row sampler (``samplers.sample_negatives`` with a ``KeyedNoise``) for any chunk
size and any number of processes (tested with 2 gloo processes).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import torch

from ..index.entity_index import EntityIndex
from ..index.sharding import gather_rows, shard_bounds
from ..index.tables import EntityTable, MentionTable
from ..modeling.scoring import Representation
from ..progress import tqdm
from .draws import (
    combine_hard_and_random,
    mixture_log_probs,
    num_random_draws,
    random_order_draws,
)
from .keyed_noise import KeyedNoise, string_keys
from .streaming import PartialDraw, merge_partials, pin_if_cuda, stream_partial
from .training_args import NEGATIVE_POOLS as POOLS

logger = logging.getLogger(__name__)

SCORED_STRATEGIES = ("hard", "mixed", "topk")
STRATEGIES = ("random",) + SCORED_STRATEGIES


@dataclass
class MinedNegatives:
    """Negatives of every training mention for one epoch (rows index the global EntityTable)."""

    epoch: int
    ids: torch.Tensor  # [N, K-1] long, global entity rows
    log_probs: torch.Tensor  # [N, K-1] float, log nu(y | x, y1) of each negative's proposal (eq. 10)
    # what the negatives were mined for (training mentions, entities, K, sampler settings): a resumed run checks it
    # against its own (hf_models.training.checkpoints.negatives_problem); None in checkpoints written before it existed
    fingerprint: dict | None = None

    def state_dict(self) -> dict:
        state = {"epoch": self.epoch, "ids": self.ids, "log_probs": self.log_probs}
        return state if self.fingerprint is None else {**state, "fingerprint": self.fingerprint}

    @classmethod
    def from_state_dict(cls, state: dict) -> MinedNegatives:
        return cls(
            epoch=int(state["epoch"]),
            ids=state["ids"],
            log_probs=state["log_probs"],
            fingerprint=state.get("fingerprint"),
        )


@dataclass
class Pool:
    """The candidate entities of some mentions: global entity rows [P] and the mention indices [n]."""

    name: str
    entity_rows: torch.Tensor
    mention_indices: torch.Tensor


def negative_pools(
    mentions: MentionTable, entities: EntityTable, pool: str, alias_rows: torch.Tensor | None = None
) -> list[Pool]:
    """The pools negatives are drawn from, each with the mentions that draw from it.

    ``training``: one pool of every entity of the training mentions' worlds (sorted); ``world``: one per world
    with all of that world's entities; ``labeled``: one per world with only the entities that are the gold of some
    training mention of that world (sorted rows) -- sentence-transformers' ``mine_hard_negatives`` default corpus
    (the positives), re-encoded at a fraction of a world's cost; ``alias``: the labeled entities of a world plus the
    alias candidates of its training mentions (``alias_rows`` [N, C], global entity rows padded with -1, from
    :func:`~hf_models.index.alias_metrics.alias_candidates`): the entities a mention's name can refer to, so
    that the hard negatives are mostly its other senses.
    """
    if pool not in POOLS:
        raise ValueError(f"negative_pool must be one of {POOLS}, got {pool!r}")
    by_world = mentions.indices_by_world()  # sorted worlds
    if pool == "world":
        return [Pool(w, entities.rows_by_world[w], idx) for w, idx in by_world.items()]
    if pool == "labeled":
        return [Pool(f"{w} (labeled)", mentions.gold_rows[idx].unique(), idx) for w, idx in by_world.items()]
    if pool == "alias":
        if alias_rows is None or len(alias_rows) != len(mentions):
            raise ValueError(
                "negative_pool='alias' needs alias_rows [N, C] for the N training mentions (an alias table: "
                "pass the processed folder's aliases.parquet, see docs/own_kb.md)"
            )
        pools = []
        for w, idx in by_world.items():
            candidates = alias_rows[idx].flatten()  # [n * C]
            rows = torch.cat([mentions.gold_rows[idx], candidates[candidates >= 0]]).unique()  # sorted
            pools.append(Pool(f"{w} (alias)", rows, idx))
        return pools
    rows = torch.cat([entities.rows_by_world[w] for w in by_world])
    return [Pool("training", rows, torch.arange(len(mentions)))]


class NegativeMiner:
    """Draw K-1 negatives per training mention from its pool's entities with the current model.

    Args:
        index: the EntityIndex wrapping the model being trained (its model, accelerator, encoder batch size,
            encode dtype, store dtype and entity chunk size are used).
        mentions / entities: the training tables.
        strategy: "random" (uniform over the pool, gold excluded), "hard" (eq. 8), "mixed", "topk".
        num_negatives: K-1.
        hard_fraction: share of hard negatives for "mixed" (p / 100).
        seed: base seed; negatives depend only on (seed, epoch, model), never on chunking or process count.
        chunk_size: mentions per chunk (device memory: chunk_size x entity chunk scores).
        pool: "training" (all entities of all training worlds; Section 6.3), "world" (the mention's world),
            "labeled" (the golds of the training mentions of the mention's world) or "alias" (those plus the
            alias candidates of the world's training mentions: ``alias_rows`` [N, C], -1 padded).
    """

    def __init__(
        self,
        index: EntityIndex,
        mentions: MentionTable,
        entities: EntityTable,
        *,
        strategy: str,
        num_negatives: int,
        hard_fraction: float = 0.5,
        seed: int = 0,
        chunk_size: int = 256,
        pool: str = "world",
        alias_rows: torch.Tensor | None = None,
    ) -> None:
        if strategy not in STRATEGIES:
            raise ValueError(f"negatives must be one of {STRATEGIES}, got {strategy!r}")
        if not 0.0 <= hard_fraction <= 1.0:
            raise ValueError(f"hard_fraction must be in [0, 1], got {hard_fraction}")
        if num_negatives < 1 or chunk_size < 1:
            raise ValueError(
                f"num_negatives and chunk_size must be >= 1, got {num_negatives} and {chunk_size}"
            )
        self.index = index
        self.mentions = mentions
        self.entities = entities
        self.strategy = strategy
        self.num_negatives = num_negatives
        self.hard_fraction = hard_fraction
        self.seed = seed
        self.chunk_size = chunk_size
        self.pool = pool
        self.pools = negative_pools(mentions, entities, pool, alias_rows)
        for p in self.pools:
            if len(p.entity_rows) - 1 < num_negatives:
                raise ValueError(
                    f"negative pool {p.name!r} has {len(p.entity_rows)} entities: cannot draw {num_negatives} "
                    f"distinct non-gold negatives (K - 1); lower num_candidates or use negative_pool='training'"
                )
        self.mention_keys = string_keys(mentions.mention_ids)  # [N]
        self.entity_keys = string_keys(entities.entity_ids)  # [E]
        self.gold_positions = torch.empty(len(mentions), dtype=torch.long)  # [N] gold's position in its pool
        for p in self.pools:
            gold_rows = mentions.gold_rows[p.mention_indices]
            self.gold_positions[p.mention_indices] = _pool_positions(p.entity_rows, gold_rows)
        if strategy == "topk":
            self.num_hard = num_negatives
        elif strategy == "mixed":
            self.num_hard = round(hard_fraction * num_negatives)
        else:
            self.num_hard = num_negatives if strategy == "hard" else 0
        self.stats: dict[str, float] = {}  # seconds per stage of the last mine() (for benchmarks)

    @property
    def rank(self) -> int:
        return self.index.process_index

    @property
    def world_size(self) -> int:
        return self.index.num_processes

    def mine(self, epoch: int) -> MinedNegatives:
        """Re-encode the pools' entities with the current model (when scores are needed) and sample."""
        ids = torch.empty(len(self.mentions), self.num_negatives, dtype=torch.long)
        log_probs = torch.empty(len(self.mentions), self.num_negatives)
        self.stats = {"encode_entities_s": 0.0, "mine_s": 0.0}
        for pool in self.pools:
            store, store_start = None, 0
            if self.strategy in SCORED_STRATEGIES:
                began = time.perf_counter()
                store, store_start = self._encode_shard(pool)
                self.stats["encode_entities_s"] += time.perf_counter() - began
            began = time.perf_counter()
            chunks = pool.mention_indices.split(self.chunk_size)
            show = self.index.show_progress and self.rank == 0 and len(chunks) > 1
            for indices in tqdm(
                chunks,
                desc=f"mining {self.strategy} ({pool.name}) epoch {epoch}",
                disable=None if show else True,
            ):
                pool_ids, chunk_log_probs = self._mine_chunk(epoch, pool, indices, store, store_start)
                ids[indices] = pool.entity_rows[pool_ids.cpu()]
                log_probs[indices] = chunk_log_probs.cpu()
            self.stats["mine_s"] += time.perf_counter() - began
            del store
        logger.info(
            "epoch %d: mined %s negatives from the %s pool(s) in %.1f s (entity encoding %.1f s)",
            epoch,
            self.strategy,
            self.pool,
            self.stats["mine_s"] + self.stats["encode_entities_s"],
            self.stats["encode_entities_s"],
        )
        return MinedNegatives(epoch=epoch, ids=ids, log_probs=log_probs)

    # ------------------------------------------------------------------ stages
    def _encode(self, encode_fn, input_ids, attention_mask, desc) -> Representation:
        """The index's encoder settings (batch / token budget, autocast, store dtype) on this process only."""
        model = self.index.model
        was_training = model.training
        model.eval()
        try:
            return self.index._encode(encode_fn, input_ids, attention_mask, desc)
        finally:
            model.train(was_training)

    def _encode_shard(self, pool: Pool) -> tuple[Representation, int]:
        """This process's contiguous 1/N shard of the pool's entities, encoded into host memory."""
        start, end = shard_bounds(len(pool.entity_rows), self.world_size, self.rank)
        rows = pool.entity_rows[start:end]
        if end <= start:  # more processes than entities: an empty shard
            probe = self._encode(
                self.index.model.encode_entities,
                self.entities.input_ids[pool.entity_rows[:1]],
                self.entities.attention_mask[pool.entity_rows[:1]],
                "probe",
            )
            return Representation(vectors=probe.vectors[:0], mask=probe.mask[:0]), start
        rep = self._encode(
            self.index.model.encode_entities,
            self.entities.input_ids[rows],
            self.entities.attention_mask[rows],
            f"encoding {pool.name} entities",
        )
        return pin_if_cuda(rep), start

    def _encode_mentions(self, indices: torch.Tensor) -> Representation:
        """Each process encodes 1/N of the chunk's mentions; all-gathered so every process has the chunk."""
        start, end = shard_bounds(len(indices), self.world_size, self.rank)
        local = indices[start:end] if end > start else indices[:1]
        rep = self._encode(
            self.index.model.encode_mentions,
            self.mentions.input_ids[local],
            self.mentions.attention_mask[local],
            "encoding mentions",
        )
        if end <= start:
            rep = Representation(vectors=rep.vectors[:0], mask=rep.mask[:0])
        if self.world_size == 1:
            return rep
        return gather_rows(self.index.accelerator, rep, len(indices))

    def _mine_chunk(
        self, epoch: int, pool: Pool, indices: torch.Tensor, store: Representation | None, store_start: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Pool positions [n, K-1] and log-probs [n, K-1] of one mention chunk."""
        pool_size = len(pool.entity_rows)
        gold = self.gold_positions[indices]  # [n] pool positions
        noise = KeyedNoise(self.seed, epoch, self.mention_keys[indices], self.entity_keys[pool.entity_rows])
        num_draws = num_random_draws(self.num_negatives, self.num_hard)
        draws = random_order_draws(gold, pool_size, num_draws, noise)  # [n, R]
        count = torch.full(gold.shape, pool_size - 1, dtype=torch.long)
        if store is None:  # random: no scores needed
            return draws, mixture_log_probs(draws.float(), torch.zeros(len(gold)), count, 0.0)
        mentions = self._encode_mentions(indices)
        partial = stream_partial(
            self.index.model,
            mentions,
            store,
            store_start,
            gold,
            self.num_hard,
            None if self.strategy == "topk" else noise,
            draws,
            chunk_size=self.index.chunk_size,
            device=self.index.device,
            score_dtype=getattr(self.index, "score_dtype", torch.float32),
        ).to("cpu")
        if self.world_size > 1:
            partial = self._merge_processes(partial)
        rand_pos = combine_hard_and_random(partial.ids, draws, self.num_negatives)
        ids = torch.cat([partial.ids, draws.gather(1, rand_pos)], 1)  # [n, K-1]
        logits_at = torch.cat([partial.logits, partial.draw_logits.gather(1, rand_pos)], 1)
        log_probs = mixture_log_probs(
            logits_at, partial.log_normalizer, count, self.num_hard / self.num_negatives
        )
        return ids, log_probs

    def _merge_processes(self, partial: PartialDraw) -> PartialDraw:
        """All-gather every process's partial top-k lists (padded to k_hard) and merge them."""
        accelerator, k = self.index.accelerator, self.num_hard
        missing = k - partial.ids.shape[1]
        if missing:  # a shard smaller than k_hard: pad with empty slots
            n = partial.ids.shape[0]
            partial.keys = torch.cat([partial.keys, partial.keys.new_full((n, missing), -torch.inf)], 1)
            partial.ids = torch.cat([partial.ids, partial.ids.new_full((n, missing), -1)], 1)
            partial.logits = torch.cat([partial.logits, partial.logits.new_full((n, missing), -torch.inf)], 1)
        fields = ("keys", "ids", "logits", "log_normalizer", "draw_logits")
        gathered = {
            f: accelerator.gather(getattr(partial, f)[None].to(accelerator.device)).cpu() for f in fields
        }  # each [P, n, ...]
        parts = [PartialDraw(*(gathered[f][p] for f in fields)) for p in range(self.world_size)]
        return merge_partials(parts, k)


def _pool_positions(pool_rows: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Positions [n] of global entity ``rows`` inside ``pool_rows`` (every row must be in the pool)."""
    order = pool_rows.argsort()
    found = torch.searchsorted(pool_rows[order], rows)
    positions = order[found.clamp(max=len(pool_rows) - 1)]
    if not bool((pool_rows[positions] == rows).all()):
        raise ValueError("a mention's gold entity is not in its negative pool (world tables disagree)")
    return positions
