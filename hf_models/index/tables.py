"""In-memory views of the processed tables (docs/design.md) as tensors, with the world structure resolved."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class EntityTable:
    """Featurized entities: row r is entity `entity_ids[r]` of world `worlds[r]`."""

    entity_ids: list[str]
    worlds: list[str]
    titles: list[str]
    input_ids: torch.Tensor  # [E, T]
    attention_mask: torch.Tensor  # [E, T]
    row_of: dict[str, int] = field(init=False)
    rows_by_world: dict[str, torch.Tensor] = field(init=False)  # world -> global rows [E_w]

    def __post_init__(self) -> None:
        self.row_of = {}
        for row, entity_id in enumerate(self.entity_ids):
            if not entity_id:
                raise ValueError(f"entity row {row} (world {self.worlds[row]!r}) has an empty entity_id")
            if entity_id in self.row_of:
                raise ValueError(
                    f"duplicate entity_id {entity_id!r} (rows {self.row_of[entity_id]} and {row})"
                )
            self.row_of[entity_id] = row
        by_world: dict[str, list[int]] = {}
        for row, world in enumerate(self.worlds):
            by_world.setdefault(world, []).append(row)
        self.rows_by_world = {w: torch.tensor(rows, dtype=torch.long) for w, rows in by_world.items()}

    def __len__(self) -> int:
        return len(self.entity_ids)

    @classmethod
    def from_dataset(cls, dataset) -> EntityTable:
        """From a featurized entity `datasets.Dataset` (entity_id, world, title, entity_input_ids, ...)."""
        _require(
            dataset, ("entity_id", "world", "title", "entity_input_ids", "entity_attention_mask"), "entities"
        )
        table = dataset.with_format("torch", columns=["entity_input_ids", "entity_attention_mask"])[:]
        return cls(
            entity_ids=list(dataset["entity_id"]),
            worlds=list(dataset["world"]),
            titles=list(dataset["title"]),
            input_ids=table["entity_input_ids"],
            attention_mask=table["entity_attention_mask"],
        )

    def world_subset(self, world: str) -> tuple[list[str], torch.Tensor, torch.Tensor]:
        """(entity ids, input_ids [E_w, T], attention_mask [E_w, T]) of one world."""
        if world not in self.rows_by_world:
            raise KeyError(f"world {world!r} has no entities (known worlds: {sorted(self.rows_by_world)})")
        rows = self.rows_by_world[world]
        return [self.entity_ids[r] for r in rows.tolist()], self.input_ids[rows], self.attention_mask[rows]


@dataclass
class MentionTable:
    """Featurized mentions with their gold entity resolved to a row of an :class:`EntityTable`."""

    mention_ids: list[str]
    worlds: list[str]
    categories: list[str]
    surfaces: list[str]
    contexts: list[str]  # "... left [mention] right ..." (for reports)
    gold_rows: torch.Tensor  # [N] global entity rows
    input_ids: torch.Tensor  # [N, T]
    attention_mask: torch.Tensor  # [N, T]
    # each mention's normalized alias key (the dataset's ``alias`` column, data_scripts/aliases.py); None when the
    # dataset has none: the key is then the normalized surface (hf_models.index.alias_metrics.alias_keys)
    alias_keys: list[str] | None = None

    def __len__(self) -> int:
        return len(self.mention_ids)

    @classmethod
    def from_dataset(cls, dataset, entities: EntityTable, split: str = "mentions") -> MentionTable:
        """From a featurized mention dataset; every gold must exist in `entities` and in the mention's world."""
        _require(
            dataset,
            ("mention_id", "world", "label_id", "mention", "mention_input_ids", "mention_attention_mask"),
            split,
        )
        first_row: dict[str, int] = {}
        for row, mention_id in enumerate(dataset["mention_id"]):
            if not mention_id or mention_id in first_row:
                problem = (
                    "an empty mention_id" if not mention_id else f"rows {first_row[mention_id]} and {row}"
                )
                raise ValueError(f"{split}: duplicate or empty mention_id {mention_id!r} ({problem})")
            first_row[mention_id] = row
        gold_rows = []
        for mention_id, world, label in zip(
            dataset["mention_id"], dataset["world"], dataset["label_id"], strict=True
        ):
            row = entities.row_of.get(label)
            if row is None or entities.worlds[row] != world:
                where = (
                    "is missing from the entity table"
                    if row is None
                    else f"belongs to world {entities.worlds[row]!r}"
                )
                raise ValueError(
                    f"{split}: mention {mention_id!r} (world {world!r}) has gold {label!r} that {where}"
                )
            gold_rows.append(row)
        table = dataset.with_format("torch", columns=["mention_input_ids", "mention_attention_mask"])[:]
        categories = list(dataset["category"]) if "category" in dataset.column_names else [""] * len(dataset)
        surfaces = list(dataset["mention"])
        contexts = surfaces
        if {"left_context", "right_context"} <= set(dataset.column_names):
            contexts = [
                f"...{left[-160:]} [{m}] {right[:160]}..."
                for left, m, right in zip(
                    dataset["left_context"], surfaces, dataset["right_context"], strict=True
                )
            ]
        return cls(
            mention_ids=list(dataset["mention_id"]),
            worlds=list(dataset["world"]),
            categories=categories,
            surfaces=surfaces,
            contexts=contexts,
            gold_rows=torch.tensor(gold_rows, dtype=torch.long),
            input_ids=table["mention_input_ids"],
            attention_mask=table["mention_attention_mask"],
            alias_keys=list(dataset["alias"]) if "alias" in dataset.column_names else None,
        )

    def indices_by_world(self) -> dict[str, torch.Tensor]:
        """world -> mention indices [N_w], worlds in sorted order (a fixed order every process agrees on)."""
        by_world: dict[str, list[int]] = {}
        for index, world in enumerate(self.worlds):
            by_world.setdefault(world, []).append(index)
        return {w: torch.tensor(by_world[w], dtype=torch.long) for w in sorted(by_world)}


def _require(dataset, columns: tuple[str, ...], name: str) -> None:
    missing = [c for c in columns if c not in dataset.column_names]
    if missing:
        raise ValueError(f"{name}: missing column(s) {missing}; has {dataset.column_names}")


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
