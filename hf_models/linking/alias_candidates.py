"""The linker's alias table: candidates of a mention's alias key re-scored with a log prior (issue 22).

With an alias table set (:meth:`EntityLinker.set_aliases`, or ``build_index(entities, aliases=...)``), a mention
whose key has candidates in its world gets exactly those candidates, ranked by the linker's score (the retriever's,
from the index vectors; the reranker's when the linker has one) + ``prior_weight * log p(entity | alias)``, with
probabilities a softmax over them (``source: "alias"``). Other mentions are searched in their whole world as
without a table (``source: "index"``). A mention's key is the ``alias`` (or ``lemma``) its input gives (one span),
the ``aliases`` list parallel to ``spans``, else its normalized surface.

Saved with the index: ``aliases.parquet`` in the index folder, and in its manifest
``"aliases": {"file", "rows", "sha256", "prior_weight"}``; loading checks the checksum.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from data_scripts.aliases import (
    ALIASES_FILE,
    AliasTable,
    check_aliases,
    load_aliases,
    manifest_entry,
    normalize,
)

from ..index.entity_index import EntityIndex
from ..index.evaluation import Ranking
from ..modeling.scoring import Representation
from .inputs import TextInput
from .reranking import rerank_mentions

logger = logging.getLogger(__name__)


def check_prior_weight(value: Any) -> float:
    """A prior weight: a finite number >= 0 (0 = the retriever's order among the alias candidates)."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value < 0
    ):
        raise ValueError(f"prior_weight must be a finite number >= 0, got {value!r}")
    return float(value)


def read_alias_source(source: AliasTable | str | Path) -> AliasTable:
    """An alias table given as a table, a processed folder holding ``aliases.parquet`` (checked against its
    manifest) or an ``aliases.parquet`` file."""
    if isinstance(source, AliasTable):
        return source
    path = Path(source)
    if path.is_dir():
        table = load_aliases(path)
        if table is None:
            raise FileNotFoundError(
                f"{path} has no alias table ({ALIASES_FILE}); write one with python -m data_scripts.jsonl --aliases"
            )
        return table
    if not path.exists():
        raise FileNotFoundError(f"alias table {path} does not exist")
    if path.suffix != ".parquet":
        raise ValueError(
            f"alias table {path}: give a processed folder or its {ALIASES_FILE} (convert a JSON lines alias file "
            "with python -m data_scripts.jsonl --aliases)"
        )
    try:
        return AliasTable.read(path)
    except (OSError, KeyError) as error:
        raise ValueError(f"{path}: cannot read the alias table ({error})") from error


def checked_aliases(
    source: AliasTable | str | Path | None, prior_weight: float, entities: Mapping[str, Any]
) -> tuple[AliasTable | None, float]:
    """(alias table or None, prior weight) for a linker whose index holds ``entities`` (world -> entity table):
    every candidate must be an entity of its alias's world there (a ValueError names the alias and candidate)."""
    weight = check_prior_weight(prior_weight)
    if source is None:
        return None, weight
    table = read_alias_source(source)
    table.validate({entity_id: world for world, rows in entities.items() for entity_id in rows["entity_id"]})
    logger.info(
        "alias table: %d aliases in %d world(s), prior weight %g", len(table), len(table.worlds), weight
    )
    return table, weight


def save_alias_table(table: AliasTable, folder: Path, prior_weight: float) -> dict[str, Any]:
    """Write ``folder/aliases.parquet``; returns the index manifest's ``aliases`` entry (the processed folders'
    :func:`~data_scripts.aliases.manifest_entry` plus the prior weight)."""
    table.write(folder / ALIASES_FILE)
    return {**manifest_entry(folder), "prior_weight": prior_weight}


def load_alias_table(folder: Path, entry: Any) -> tuple[AliasTable | None, float]:
    """(alias table, prior weight) of an index folder: (None, 0.0) when its manifest lists none. A changed,
    missing or unlisted ``aliases.parquet`` is a :class:`~hf_models.atomic.CorruptFolderError` naming it
    (:func:`~data_scripts.aliases.check_aliases`, as for processed folders)."""
    if not check_aliases(folder, {"aliases": entry}, remedy="rebuild the index"):
        return None, 0.0
    try:
        weight = check_prior_weight(entry.get("prior_weight"))
    except ValueError as error:
        raise ValueError(f"{folder / 'manifest.json'}: 'aliases': {error}") from error
    return AliasTable.read(folder / ALIASES_FILE), weight


# ------------------------------------------------------------------------------------------------ linking
def explicit_aliases(text: TextInput, where: str) -> list[str | None] | None:
    """The alias keys an input gives for its spans: ``alias`` / ``lemma`` (one span) or ``aliases`` (a list
    parallel to ``spans``, null entries allowed); None when it gives none. Mismatches raise naming ``where``."""
    record = text.record
    key = next((k for k in ("alias", "lemma") if k in record), None)
    if key is None and "aliases" not in record:
        return None
    count = None if text.spans is None else len(text.spans)
    if key is not None:
        if count != 1 or not isinstance(record[key], str) or not record[key].strip():
            raise ValueError(
                f"{where}: '{key}' is the alias key of one given mention (a non-empty string); this input has "
                f"{'detected mentions' if count is None else f'{count} span(s)'} and {key}={record[key]!r} "
                "(give 'aliases', one per span)"
            )
        return [record[key]]
    keys = record["aliases"]
    if count is None or not isinstance(keys, list) or len(keys) != count:
        raise ValueError(
            f"{where}: 'aliases' must be a list with one key (or null) per span of 'spans'; "
            f"got {keys!r} for {'detected mentions' if count is None else f'{count} span(s)'}"
        )
    if any(k is not None and (not isinstance(k, str) or not k.strip()) for k in keys):
        raise ValueError(
            f"{where}: every entry of 'aliases' must be a non-empty string or null, got {keys!r}"
        )
    return list(keys)


def alias_rows(
    table: AliasTable, world: str, keys: Sequence[str], row_of: Mapping[str, int]
) -> tuple[list[list[int]], list[dict[int, float]]]:
    """Each key's candidates in ``world`` as world rows (``row_of``: entity id -> row) and their log priors by
    row; ``[]`` / ``{}`` for a key without candidates."""
    rows, priors = [], []
    for key in keys:
        ids, _ = table.candidates(world, key)
        log_prior = table.log_prior(world, key) if ids else {}
        rows.append([row_of[e] for e in ids])
        priors.append({row_of[e]: log_prior[e] for e in ids})
    return rows, priors


def padded(rows: Sequence[Sequence[int]]) -> torch.Tensor:
    """Row lists -> [M, C] long, -1 pads."""
    out = torch.full((len(rows), max(map(len, rows), default=0)), -1, dtype=torch.long)
    for i, r in enumerate(rows):
        out[i, : len(r)] = torch.tensor(r, dtype=torch.long)
    return out


def retriever_alias_scores(
    index: EntityIndex, world: str, reps: Representation, rows: torch.Tensor
) -> Ranking:
    """The retriever's scores of each mention [M] against its alias candidate rows [M, C] from the index vectors
    (exact, as the index's own rescoring), best first; -1 / -inf pad."""
    scores, ranked = index.rescore(world, reps, rows, rows.shape[1])
    return Ranking(rows=ranked, scores=scores)


def rank_world(
    linker,
    world: str,
    positions: Sequence[int],
    reps: Representation,
    contexts: Sequence[dict[str, str]],
    keys: Sequence[str] | None,
    top_k: int,
) -> list[tuple[list[int], Ranking, str | None]]:
    """The rankings (world rows [M, k]) of one world's mentions ``positions`` of the batch (``reps`` and the
    mention ``contexts`` / alias ``keys`` are the whole batch's) -> [(positions, ranking, source)].

    Without an alias table (``keys`` None): one whole-world search, source None. With one: the mentions whose key
    has candidates ("alias": their candidates by score + prior weight x log prior), the others searched ("index").
    The linker's reranker, when it has one, re-scores either kind before the prior is added."""
    groups: list[tuple[list[int], tuple[list[list[int]], list[dict[int, float]]] | None]]
    groups = [(list(positions), None)]
    if keys is not None:
        found, priors = alias_rows(
            linker.aliases, world, [keys[p] for p in positions], world_rows(linker, world)
        )
        known = [j for j, candidates in enumerate(found) if candidates]
        groups = [([p for p, candidates in zip(positions, found, strict=True) if not candidates], None)]
        groups.append(
            ([positions[j] for j in known], ([found[j] for j in known], [priors[j] for j in known]))
        )
    ranked = []
    for group, candidates in groups:
        if not group:
            continue
        group_reps = reps[torch.tensor(group)]
        if candidates is None:
            scores, rows = linker.index.search(world, group_reps, top_k)  # [M, k], world rows
            ranking = Ranking(rows=rows, scores=scores)
        else:
            ranking = retriever_alias_scores(linker.index, world, group_reps, padded(candidates[0]))
        if linker.reranker is not None:
            ranking = rerank_mentions(linker, world, [contexts[p] for p in group], ranking)
        if candidates is not None:
            ranking = add_priors(ranking, candidates[1], linker.prior_weight, top_k)
        ranked.append((group, ranking, None if keys is None else "index" if candidates is None else "alias"))
    return ranked


def world_rows(linker, world: str) -> dict[str, int]:
    """entity id -> row of ``world`` in the linker's index (cached on the linker until its alias table changes)."""
    cache = linker._alias_rows
    if world not in cache:
        cache[world] = {entity_id: row for row, entity_id in enumerate(linker.index.worlds[world].entity_ids)}
    return cache[world]


def add_priors(ranking: Ranking, priors: Sequence[Mapping[int, float]], weight: float, top_k: int) -> Ranking:
    """``score + weight * log prior`` of each candidate (rows [M, C], priors by row), re-sorted, the top ``top_k``."""
    combined = ranking.scores.clone().float()  # [M, C]
    for i, (row, prior) in enumerate(zip(ranking.rows.tolist(), priors, strict=True)):
        for j, r in enumerate(row):
            if r >= 0:
                combined[i, j] += weight * prior[r]
    combined = combined.masked_fill(ranking.rows < 0, float("-inf"))
    order = combined.argsort(dim=1, descending=True, stable=True)[:, :top_k]
    return Ranking(rows=ranking.rows.gather(1, order), scores=combined.gather(1, order))


def mention_keys(texts: Sequence[TextInput], mentions: Sequence[tuple[int, int, int]]) -> list[str]:
    """The alias key of each (text, start, end) mention: the input's explicit one, else the normalized surface."""
    keys, seen = [], {}
    for i, start, end in mentions:
        number = seen.get(i, 0)
        seen[i] = number + 1
        given = texts[i].aliases[number] if texts[i].aliases is not None else None
        keys.append(normalize(given if given is not None else texts[i].text[start:end]))
    return keys
