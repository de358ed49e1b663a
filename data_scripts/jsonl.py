"""Your own knowledge base: JSON lines files (plain or ``.gz``) -> processed tables (+ the alias table).

    python -m data_scripts.jsonl --entities entities.jsonl.gz \\
        --mentions train=train.jsonl --mentions val=dev.jsonl [--mentions test=test.jsonl] \\
        [--aliases aliases.jsonl.gz] [--world kb] --output_dir data/my_kb [--skip_invalid] [--tokenizer ...]

One JSON object per line (UTF-8; blank lines are ignored; a ``.gz`` name is read decompressed):

- ``--entities``: ``entity_id``, ``title``, ``text``, optional ``world``.
- ``--mentions SPLIT=FILE`` (repeat it; SPLIT is train, val or test, the splits the recipes read: a dev file is
  ``val=dev.jsonl``): ``mention_id``, ``label_id`` (an entity of the mention's world), optional ``world``,
  optional ``category``, and the mention in one of two forms: ``left`` / ``mention`` / ``right`` (the contexts
  optional), or ``text`` + ``start`` / ``end``, character offsets of the mention in ``text`` with ``end``
  EXCLUSIVE (``text[start:end]``; with ``mention`` also given it must read the same). Optional alias key:
  ``alias`` (or ``lemma``), the key the mention is looked up with in the alias table; without one the key is the
  mention's surface. Keys are normalized (:func:`data_scripts.aliases.normalize`) and kept in the mentions'
  ``alias`` column.
- ``--aliases``: ``alias``, optional ``world``, ``candidates`` (a list of entity ids of that world), optional
  ``counts`` (as many non-negative integers: how often the alias named each candidate). Written to
  ``aliases.parquet`` (see data_scripts/aliases.py: ``load_aliases``).

Without ``world`` a row belongs to the one world named by ``--world`` (default ``kb``). Ids are non-empty strings
or integers; mention ids are unique over all splits; aliases are unique per world after normalization. Every bad
row is an error naming ``file:line`` and the field (``--skip_invalid`` counts and skips them instead).
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import datasets

from hf_models.progress import tqdm

from .aliases import ALIAS_COLUMN, AliasTable, alias_coverage, normalize
from .io import entities_dataset, mentions_dataset
from .validation import (
    BAD_FIELD,
    GOLD_MISSING,
    SPAN_OUTSIDE_DOCUMENT,
    SPAN_TEXT_MISMATCH,
    WORLD_WITHOUT_ENTITIES,
    EntityIndex,
    ProblemLog,
    check_entities,
    check_mentions,
    check_name,
    id_field,
    int_field,
    is_id,
    read_jsonl,
    require_fields,
    text_field,
)

logger = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
DEFAULT_WORLD = "kb"
PRETTY_NAME = "Entity linking tables (JSON lines)"
DUPLICATE_ALIAS = "duplicate_alias"
UNKNOWN_CANDIDATE = "unknown_candidate"


def _world(record: dict[str, Any], default: str, where: str, problems: ProblemLog) -> str | None:
    """The row's world: its ``world`` field (a name usable as a file name) or ``default`` when absent."""
    if "world" not in record:
        return default
    world = id_field(record, "world", where, problems)
    if world is None:
        return None
    try:
        check_name(world, "world")
    except ValueError as error:
        problems.report(BAD_FIELD, f"{where}: field 'world': {error}")
        return None
    return world


def _optional_text(record: dict[str, Any], name: str, where: str, problems: ProblemLog) -> str | None:
    """An optional string field: "" when absent or null, None (reported) when of another type."""
    return "" if record.get(name) is None else text_field(record, name, where, problems)


def _nonempty_text(record: dict[str, Any], name: str, where: str, problems: ProblemLog) -> str | None:
    value = text_field(record, name, where, problems)
    if value is not None and not value.strip():
        problems.report(BAD_FIELD, f"{where}: field {name!r} is an empty string")
        return None
    return value


def _key(value: str, name: str, where: str, problems: ProblemLog) -> str | None:
    """The normalized alias key of field ``name``'s value (None, reported, when nothing is left of it)."""
    key = normalize(value)
    if not key:
        problems.report(BAD_FIELD, f"{where}: field {name!r} ({value!r}) is empty once normalized")
        return None
    return key


def iter_entities(
    path: Path, default_world: str, problems: ProblemLog
) -> Iterator[tuple[str, dict[str, Any]]]:
    """`(where, entity_row)` of an entities file (empty titles/texts and repeated ids: :func:`check_entities`)."""
    for line, record in tqdm(read_jsonl(path, problems), desc=f"entities {path.name}", leave=False):
        where = f"{path}:{line}"
        if not require_fields(record, ("entity_id", "title", "text"), where, problems):
            continue
        entity_id = id_field(record, "entity_id", where, problems)
        title = text_field(record, "title", where, problems) if entity_id is not None else None
        text = text_field(record, "text", where, problems) if title is not None else None
        world = _world(record, default_world, where, problems) if text is not None else None
        if world is not None:
            yield where, {"entity_id": entity_id, "world": world, "title": title, "text": text}


def _parts(record: dict[str, Any], where: str, problems: ProblemLog) -> tuple[str, str, str] | None:
    """(left, mention, right) of a row in either form (see the module docstring)."""
    if "start" not in record and "end" not in record:
        if not require_fields(record, ("mention",), where, problems):
            return None
        mention = _nonempty_text(record, "mention", where, problems)
        left = _optional_text(record, "left", where, problems) if mention is not None else None
        right = _optional_text(record, "right", where, problems) if left is not None else None
        return None if right is None else (left, mention, right)
    if not require_fields(record, ("text", "start", "end"), where, problems):
        return None
    text = text_field(record, "text", where, problems)
    start = int_field(record, "start", where, problems) if text is not None else None
    end = int_field(record, "end", where, problems) if start is not None else None
    if end is None:
        return None
    if not 0 <= start < end <= len(text):
        problems.report(
            SPAN_OUTSIDE_DOCUMENT,
            f"{where}: fields 'start'/'end': span [{start}, {end}) is not a non-empty span of field 'text' "
            f"({len(text)} characters; end is exclusive)",
        )
        return None
    surface = text[start:end]
    if "mention" in record:
        given = text_field(record, "mention", where, problems)
        if given is None:
            return None
        if given != surface:
            problems.report(
                SPAN_TEXT_MISMATCH,
                f"{where}: field 'mention' is {given!r} but text[{start}:{end}] reads {surface!r}",
            )
            return None
    if not surface.strip():
        problems.report(BAD_FIELD, f"{where}: fields 'start'/'end': text[{start}:{end}] is blank")
        return None
    return text[:start].rstrip(), surface, text[end:].lstrip()


def _gold(
    label: str,
    world: str,
    index: EntityIndex,
    worlds: set[str],
    record: dict[str, Any],
    where: str,
    problems: ProblemLog,
) -> bool:
    """The gold is an entity of the mention's world (``worlds``: those with entities; reported naming the field)."""
    if world not in worlds:
        source = "field 'world'" if "world" in record else "no field 'world', so the --world default"
        problems.report(WORLD_WITHOUT_ENTITIES, f"{where}: {source}: world {world!r} has no entities")
        return False
    found = index.world_of.get(label)
    if found != world:
        detail = "is not an entity" if found is None else f"is an entity of world {found!r}"
        problems.report(
            GOLD_MISSING, f"{where}: field 'label_id': {label!r} {detail}, not of world {world!r}"
        )
        return False
    return True


def iter_mentions(
    path: Path, split: str, default_world: str, index: EntityIndex, problems: ProblemLog
) -> Iterator[tuple[str, dict[str, Any]]]:
    """`(where, mention_row)` of one split file, golds checked against the entities (``index``); repeated ids
    are left to :func:`check_mentions`."""
    worlds = index.worlds  # a set built from every entity: once per file, not per row
    for line, record in tqdm(read_jsonl(path, problems), desc=f"{split} {path.name}", leave=False):
        where = f"{path}:{line}"
        if not require_fields(record, ("mention_id", "label_id"), where, problems):
            continue
        mention_id = id_field(record, "mention_id", where, problems)
        label = id_field(record, "label_id", where, problems) if mention_id is not None else None
        world = _world(record, default_world, where, problems) if label is not None else None
        if world is None or not _gold(label, world, index, worlds, record, where, problems):
            continue
        parts = _parts(record, where, problems)
        category = _optional_text(record, "category", where, problems) if parts is not None else None
        if category is None:
            continue
        key_field = "alias" if "alias" in record else "lemma" if "lemma" in record else None
        raw = _nonempty_text(record, key_field, where, problems) if key_field else parts[1]
        key = _key(raw, key_field or "mention", where, problems) if raw is not None else None
        if key is None:
            continue
        left, mention, right = parts
        yield (
            where,
            {
                "mention_id": mention_id,
                "world": world,
                "left_context": left,
                "mention": mention,
                "right_context": right,
                "label_id": label,
                "category": category,
                "split": split,
                ALIAS_COLUMN: key,
            },
        )


def _candidates(
    record: dict[str, Any], world: str, world_of: dict[str, str], where: str, problems: ProblemLog
) -> tuple[list[str], list[int] | None] | None:
    """The row's (candidates, counts or None), checked against the entities of ``world``."""
    candidates = record["candidates"]
    if not isinstance(candidates, list) or not candidates:
        problems.report(
            BAD_FIELD,
            f"{where}: field 'candidates' must be a non-empty list of entity ids, got {candidates!r:.80}",
        )
        return None
    ids: list[str] = []
    for position, value in enumerate(candidates):
        entity = str(value) if is_id(value) else None
        if entity is None or entity in ids:
            problem = "is not an id" if entity is None else "is listed twice"
            problems.report(BAD_FIELD, f"{where}: field 'candidates': entry {position} ({value!r}) {problem}")
            return None
        if world_of.get(entity) != world:
            found = world_of.get(entity)
            detail = "is not an entity" if found is None else f"is an entity of world {found!r}"
            problems.report(
                UNKNOWN_CANDIDATE,
                f"{where}: field 'candidates': entry {position} ({entity!r}) {detail}, not of world {world!r}",
            )
            return None
        ids.append(entity)
    counts = record.get("counts")
    if counts is None:
        return ids, None
    valid = isinstance(counts, list) and all(isinstance(c, int) and not isinstance(c, bool) for c in counts)
    if not valid or len(counts) != len(ids) or any(c < 0 for c in counts):
        problems.report(
            BAD_FIELD,
            f"{where}: field 'counts' must be a list of {len(ids)} non-negative integers (one per candidate), "
            f"got {counts!r:.80}",
        )
        return None
    return ids, list(counts)


def read_aliases(
    path: Path, default_world: str, world_of: dict[str, str], problems: ProblemLog
) -> AliasTable:
    """The alias table of an aliases file, every candidate checked against the entities (``world_of``)."""
    table, line_of = AliasTable(), {}
    for line, record in tqdm(read_jsonl(path, problems), desc=f"aliases {path.name}", leave=False):
        where = f"{path}:{line}"
        if not require_fields(record, ("alias", "candidates"), where, problems):
            continue
        alias = _nonempty_text(record, "alias", where, problems)
        key = _key(alias, "alias", where, problems) if alias is not None else None
        world = _world(record, default_world, where, problems) if key is not None else None
        entry = _candidates(record, world, world_of, where, problems) if world is not None else None
        if entry is None:
            continue
        if (world, key) in line_of:
            problems.report(
                DUPLICATE_ALIAS,
                f"{where}: field 'alias': {alias!r} (key {key!r}) of world {world!r} is already on line "
                f"{line_of[world, key]}",
            )
            continue
        line_of[world, key], table.entries[world, key] = line, entry
    return table


def read_jsonl_tables(
    entities: str | Path,
    mentions: dict[str, str | Path],
    aliases: str | Path | None = None,
    world: str = DEFAULT_WORLD,
    skip_invalid: bool = False,
) -> tuple[datasets.DatasetDict, datasets.Dataset, AliasTable | None]:
    """(mentions per split, entities, alias table or None) from JSON lines files (see the module docstring).

    Raises :class:`~data_scripts.validation.InvalidDataError` naming file:line and field on the first bad row,
    unless ``skip_invalid`` (bad rows are then counted per reason, logged and skipped).
    """
    check_name(world, "world")
    for split, path in mentions.items():
        if split not in SPLITS:
            hint = " (a dev file is val=FILE)" if split == "dev" else ""
            raise ValueError(f"split {split!r} of {path}: expected one of {SPLITS}{hint}")
    paths = [Path(entities), *map(Path, mentions.values()), *([Path(aliases)] if aliases else [])]
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such file")
    problems = ProblemLog(skip_invalid=skip_invalid)
    index = EntityIndex()
    entity_table = entities_dataset(
        check_entities(iter_entities(Path(entities), world, problems), problems, index)
    )
    if len(entity_table) == 0:
        raise ValueError(f"{entities}: no valid entity")
    tables, seen = {}, set()
    for split, path in mentions.items():
        rows = check_mentions(iter_mentions(Path(path), split, world, index, problems), index, problems, seen)
        tables[split] = mentions_dataset(rows, extra=(ALIAS_COLUMN,))
        if len(tables[split]) == 0:
            logger.warning("%s: no valid mention in split %r (empty file or all skipped)", path, split)
    table = read_aliases(Path(aliases), world, index.world_of, problems) if aliases else None
    problems.log_summary(", ".join(map(str, paths)))
    if table is not None:
        for split, dataset in tables.items():
            coverage = alias_coverage(table, dataset)
            logger.info(
                "%s: alias key in the table for %.2f%% of %d mentions, gold among its candidates for %.2f%% "
                "(%.1f candidates on average), first candidate = gold for %.2f%%",
                split,
                100 * coverage["known"],
                coverage["mentions"],
                100 * coverage["gold_in_candidates"],
                coverage["mean_candidates"],
                100 * coverage["first_candidate_accuracy"],
            )
    return datasets.DatasetDict(tables), entity_table, table


CARD = """Entity linking tables converted from JSON lines by `python -m data_scripts.jsonl` (sources: {sources}).
Mentions carry an `alias` column: their normalized alias key (data_scripts/aliases.py).{aliases}"""


def main(argv: list[str] | None = None) -> None:
    from .cli import add_common_args, finish, setup_logging

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--entities", required=True, help="Entities file: entity_id, title, text (+ world).")
    parser.add_argument(
        "--mentions",
        action="append",
        required=True,
        metavar="SPLIT=FILE",
        help="A split's mentions (repeat it). SPLIT: train, val or test (a dev file: val=dev.jsonl). Rows: "
        "mention_id, label_id, left/mention/right or text + start/end (character offsets, end exclusive), "
        "optional world, category, alias or lemma.",
    )
    parser.add_argument(
        "--aliases",
        default=None,
        help="Alias table: alias, candidates (+ world, counts); written to aliases.parquet.",
    )
    parser.add_argument(
        "--world",
        default=DEFAULT_WORLD,
        help=f"World of rows without a 'world' field (default {DEFAULT_WORLD!r}).",
    )
    parser.add_argument("--pretty_name", default=PRETTY_NAME, help="Dataset name in the card and manifest.")
    add_common_args(parser)
    args = parser.parse_args(argv)
    malformed = [item for item in args.mentions if "=" not in item or "" in item.split("=", 1)]
    if malformed:
        parser.error(f"--mentions {malformed[0]!r}: expected SPLIT=FILE (e.g. train=train.jsonl.gz)")
    splits = [item.split("=", 1)[0] for item in args.mentions]
    unknown = [s for s in splits if s not in SPLITS]
    if unknown:
        hint = " (a dev file is --mentions val=FILE)" if unknown[0] == "dev" else ""
        parser.error(f"--mentions {unknown[0]}=...: SPLIT must be one of {', '.join(SPLITS)}{hint}")
    repeated = sorted({s for s in splits if splits.count(s) > 1})
    if repeated:
        parser.error(f"--mentions names split {repeated[0]!r} more than once")
    try:
        check_name(args.world, "world")
    except ValueError as error:
        parser.error(f"--world: {error}")
    setup_logging()
    started = time.perf_counter()
    files = dict(item.split("=", 1) for item in args.mentions)
    mentions, entities, aliases = read_jsonl_tables(
        args.entities, files, args.aliases, world=args.world, skip_invalid=args.skip_invalid
    )
    sources = ", ".join(f"`{Path(p).name}`" for p in (args.entities, *files.values(), args.aliases) if p)
    note = f" `aliases.parquet`: {len(aliases)} aliases." if aliases is not None else ""
    finish(
        args,
        mentions,
        entities,
        CARD.format(sources=sources, aliases=note),
        args.pretty_name,
        aliases=aliases,
    )
    logger.info("converted in %.1f s", time.perf_counter() - started)


if __name__ == "__main__":
    main()
