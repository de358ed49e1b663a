"""Alias candidates and priors in evaluation: the candidate-set setting of entity linking (issue 22).

An alias table (:class:`data_scripts.aliases.AliasTable`) maps each mention's alias key (the dataset's ``alias``
column, else the normalized surface) to its candidate entities with counts. Over those candidates:

- ``alias_recall``: the gold is among the mention's alias candidates (the ceiling of the numbers below);
- ``alias_accuracy``: the retriever's best-scoring candidate is the gold;
- ``alias_prior_accuracy``: the best candidate by ``score + prior_weight * log p(entity | alias)`` is the gold,
  with ``prior_weight`` tuned on the eval split (:func:`tune_prior_weight`) and applied unchanged elsewhere;
- ``alias_mfs_accuracy``: the candidate with the largest count is the gold (ties by table order): the
  most-frequent-candidate baseline.

All are percentages MICRO-averaged over mentions (whole-world accuracy in :mod:`.evaluation` is macro over
worlds); a mention without alias candidates counts as wrong, never dropped.

    candidates = alias_candidates(table, mentions, entities)          # rows [N, C] (-1 pads), log priors [N, C]
    scores = candidate_scores(model, candidates.rows, mentions, entities, cross=False)   # [N, C]
    weight = tune_prior_weight(scores, candidates.log_priors, candidates.rows, mentions.gold_rows)
    alias_metrics(scores, candidates.log_priors, candidates.rows, mentions.gold_rows, weight)
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from data_scripts.aliases import AliasTable, normalize

from .evaluation import candidate_scores
from .tables import EntityTable, MentionTable

logger = logging.getLogger(__name__)

PRIOR_WEIGHT_GRID = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
NEG_INF = float("-inf")


@dataclass
class AliasCandidates:
    """Each mention's alias candidates as global entity rows, in the alias table's order, with their log priors."""

    rows: torch.Tensor  # [N, C] long, -1 pads (C = the most candidates of any mention; 0 when none has any)
    log_priors: torch.Tensor  # [N, C] float, log p(entity | alias); -inf at padding

    @property
    def valid(self) -> torch.Tensor:
        return self.rows >= 0  # [N, C] bool


def alias_keys(mentions: MentionTable) -> list[str]:
    """Each mention's alias key: its recorded one (the dataset's ``alias`` column), else (no column, or an empty /
    null key) its normalized surface."""
    recorded = mentions.alias_keys or [None] * len(mentions)
    return [key or normalize(surface) for key, surface in zip(recorded, mentions.surfaces, strict=True)]


def alias_candidates(
    table: AliasTable, mentions: MentionTable, entities: EntityTable, smoothing: float = 1.0
) -> AliasCandidates:
    """The alias candidates and log priors (:meth:`AliasTable.log_prior`, add-``smoothing``) of every mention.

    A candidate missing from ``entities`` (or an entity of another world) is a ValueError naming it, its alias
    and the mention: the alias table belongs to other data.
    """
    per_mention: list[tuple[list[int], list[float]]] = []
    for mention_id, world, key in zip(
        mentions.mention_ids, mentions.worlds, alias_keys(mentions), strict=True
    ):
        ids, _ = table.candidates(world, key)
        priors = table.log_prior(world, key, smoothing) if ids else {}
        rows = []
        for entity_id in ids:
            row = entities.row_of.get(entity_id)
            if row is None or entities.worlds[row] != world:
                where = (
                    "is not in the entity table" if row is None else f"is in world {entities.worlds[row]!r}"
                )
                raise ValueError(
                    f"alias table: candidate {entity_id!r} of alias {normalize(key)!r} (world {world!r}, mention "
                    f"{mention_id!r}) {where}"
                )
            rows.append(row)
        per_mention.append((rows, [priors[e] for e in ids]))
    width = max((len(rows) for rows, _ in per_mention), default=0)
    rows = torch.full((len(mentions), width), -1, dtype=torch.long)
    log_priors = torch.full((len(mentions), width), NEG_INF)
    for i, (mention_rows, priors) in enumerate(per_mention):
        rows[i, : len(mention_rows)] = torch.tensor(mention_rows, dtype=torch.long)
        log_priors[i, : len(priors)] = torch.tensor(priors, dtype=torch.float)
    return AliasCandidates(rows=rows, log_priors=log_priors)


# --------------------------------------------------------------------------------------- metrics (micro, %)
def _percent(hits: torch.Tensor) -> float:
    return 100.0 * float(hits.float().mean()) if hits.numel() else 0.0


def predict(scores: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """The best-scoring candidate row of each mention -> [N] (-1 when it has no candidate).

    scores, rows: [N, C]; padding (row -1) never wins; ties go to the earlier candidate (table order)."""
    if rows.shape[1] == 0:
        return torch.full((rows.shape[0],), -1, dtype=torch.long)
    valid = rows >= 0
    masked = torch.where(valid, scores.float(), torch.full_like(scores, NEG_INF, dtype=torch.float))
    best = masked.nan_to_num(nan=NEG_INF).argmax(dim=1, keepdim=True)  # [N, 1]: the first of equal maxima
    return torch.where(valid.any(dim=1), rows.gather(1, best).squeeze(1), -1)


def combined_scores(
    scores: torch.Tensor, log_priors: torch.Tensor, rows: torch.Tensor, prior_weight: float
) -> torch.Tensor:
    """``score + prior_weight * log prior`` [N, C]; -inf at padding (also with weight 0)."""
    combined = scores.float() + prior_weight * log_priors.float()
    return torch.where(rows >= 0, combined, torch.full_like(combined, NEG_INF))


def alias_recall(rows: torch.Tensor, gold: torch.Tensor) -> float:
    """% of mentions whose gold row [N] is among their alias candidate rows [N, C] (micro)."""
    return _percent((rows == gold[:, None]).any(dim=1))  # [N]; False for a mention without candidates


def alias_accuracy(scores: torch.Tensor, rows: torch.Tensor, gold: torch.Tensor) -> float:
    """% of mentions whose best candidate by ``scores`` [N, C] is the gold [N] (micro; no candidates = wrong)."""
    return _percent(predict(scores, rows) == gold)


def alias_prior_accuracy(
    scores: torch.Tensor,
    log_priors: torch.Tensor,
    rows: torch.Tensor,
    gold: torch.Tensor,
    prior_weight: float,
) -> float:
    """:func:`alias_accuracy` of ``score + prior_weight * log prior`` (micro; no candidates = wrong)."""
    return alias_accuracy(combined_scores(scores, log_priors, rows, prior_weight), rows, gold)


def alias_mfs_accuracy(log_priors: torch.Tensor, rows: torch.Tensor, gold: torch.Tensor) -> float:
    """% of mentions whose most frequent candidate is the gold (micro): the largest count, ties by table order.

    The smoothed log prior [N, C] is increasing in the count, so its argmax is the largest count (without
    counts the prior is uniform and the first candidate wins)."""
    return alias_accuracy(log_priors, rows, gold)


def tune_prior_weight(
    scores: torch.Tensor,
    log_priors: torch.Tensor,
    rows: torch.Tensor,
    gold: torch.Tensor,
    grid: Sequence[float] = PRIOR_WEIGHT_GRID,
) -> float:
    """The weight of ``grid`` with the best :func:`alias_prior_accuracy` (ties -> the smaller weight)."""
    if not grid:
        raise ValueError("tune_prior_weight: empty grid")
    best_weight, best = None, NEG_INF
    for weight in sorted(float(w) for w in grid):
        accuracy = alias_prior_accuracy(scores, log_priors, rows, gold, weight)
        if accuracy > best:
            best_weight, best = weight, accuracy
    logger.info("prior weight %.2f: alias accuracy %.2f on the tuning mentions", best_weight, best)
    return best_weight


def alias_metrics(
    scores: torch.Tensor,
    log_priors: torch.Tensor,
    rows: torch.Tensor,
    gold: torch.Tensor,
    prior_weight: float,
) -> dict[str, float]:
    """alias_recall, alias_accuracy, alias_prior_accuracy (at ``prior_weight``), alias_mfs_accuracy (all micro,
    %), prior_weight, and alias_num_candidates (mean candidates per mention)."""
    return {
        "alias_recall": alias_recall(rows, gold),
        "alias_accuracy": alias_accuracy(scores, rows, gold),
        "alias_prior_accuracy": alias_prior_accuracy(scores, log_priors, rows, gold, prior_weight),
        "alias_mfs_accuracy": alias_mfs_accuracy(log_priors, rows, gold),
        "prior_weight": float(prior_weight),
        "alias_num_candidates": float((rows >= 0).sum(dim=1).float().mean()) if len(gold) else 0.0,
    }


def evaluate_alias_splits(
    model,
    table: AliasTable,
    splits: dict[str, MentionTable],
    entities: EntityTable,
    tune_split: str | None,
    *,
    cross: bool,
    batch_size: int = 8,
    accelerator=None,
    grid: Sequence[float] = PRIOR_WEIGHT_GRID,
) -> dict[str, dict[str, float]]:
    """:func:`alias_metrics` of every split: the prior weight is tuned on ``tune_split`` (the eval split) and
    applied unchanged to the others; without a tuning split it is 0 (no prior)."""
    scored = {}
    for name, mentions in splits.items():
        candidates = alias_candidates(table, mentions, entities)
        scores = candidate_scores(
            model,
            candidates.rows,
            mentions,
            entities,
            cross=cross,
            batch_size=batch_size,
            accelerator=accelerator,
        )  # [N, C]
        scored[name] = (scores, candidates, mentions.gold_rows)
    weight = 0.0
    if tune_split in scored:
        scores, candidates, gold = scored[tune_split]
        weight = tune_prior_weight(scores, candidates.log_priors, candidates.rows, gold, grid)
    elif tune_split:
        raise ValueError(f"tune_split {tune_split!r} is not among the splits {sorted(splits)}")
    return {
        name: alias_metrics(scores, candidates.log_priors, candidates.rows, gold, weight)
        for name, (scores, candidates, gold) in scored.items()
    }
