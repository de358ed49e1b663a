"""Evaluation of retrievers and rerankers (Section 6.1, 6.5, App. B).

- top-k recall, micro-averaged over mentions;
- unnormalized accuracy (top-1 correct over ALL mentions) and normalized accuracy (top-1 correct among the
  mentions whose gold is in the candidates), both macro-averaged over worlds;
- the same per mention category (Zeshel's LOW_OVERLAP, MULTIPLE_CATEGORIES, ...).
Retrieval is always restricted to each mention's own world.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from ..atomic import atomic_write_jsonl
from .entity_index import EntityIndex
from .sharding import map_chunks_sharded
from .tables import EntityTable, MentionTable, candidate_inputs

logger = logging.getLogger(__name__)


@dataclass
class Ranking:
    """Ranked candidates per mention: global entity rows and scores, best first (-1 pads short worlds)."""

    rows: torch.Tensor  # [N, k] long
    scores: torch.Tensor  # [N, k] float


def linking_metrics(
    gold: Sequence[str],
    ranked: Sequence[Sequence[str]],
    worlds: Sequence[str],
    categories: Sequence[str] | None = None,
    ks: Sequence[int] = (1, 64),
    normalized_k: int = 64,
) -> dict[str, float]:
    """Recall@k (micro), normalized/unnormalized accuracy (macro over worlds), and per-category numbers.

    `ranked[i]` is mention i's candidate ids, best first; its first element is the prediction. A mention with
    an empty candidate list counts as wrong (never dropped). Normalized accuracy considers the mentions whose gold is
    in the top ``normalized_k`` candidates (Section 6.1: the retriever's top 64), however long the lists are and
    whatever recall ks are reported.
    """
    if not len(gold) == len(ranked) == len(worlds):
        raise ValueError(
            f"gold ({len(gold)}), ranked ({len(ranked)}) and worlds ({len(worlds)}) differ in length"
        )
    n = len(gold)
    if n == 0:
        raise ValueError("no mentions to evaluate")
    hit_at = {k: [g in list(r)[:k] for g, r in zip(gold, ranked, strict=True)] for k in ks}
    top1 = [bool(r) and r[0] == g for g, r in zip(gold, ranked, strict=True)]
    # normalized accuracy counts a mention when its gold is among the retriever's top 64 (Section 6.1)
    retrieved = [g in list(r)[:normalized_k] for g, r in zip(gold, ranked, strict=True)]
    metrics = {f"recall@{k}": 100.0 * sum(h) / n for k, h in hit_at.items()}
    metrics.update(_world_macro(top1, retrieved, worlds))
    metrics["num_mentions"] = float(n)
    if categories is not None:
        for category in sorted(set(categories) - {""}):
            idx = [i for i, c in enumerate(categories) if c == category]
            kmax = max(ks)
            metrics[f"{category}/recall@{kmax}"] = 100.0 * sum(hit_at[kmax][i] for i in idx) / len(idx)
            metrics[f"{category}/accuracy"] = 100.0 * sum(top1[i] for i in idx) / len(idx)
            metrics[f"{category}/num_mentions"] = float(len(idx))
    return metrics


def _world_macro(top1: list[bool], retrieved: list[bool], worlds: Sequence[str]) -> dict[str, float]:
    unnormalized, normalized = [], []
    for world in sorted(set(worlds)):
        idx = [i for i, w in enumerate(worlds) if w == world]
        unnormalized.append(sum(top1[i] for i in idx) / len(idx))
        found = [i for i in idx if retrieved[i]]
        normalized.append(sum(top1[i] for i in found) / len(found) if found else 0.0)
    return {
        "unnormalized_accuracy": 100.0 * sum(unnormalized) / len(unnormalized),
        "normalized_accuracy": 100.0 * sum(normalized) / len(normalized),
    }


@torch.no_grad()
def retrieve(
    index: EntityIndex, mentions: MentionTable, entities: EntityTable, k: int = 64, chunk_size: int = 256
) -> Ranking:
    """Top-k entities of each mention's own world (entities encoded once per world, mentions sharded)."""
    return retrieve_splits(index, {"mentions": mentions}, entities, k=k, chunk_size=chunk_size)["mentions"]


@torch.no_grad()
def retrieve_splits(
    index: EntityIndex,
    splits: dict[str, MentionTable],
    entities: EntityTable,
    k: int = 64,
    chunk_size: int = 256,
    keep: bool = False,
) -> dict[str, Ranking]:
    """Top-k entities of each mention's own world for several mention tables at once -> {split: Ranking}.

    Each world is encoded once and searched by the mentions of every split that has mentions in it (e.g. the
    train, val and test mentions of a shared knowledge base), then freed unless ``keep`` (the index then holds
    it, for reuse by mining or another evaluation of the same model state, see :meth:`EntityIndex.add_world`).
    Mention chunks are sharded across processes.
    """
    rankings = {
        name: Ranking(
            rows=torch.full((len(mentions), k), -1, dtype=torch.long),
            scores=torch.full((len(mentions), k), float("-inf")),
        )
        for name, mentions in splits.items()
    }
    by_world: dict[str, list[tuple[str, torch.Tensor]]] = {}
    for name, mentions in splits.items():
        for world, indices in mentions.indices_by_world().items():
            by_world.setdefault(world, []).append((name, indices))
    for world in sorted(by_world):
        index.add_world(world, *entities.world_subset(world))
        world_rows = entities.rows_by_world[world]
        chunks = [
            (name, indices[s : s + chunk_size])
            for name, indices in by_world[world]
            for s in range(0, len(indices), chunk_size)
        ]

        def search_chunk(c: int, chunks=chunks, world=world) -> tuple[torch.Tensor, torch.Tensor]:
            mentions, rows = splits[chunks[c][0]], chunks[c][1]
            reps = index.encode_mentions(mentions.input_ids[rows], mentions.attention_mask[rows])
            return index.search(world, reps, k)

        for c, (top_scores, top_pos) in map_chunks_sharded(
            index.accelerator, len(chunks), search_chunk, f"retrieving {world}"
        ).items():
            name, rows = chunks[c]
            width = top_pos.shape[1]
            rankings[name].rows[rows, :width] = world_rows[top_pos]
            rankings[name].scores[rows, :width] = top_scores
        if not keep:
            del index.worlds[world]
    return rankings


@torch.no_grad()
def candidate_scores(
    model,
    rows: torch.Tensor,
    mentions: MentionTable,
    entities: EntityTable,
    *,
    cross: bool,
    batch_size: int = 8,
    accelerator=None,
) -> torch.Tensor:
    """`model`'s score of each mention against its candidate entity rows [N, C] -> scores [N, C], in candidate
    order (any architecture, or the joint reranker with ``cross``). Padding candidates (row -1) score -inf.

    The one scoring path of :func:`rerank` and of the alias candidates (:mod:`hf_models.index.alias_metrics`);
    batches of ``batch_size`` mentions are sharded over the accelerator's processes.
    """
    if rows.shape[0] != len(mentions):
        raise ValueError(f"{rows.shape[0]} candidate rows for {len(mentions)} mentions")
    if rows.shape[1] == 0 or len(mentions) == 0:
        return torch.full(rows.shape, float("-inf"))
    device = accelerator.device if accelerator is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    starts = list(range(0, len(mentions), batch_size))

    def score_batch(c: int) -> torch.Tensor:
        index = torch.arange(starts[c], min(starts[c] + batch_size, len(mentions)))
        batch_rows = rows[index]  # [B, C]
        valid = batch_rows >= 0
        safe = torch.where(valid, batch_rows, mentions.gold_rows[index, None])  # any valid row; masked below
        inputs = candidate_inputs(mentions, entities, index, safe, cross)
        scores = model(**{k: v.to(device) for k, v in inputs.items()}).scores.float().cpu()  # [B, C]
        return scores.masked_fill(~valid, float("-inf"))

    try:
        parts = map_chunks_sharded(accelerator, len(starts), score_batch, "reranking")
    finally:
        model.train(was_training)
    return torch.cat([parts[c] for c in range(len(starts))])  # [N, C]


@torch.no_grad()
def rerank(
    model,
    candidates: Ranking,
    mentions: MentionTable,
    entities: EntityTable,
    *,
    cross: bool,
    batch_size: int = 8,
    accelerator=None,
) -> Ranking:
    """Re-score each mention's candidates with `model` (any architecture, or the joint reranker) and re-sort.

    Padding candidates (row -1: the retriever returned fewer than k) keep score -inf and stay last.
    """
    scores = candidate_scores(
        model,
        candidates.rows,
        mentions,
        entities,
        cross=cross,
        batch_size=batch_size,
        accelerator=accelerator,
    )  # [N, C]
    order = scores.argsort(dim=1, descending=True, stable=True)
    return Ranking(rows=candidates.rows.gather(1, order), scores=scores.gather(1, order))


def ranking_ids(ranking: Ranking, entities: EntityTable) -> list[list[str]]:
    return [[entities.entity_ids[r] for r in row if r >= 0] for row in ranking.rows.tolist()]


def evaluate_ranking(
    ranking: Ranking, mentions: MentionTable, entities: EntityTable, ks=(1, 64)
) -> dict[str, float]:
    gold = [entities.entity_ids[r] for r in mentions.gold_rows.tolist()]
    return linking_metrics(gold, ranking_ids(ranking, entities), mentions.worlds, mentions.categories, ks)


def write_candidate_file(
    path: str | Path, ranking: Ranking, mentions: MentionTable, entities: EntityTable
) -> Path:
    """One JSON line per mention: mention_id, world, gold id, candidate ids and scores (best first), atomically."""
    ranked = ranking_ids(ranking, entities)
    records = (
        {
            "mention_id": mention_id,
            "world": mentions.worlds[i],
            "label_id": entities.entity_ids[int(mentions.gold_rows[i])],
            "candidates": ranked[i],
            "scores": [round(float(s), 5) for s in ranking.scores[i, : len(ranked[i])]],
        }
        for i, mention_id in enumerate(mentions.mention_ids)
    )
    return atomic_write_jsonl(path, records)  # a kill leaves the previous file, never half of one


def check_candidate_ids(
    ids: list[str], world: str, world_of: dict[str, str], where: str, mention_id: str
) -> None:
    """A mention's candidate list must name distinct, known entities of the mention's own world (a duplicate would
    train a reranker on the same negative twice; another world's entity means the file belongs to other data)."""
    unknown = [c for c in ids if c not in world_of]
    if unknown:
        raise ValueError(f"{where}: mention {mention_id!r} has unknown candidate(s) {unknown[:3]}")
    seen: set[str] = set()
    for candidate in ids:
        if candidate in seen:
            raise ValueError(f"{where}: mention {mention_id!r} lists candidate {candidate!r} more than once")
        seen.add(candidate)
    elsewhere = [c for c in ids if world_of[c] != world]
    if elsewhere:
        raise ValueError(
            f"{where}: mention {mention_id!r} is in world {world!r} but candidate {elsewhere[0]!r} is in world "
            f"{world_of[elsewhere[0]]!r}"
        )


def read_candidate_file(path: str | Path, mentions: MentionTable, entities: EntityTable) -> Ranking:
    """Read a candidate file back as a Ranking aligned with `mentions` (every mention must be present, once, with
    distinct candidates of its own world; errors name the file and line)."""
    by_id, line_of = {}, {}
    with Path(path).open(encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, 1):
            where = f"{path}:{line_number}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{where}: malformed JSON ({error.msg})") from error
            if not isinstance(record, dict) or not {"mention_id", "candidates", "scores"} <= set(record):
                raise ValueError(f"{where}: a candidate record needs mention_id, candidates and scores")
            mention_id = record["mention_id"]
            if mention_id in line_of:
                raise ValueError(
                    f"{where}: mention {mention_id!r} already has candidates on line {line_of[mention_id]}"
                )
            if len(record["scores"]) != len(record["candidates"]):
                raise ValueError(f"{where}: mention {mention_id!r} has {len(record['candidates'])} candidates but "
                                 f"{len(record['scores'])} scores")  # fmt: skip
            by_id[mention_id], line_of[mention_id] = record, line_number
    world_of = dict(zip(entities.entity_ids, entities.worlds, strict=True))
    missing = [m for m in mentions.mention_ids if m not in by_id]
    if missing:
        raise ValueError(f"{path}: no candidates for {len(missing)} mention(s), e.g. {missing[:3]}")
    k = max(len(r["candidates"]) for r in by_id.values())
    rows = torch.full((len(mentions), k), -1, dtype=torch.long)
    scores = torch.full((len(mentions), k), float("-inf"))
    for i, mention_id in enumerate(mentions.mention_ids):
        record = by_id[mention_id]
        where = f"{path}:{line_of[mention_id]}"
        check_candidate_ids(record["candidates"], mentions.worlds[i], world_of, where, mention_id)
        for j, entity_id in enumerate(record["candidates"]):
            rows[i, j] = entities.row_of[entity_id]
        scores[i, : len(record["scores"])] = torch.tensor(record["scores"], dtype=torch.float)
    return Ranking(rows=rows, scores=scores)


def qualitative_report(
    mentions: MentionTable,
    entities: EntityTable,
    rankings: dict[str, Ranking],
    num_examples: int = 5,
    top: int = 6,
    seed: int = 0,
) -> str:
    """Markdown in the style of the paper's Table 3: for sampled mentions, top entity titles per model."""
    names = list(rankings)
    rng = random.Random(seed)
    picks = rng.sample(range(len(mentions)), min(num_examples, len(mentions)))
    lines = ["# Qualitative comparison (Table 3 style)", ""]
    for i in picks:
        gold = entities.titles[int(mentions.gold_rows[i])]
        context = mentions.contexts[i]
        lines += [
            f"## Mention `{mentions.surfaces[i]}` ({mentions.worlds[i]}, {mentions.categories[i] or 'n/a'})",
            "",
        ]
        lines += [f"> {context}", "", f"Gold: **{gold}**", ""]
        lines += ["| rank | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
        for rank in range(top):
            cells = []
            for name in names:
                row = int(rankings[name].rows[i, rank]) if rank < rankings[name].rows.shape[1] else -1
                title = entities.titles[row] if row >= 0 else ""
                cells.append(f"**{title}**" if row == int(mentions.gold_rows[i]) else title)
            lines.append(f"| {rank + 1} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


# --------------------------------------------------------------------------- whole pipeline (raw text in)
def _prf(correct: int, predicted: int, gold: int) -> dict[str, float]:
    precision = 100.0 * correct / predicted if predicted else 0.0
    recall = 100.0 * correct / gold if gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "num_gold": float(gold),
        "num_predicted": float(predicted),
        "num_correct": float(correct),
    }


def mention_detection_metrics(
    gold: Sequence[Sequence[tuple[int, int]]], predicted: Sequence[Sequence[tuple[int, int]]]
) -> dict[str, float]:
    """Strict-span mention detection precision / recall / F1 (percent), micro-averaged over documents.

    ``gold[d]`` and ``predicted[d]`` are document d's (start, end) character spans; a predicted span is right only
    when both offsets equal a gold span's.
    """
    if len(gold) != len(predicted):
        raise ValueError(f"gold ({len(gold)}) and predicted ({len(predicted)}) documents differ in number")
    correct = n_gold = n_predicted = 0
    for gold_spans, predicted_spans in zip(gold, predicted, strict=True):
        gold_set = {(int(s), int(e)) for s, e in gold_spans}
        predicted_set = {(int(s), int(e)) for s, e in predicted_spans}
        correct += len(gold_set & predicted_set)
        n_gold += len(gold_set)
        n_predicted += len(predicted_set)
    return _prf(correct, n_predicted, n_gold)


def end_to_end_linking_metrics(
    gold: Sequence[Sequence[tuple[int, int, str]]], predicted: Sequence[Sequence[tuple[int, int, str | None]]]
) -> dict[str, float]:
    """End-to-end linking precision / recall / F1 (percent): a prediction is right when its span is exactly a gold
    span AND its entity is that span's gold entity. Predictions linked to NIL (entity None) are not predictions.
    """
    if len(gold) != len(predicted):
        raise ValueError(f"gold ({len(gold)}) and predicted ({len(predicted)}) documents differ in number")
    correct = n_gold = n_predicted = 0
    for gold_links, predicted_links in zip(gold, predicted, strict=True):
        gold_set = {(int(s), int(e), str(entity)) for s, e, entity in gold_links}
        predicted_set = {
            (int(s), int(e), str(entity)) for s, e, entity in predicted_links if entity is not None
        }
        correct += len(gold_set & predicted_set)
        n_gold += len(gold_set)
        n_predicted += len(predicted_set)
    return _prf(correct, n_predicted, n_gold)
