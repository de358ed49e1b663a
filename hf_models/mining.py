"""Negative mining over world-local candidates, sharded across processes, identical for any process count.

The mentions of each world are cut into fixed chunks (independent of the number of processes); chunk c is
handled by process c mod N and sampled with a generator seeded by (seed, epoch, c). The per-chunk results are
gathered, so a run with N processes draws exactly the negatives of a 1-process run with the same seed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from .entity_index import EntityIndex, map_chunks_sharded
from .samplers import sample_negatives
from .tables import EntityTable, MentionTable

logger = logging.getLogger(__name__)

SCORED_STRATEGIES = ("hard", "mixed", "topk")
STRATEGIES = ("random",) + SCORED_STRATEGIES


@dataclass
class MinedNegatives:
    """Negatives of every training mention for one epoch (rows index the global EntityTable)."""

    epoch: int
    ids: torch.Tensor  # [N, K-1] long, global entity rows
    log_probs: torch.Tensor  # [N, K-1] float, log nu(y | x, y1) of each negative's proposal (eq. 10)

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "ids": self.ids, "log_probs": self.log_probs}

    @classmethod
    def from_state_dict(cls, state: dict) -> MinedNegatives:
        return cls(epoch=int(state["epoch"]), ids=state["ids"], log_probs=state["log_probs"])


def chunk_seed(seed: int, epoch: int, chunk: int) -> int:
    """A deterministic 63-bit seed for one (epoch, chunk) of mining."""
    return (seed * 1_000_003 + epoch * 7_919 + chunk * 104_729) % (2**63 - 1)


def mention_chunks(mentions: MentionTable, chunk_size: int) -> list[tuple[str, torch.Tensor]]:
    """Fixed (world, mention indices) chunks in a process-independent order."""
    chunks = []
    for world, indices in mentions.indices_by_world().items():
        chunks.extend((world, indices[s : s + chunk_size]) for s in range(0, len(indices), chunk_size))
    return chunks


class NegativeMiner:
    """Draw K-1 negatives per training mention from its OWN world's entities with the current model.

    Args:
        index: the EntityIndex wrapping the model being trained (re-encoded at every `mine` call).
        mentions / entities: the training tables.
        strategy: "random" (uniform over the world's entities, gold excluded), "hard" (eq. 8), "mixed", "topk".
        num_negatives: K-1.
        hard_fraction: share of hard negatives for "mixed" (p / 100).
        seed: base seed; negatives depend only on (seed, epoch, model), never on the number of processes.
        chunk_size: mentions scored per chunk (bounds memory at chunk_size x world size scores).
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
    ) -> None:
        if strategy not in STRATEGIES:
            raise ValueError(f"negatives must be one of {STRATEGIES}, got {strategy!r}")
        self.index = index
        self.mentions = mentions
        self.entities = entities
        self.strategy = strategy
        self.num_negatives = num_negatives
        self.hard_fraction = hard_fraction
        self.seed = seed
        self.chunk_size = chunk_size
        self._local_gold = self._world_local_gold()

    def _world_local_gold(self) -> torch.Tensor:
        """Position of each mention's gold inside its world's entity rows -> [N]."""
        position = torch.empty(len(self.entities), dtype=torch.long)
        for rows in self.entities.rows_by_world.values():
            position[rows] = torch.arange(len(rows))
        return position[self.mentions.gold_rows]

    def mine(self, epoch: int) -> MinedNegatives:
        """Re-encode the training entities with the current model (when scores are needed) and sample."""
        chunks = mention_chunks(self.mentions, self.chunk_size)
        if self.strategy in SCORED_STRATEGIES:
            for world in sorted({world for world, _ in chunks}):
                self.index.add_world(world, *self.entities.world_subset(world))
        results = map_chunks_sharded(
            self.index.accelerator,
            len(chunks),
            lambda c: self._mine_chunk(epoch, c, *chunks[c]),
            desc=f"mining ({self.strategy}) epoch {epoch}",
        )
        self.index.worlds.clear()  # free the training worlds' representations until the next epoch
        return self._assemble(epoch, chunks, results)

    def _mine_chunk(
        self, epoch: int, chunk: int, world: str, indices: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        generator = torch.Generator().manual_seed(chunk_seed(self.seed, epoch, chunk))
        world_rows = self.entities.rows_by_world[world]
        scores = None
        if self.strategy in SCORED_STRATEGIES:
            reps = self.index.encode_mentions(
                self.mentions.input_ids[indices], self.mentions.attention_mask[indices]
            )
            scores = self.index.score(world, reps)  # [n, E_w]
        sample = sample_negatives(
            self.strategy,
            scores,
            self._local_gold[indices],
            self.num_negatives,
            generator,
            hard_fraction=self.hard_fraction,
            num_entities=len(world_rows),
        )
        return world_rows[sample.ids], sample.log_probs.float()

    def _assemble(self, epoch: int, chunks, results) -> MinedNegatives:
        ids = torch.empty(len(self.mentions), self.num_negatives, dtype=torch.long)
        log_probs = torch.empty(len(self.mentions), self.num_negatives)
        for c, (_, indices) in enumerate(chunks):
            ids[indices], log_probs[indices] = results[c]
        return MinedNegatives(epoch=epoch, ids=ids, log_probs=log_probs)
