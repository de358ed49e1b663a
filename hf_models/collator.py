"""Batches of (mention, gold + K-1 negatives) built from the tables and the current epoch's negatives."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .mining import MinedNegatives
from .tables import EntityTable, MentionTable


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


def _trim(ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Drop the all-padding columns at the right of a [..., T] batch."""
    width = max(int(mask.sum(-1).max()), 1)
    return ids[..., :width], mask[..., :width]


def pair_inputs(mention_ids, mention_mask, entity_ids, entity_mask) -> dict[str, torch.Tensor]:
    """[CLS] x [SEP] y [SEP] for the joint reranker: mention [B, T] x candidates [B, C, T'] -> [B, C, T+T'-1]."""
    batch, num_cands, _ = entity_ids.shape
    pairs, masks, types = [], [], []
    for b in range(batch):
        m_len = int(mention_mask[b].sum())
        for c in range(num_cands):
            e_len = int(entity_mask[b, c].sum())
            ids = torch.cat([mention_ids[b, :m_len], entity_ids[b, c, 1:e_len]])  # drop the entity's [CLS]
            pairs.append(ids)
            masks.append(torch.ones_like(ids))
            types.append(
                torch.cat([torch.zeros(m_len, dtype=torch.long), torch.ones(e_len - 1, dtype=torch.long)])
            )
    pad = torch.nn.utils.rnn.pad_sequence
    shape = (batch, num_cands, -1)
    return {
        "pair_input_ids": pad(pairs, batch_first=True).view(shape),
        "pair_attention_mask": pad(masks, batch_first=True).view(shape),
        "pair_token_type_ids": pad(types, batch_first=True).view(shape),
    }


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


def candidate_inputs(
    mentions: MentionTable, entities: EntityTable, index: torch.Tensor, candidates: torch.Tensor, cross: bool
) -> dict[str, torch.Tensor]:
    """Model inputs for mentions `index` [B] against candidate entity rows [B, C] (padding trimmed)."""
    m_ids, m_mask = _trim(mentions.input_ids[index], mentions.attention_mask[index])  # [B, T]
    e_ids, e_mask = _trim(entities.input_ids[candidates], entities.attention_mask[candidates])  # [B, C, T']
    if cross:
        return pair_inputs(m_ids, m_mask, e_ids, e_mask)
    return {
        "mention_input_ids": m_ids,
        "mention_attention_mask": m_mask,
        "entity_input_ids": e_ids,
        "entity_attention_mask": e_mask,
    }


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
