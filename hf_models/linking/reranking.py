"""Re-sort a linker's retrieved candidates with its joint reranker (through :func:`hf_models.index.evaluation.rerank`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import datasets
import torch

from data_scripts.featurize import featurize_entities, featurize_mentions

from ..index.evaluation import Ranking, rerank
from ..index.tables import EntityTable, MentionTable
from .inputs import quiet_datasets


def _remap(rows: torch.Tensor, mapping: dict[int, int]) -> torch.Tensor:
    """Map world rows [N, k] to positions of the candidate table (-1 stays -1)."""
    return torch.tensor([[mapping.get(r, -1) for r in row] for row in rows.tolist()], dtype=torch.long)


def rerank_mentions(linker, world: str, mentions: Sequence[dict[str, Any]], ranking: Ranking) -> Ranking:
    """Re-score each mention's retrieved candidates with ``linker.reranker`` and re-sort them.

    ``mentions``: dicts with left_context / mention / right_context; ``ranking``: rows of ``world`` [M, k].
    """
    tokenizer, markers, length = (
        linker.reranker_tokenizer,
        linker.reranker_markers,
        linker.reranker_max_length,
    )
    used = sorted({r for r in ranking.rows.flatten().tolist() if r >= 0})
    local = {row: position for position, row in enumerate(used)}
    entity_rows = linker.entities[world].select(used)
    with quiet_datasets():
        entity_features = featurize_entities(entity_rows, tokenizer, length, markers=markers)
        mention_features = featurize_mentions(
            datasets.Dataset.from_list(list(mentions)), tokenizer, length, markers=markers
        )
    entities = EntityTable(
        entity_ids=list(entity_rows["entity_id"]),
        worlds=[world] * len(used),
        titles=list(entity_rows["title"]),
        input_ids=torch.tensor(entity_features["entity_input_ids"]),
        attention_mask=torch.tensor(entity_features["entity_attention_mask"]),
    )
    rows = _remap(ranking.rows, local)
    mention_table = MentionTable(
        mention_ids=[str(i) for i in range(len(mentions))],
        worlds=[world] * len(mentions),
        categories=[""] * len(mentions),
        surfaces=[m["mention"] for m in mentions],
        contexts=[m["mention"] for m in mentions],
        gold_rows=rows[:, 0].clamp(min=0),  # placeholders (rerank needs a valid row for padding candidates)
        input_ids=torch.tensor(mention_features["mention_input_ids"]),
        attention_mask=torch.tensor(mention_features["mention_attention_mask"]),
    )
    reranked = rerank(
        linker.reranker,
        Ranking(rows=rows, scores=ranking.scores),
        mention_table,
        entities,
        cross=True,
        batch_size=linker.rerank_batch_size,
    )
    back = torch.tensor(used, dtype=torch.long)
    return Ranking(
        rows=torch.where(reranked.rows >= 0, back[reranked.rows.clamp(min=0)], -1), scores=reranked.scores
    )
