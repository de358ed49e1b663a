"""Batches of (mention, gold + K-1 negatives) built from the tables and the current epoch's negatives."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..index.tables import EntityTable, MentionTable, candidate_inputs
from .mining import MinedNegatives


class MentionIndexDataset(torch.utils.data.Dataset):
    """The training set seen by the Trainer: mention indices; the collator looks up everything else."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> dict[str, int]:
        return {"mention_index": index}


@dataclass
class NegativesStore:
    """Holds the negatives of the current epoch; written by the mining callback, read by the collator."""

    current: MinedNegatives | None = None


class CandidateCollator:
    """Collate mention indices into model inputs: candidate 0 is the gold, 1..K-1 the current negatives.

    `cross=True` builds `[CLS] x [SEP] y` pairs for the joint reranker; otherwise separate mention/entity inputs.
    `share_candidates=True` adds the candidates' entity rows as `candidate_ids` [B, K] (in-batch sharing).
    """

    def __init__(
        self,
        mentions: MentionTable,
        entities: EntityTable,
        store: NegativesStore,
        cross: bool = False,
        share_candidates: bool = False,
    ) -> None:
        self.mentions, self.entities, self.store, self.cross = mentions, entities, store, cross
        self.share_candidates = share_candidates

    def __call__(self, features: list[dict[str, int]]) -> dict[str, torch.Tensor]:
        if self.store.current is None:
            raise RuntimeError(
                "no negatives mined yet: the NegativeMiningCallback must run before the first batch"
            )
        index = torch.tensor([f["mention_index"] for f in features], dtype=torch.long)
        negatives = self.store.current
        candidates = torch.cat([self.mentions.gold_rows[index, None], negatives.ids[index]], dim=1)  # [B, K]
        batch = candidate_inputs(self.mentions, self.entities, index, candidates, self.cross)
        batch["negative_log_probs"] = negatives.log_probs[index]  # [B, K-1]
        if self.share_candidates:  # entity rows: mask golds and repeats in the shared candidate set
            batch["candidate_ids"] = candidates  # [B, K]
        return batch


class WorldBatchSampler(torch.utils.data.Sampler[int]):
    """Mention indices ordered so that every batch of ``batch_size`` consecutive indices holds one world's mentions.

    Not in the paper (``--group_batches_by_world``). Per epoch, seeded by (seed, epoch): each world's mentions are
    shuffled and cut into full batches; the leftovers of all worlds are shuffled together into mixed batches; the
    full batches are shuffled, then the mixed ones follow (a short one last), so the DataLoader's batch boundaries
    fall on these groups. With shared candidates a mention's in-batch negatives are then entities of its own world,
    and its hard negative is more often another batch mention's gold (one encoding for both slots).
    """

    def __init__(self, mentions: MentionTable, batch_size: int, seed: int) -> None:
        if batch_size < 1:
            raise ValueError(f"WorldBatchSampler: batch_size must be >= 1, got {batch_size}")
        self.by_world = mentions.indices_by_world()
        self.batch_size, self.seed, self.epoch = batch_size, seed, 0
        self.size = len(mentions)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.size

    def batches(self) -> list[torch.Tensor]:
        """This epoch's batches of mention indices (every one but possibly the last has batch_size rows)."""
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        full, leftovers = [], []
        for indices in self.by_world.values():
            shuffled = indices[torch.randperm(len(indices), generator=generator)]
            cut = len(shuffled) - len(shuffled) % self.batch_size
            full += list(shuffled[:cut].split(self.batch_size))
            leftovers.append(shuffled[cut:])
        rest = torch.cat(leftovers)
        mixed = (
            list(rest[torch.randperm(len(rest), generator=generator)].split(self.batch_size))
            if len(rest)
            else []
        )
        order = torch.randperm(len(full), generator=generator).tolist()
        return [full[i] for i in order] + mixed

    def __iter__(self):
        for batch in self.batches():
            yield from batch.tolist()
