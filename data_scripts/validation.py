"""Validation shared by every loader: fail fast with a message naming file/line/id, or count-and-skip.

Every check goes through :class:`ProblemLog`. With ``skip_invalid=False`` (the default) the first problem
raises :class:`InvalidDataError`; with ``skip_invalid=True`` the record is skipped, counted per reason, and
:meth:`ProblemLog.log_summary` emits one ``logging.warning`` with the counts (never a silent drop).
"""

from __future__ import annotations

import gzip
import json
import logging
import re
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

if TYPE_CHECKING:
    import datasets

logger = logging.getLogger(__name__)

# The processed tables' contract (docs/design.md); data_scripts.io writes and reads tables of these columns.
MENTION_COLUMNS = (
    "mention_id",
    "world",
    "left_context",
    "mention",
    "right_context",
    "label_id",
    "category",
    "split",
)
ENTITY_COLUMNS = ("entity_id", "world", "title", "text")
_SPLIT_NAME = re.compile(r"^\w+(\.\w+)*$")

# Reasons (the keys of ProblemLog.counts).
MALFORMED_JSON = "malformed_json"
MISSING_FIELD = "missing_field"
SPAN_OUTSIDE_DOCUMENT = "span_outside_document"
SPAN_TEXT_MISMATCH = "span_text_mismatch"
CONTEXT_DOCUMENT_MISSING = "context_document_missing"
GOLD_MISSING = "gold_missing"
DUPLICATE_ENTITY = "duplicate_entity_id"
DUPLICATE_MENTION = "duplicate_mention_id"
EMPTY_ENTITY_TEXT = "empty_entity_text"
WORLD_WITHOUT_ENTITIES = "world_without_entities"
MISSING_MARKERS = "missing_mention_markers"
BAD_FIELD = "bad_field_value"
EMPTY_TITLE = "empty_entity_title"
EMPTY_SPLIT = "empty_split"


class InvalidDataError(ValueError):
    """Raised for the first invalid record when invalid records are not skipped."""


@dataclass
class ProblemLog:
    """Collects invalid records: raise (default) or count and skip."""

    skip_invalid: bool = False
    counts: Counter = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)

    def report(self, reason: str, message: str) -> None:
        """Raise `InvalidDataError(message)`, or count `reason` when skipping."""
        if not self.skip_invalid:
            raise InvalidDataError(f"{message} [{reason}; pass --skip_invalid / skip_invalid=True to skip]")
        self.counts[reason] += 1
        self.examples.setdefault(reason, message)
        logger.debug("skipping invalid record: %s", message)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def log_summary(self, source: str) -> None:
        """One warning with the number of skipped records per reason (and one example each)."""
        if not self.counts:
            return
        detail = "; ".join(
            f"{reason}: {n} (e.g. {self.examples[reason]})" for reason, n in sorted(self.counts.items())
        )
        logger.warning("%s: skipped %d invalid record(s) — %s", source, self.total, detail)


def read_jsonl(path: str | Path, problems: ProblemLog) -> Iterator[tuple[int, dict[str, Any]]]:
    """Stream `(line_number, object)` from a JSON-lines file (1-based line numbers, blank lines ignored); a
    ``.gz`` file is decompressed on the fly.

    A line that is not UTF-8 or not a JSON object is reported with the file and line; a broken gzip stream raises
    :class:`InvalidDataError` naming the file and the last line read."""
    with _open_binary(path) as handle:
        for line_number, raw in _lines(handle, path):
            line = decode_line(raw, f"{path}:{line_number}", problems)
            if line is None or not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                problems.report(MALFORMED_JSON, f"{path}:{line_number}: malformed JSON ({error.msg})")
                continue
            if not isinstance(record, dict):
                problems.report(MALFORMED_JSON, f"{path}:{line_number}: expected a JSON object")
                continue
            yield line_number, record


def _open_binary(path: str | Path) -> BinaryIO:
    return gzip.open(path, "rb") if str(path).endswith(".gz") else open(path, "rb")  # noqa: SIM115


def _lines(handle: BinaryIO, path: str | Path) -> Iterator[tuple[int, bytes]]:
    line_number = 0
    try:
        for line_number, raw in enumerate(handle, start=1):  # noqa: B007 (read in the except clause)
            yield line_number, raw
    except (EOFError, OSError, zlib.error) as error:  # gzip.BadGzipFile is an OSError
        if not str(path).endswith(".gz"):
            raise
        raise InvalidDataError(
            f"{path}:{line_number + 1}: not a readable gzip stream after line {line_number} ({error})"
        ) from error


def decode_line(raw: bytes, where: str, problems: ProblemLog) -> str | None:
    """UTF-8 text of one line, or None after reporting the byte offset of the first invalid byte."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        problems.report(
            MALFORMED_JSON,
            f"{where}: not UTF-8 (invalid byte {raw[error.start]:#04x} at column {error.start + 1})",
        )
        return None


def is_id(value: Any) -> bool:
    """An id is a non-empty string or an integer (not a bool, a float, a list or null)."""
    return not isinstance(value, bool) and isinstance(value, str | int) and bool(str(value).strip())


def id_field(record: dict[str, Any], name: str, where: str, problems: ProblemLog) -> str | None:
    """A record's id field as a string: a non-empty string or an integer; null, "", floats, lists are reported."""
    value = record.get(name)
    if not is_id(value):
        problems.report(
            BAD_FIELD, f"{where}: field {name!r} must be a non-empty string or integer id, got {value!r}"
        )
        return None
    return str(value)


def text_field(record: dict[str, Any], name: str, where: str, problems: ProblemLog) -> str | None:
    """A record's text field: must be a string (null, numbers, lists are reported)."""
    value = record.get(name)
    if not isinstance(value, str):
        problems.report(
            BAD_FIELD, f"{where}: field {name!r} must be a string, got {type(value).__name__} {value!r:.60}"
        )
        return None
    return value


def int_field(record: dict[str, Any], name: str, where: str, problems: ProblemLog) -> int | None:
    """A record's integer field: an integer or a string of digits (floats such as 3.7 or 3.0 are reported)."""
    value = record.get(name)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    problems.report(BAD_FIELD, f"{where}: field {name!r} must be an integer, got {value!r}")
    return None


def require_fields(record: dict[str, Any], fields: Iterable[str], where: str, problems: ProblemLog) -> bool:
    """True when every field is present; otherwise report `missing_field` naming `where`."""
    missing = [name for name in fields if name not in record]
    if missing:
        problems.report(MISSING_FIELD, f"{where}: missing field(s) {missing}")
        return False
    return True


def check_span(
    tokens: list[str], start: int, end: int, surface: str | None, where: str, problems: ProblemLog
) -> bool:
    """An inclusive token span must lie inside its document and (when given) spell `surface`."""
    if not (0 <= start <= end < len(tokens)):
        problems.report(
            SPAN_OUTSIDE_DOCUMENT,
            f"{where}: span [{start}, {end}] is outside its context document ({len(tokens)} tokens)",
        )
        return False
    if surface is not None and " ".join(tokens[start : end + 1]) != " ".join(surface.split()):
        problems.report(
            SPAN_TEXT_MISMATCH,
            f"{where}: tokens [{start}, {end}] read {' '.join(tokens[start : end + 1])!r}, not {surface!r}",
        )
        return False
    return True


@dataclass
class EntityIndex:
    """What mention validation needs to know about the entity table: id -> world."""

    world_of: dict[str, str] = field(default_factory=dict)

    @property
    def worlds(self) -> set[str]:
        return set(self.world_of.values())


def check_entities(
    rows: Iterable[tuple[str, dict[str, Any]]], problems: ProblemLog, index: EntityIndex | None = None
) -> Iterator[dict[str, Any]]:
    """Filter `(where, entity_row)` pairs: no duplicate ids, non-empty text. Records ids into `index`.

    Streaming (a generator), so a 35 GB knowledge source passes through with bounded memory.
    """
    index = index if index is not None else EntityIndex()
    for where, row in rows:
        entity_id = row["entity_id"]
        if entity_id in index.world_of:
            problems.report(
                DUPLICATE_ENTITY,
                f"{where}: duplicate entity id {entity_id!r} (already in world {index.world_of[entity_id]!r})",
            )
            continue
        if not str(row.get("text") or "").strip():
            problems.report(EMPTY_ENTITY_TEXT, f"{where}: entity {entity_id!r} has empty text")
            continue
        if not str(row.get("title") or "").strip():
            problems.report(EMPTY_TITLE, f"{where}: entity {entity_id!r} has an empty title")
            continue
        index.world_of[entity_id] = row["world"]
        yield row


def check_mentions(
    rows: Iterable[tuple[str, dict[str, Any]]],
    index: EntityIndex,
    problems: ProblemLog,
    seen: set[str] | None = None,
) -> Iterator[dict[str, Any]]:
    """Filter `(where, mention_row)` pairs: the world has entities, the gold is one of them, ids unique.

    `seen` carries mention ids across splits (ids must be unique over the whole dataset).
    """
    worlds = index.worlds
    seen = seen if seen is not None else set()
    for where, row in rows:
        mention_id, world, label = row["mention_id"], row["world"], row["label_id"]
        if mention_id in seen:
            problems.report(DUPLICATE_MENTION, f"{where}: duplicate mention id {mention_id!r}")
            continue
        if not str(row.get("mention", "")).strip():
            problems.report(BAD_FIELD, f"{where}: mention {mention_id!r} has an empty mention string")
            continue
        if world not in worlds:
            problems.report(
                WORLD_WITHOUT_ENTITIES,
                f"{where}: mention {mention_id!r} is in world {world!r}, which has no entity file/entities",
            )
            continue
        if index.world_of.get(label) != world:
            found = index.world_of.get(label)
            detail = "is not an entity" if found is None else f"is an entity of world {found!r}"
            problems.report(
                GOLD_MISSING,
                f"{where}: mention {mention_id!r} has gold {label!r} that {detail} (world {world!r})",
            )
            continue
        seen.add(mention_id)
        yield row


def validate_tables(mentions: datasets.DatasetDict, entities: datasets.Dataset) -> None:
    """Everything :func:`write_processed` needs before it touches the output folder: names usable as file names,
    the contract columns, non-empty splits and worlds, unique non-empty ids (mention ids over ALL splits), non-empty
    titles and texts, and every gold an entity of its mention's world. Errors name the split/world, id and field."""
    missing = [c for c in ENTITY_COLUMNS if c not in entities.column_names]
    if missing:
        raise ValueError(f"entities: missing column(s) {missing}; has {entities.column_names}")
    if len(entities) == 0:
        raise ValueError("entities: the entity table is empty")
    world_of: dict[str, str] = {}
    columns = (entities["entity_id"], entities["world"], entities["title"], entities["text"])
    for row, (entity_id, world, title, text) in enumerate(zip(*columns, strict=True)):
        where = f"entities row {row} (world {world!r}, entity_id {entity_id!r})"
        _check_id(entity_id, where, "entity_id")
        if entity_id in world_of:
            raise ValueError(f"{where}: duplicate entity_id (already in world {world_of[entity_id]!r})")
        for field_name, value in (("title", title), ("text", text)):
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"{where}: empty {field_name}")
        world_of[entity_id] = world
    for world in set(world_of.values()):
        check_name(world, "world")
    if not mentions:
        raise ValueError("mentions: no split to write")
    seen: dict[str, str] = {}
    for split, dataset in mentions.items():
        check_name(split, "split")
        missing = [c for c in MENTION_COLUMNS if c not in dataset.column_names]
        if missing:
            raise ValueError(f"split {split!r}: missing column(s) {missing}; has {dataset.column_names}")
        if len(dataset) == 0:
            raise ValueError(f"split {split!r} has no mentions (an empty split is not written)")
        columns = (dataset["mention_id"], dataset["world"], dataset["label_id"], dataset["mention"])
        for row, (mention_id, world, label, surface) in enumerate(zip(*columns, strict=True)):
            where = f"split {split!r} row {row} (mention_id {mention_id!r})"
            _check_id(mention_id, where, "mention_id")
            if not isinstance(surface, str) or not surface.strip():
                raise ValueError(f"{where}: empty mention")
            if mention_id in seen:
                raise ValueError(f"{where}: duplicate mention_id (already in split {seen[mention_id]!r})")
            seen[mention_id] = split
            if world_of.get(label) != world:
                found = world_of.get(label)
                detail = "is not an entity" if found is None else f"is an entity of world {found!r}"
                raise ValueError(
                    f"{where}: label_id {label!r} {detail}, not of the mention's world {world!r}"
                )


def _check_id(value: Any, where: str, field_name: str) -> None:
    if not isinstance(value, str) or not value.strip() or value == "None":
        raise ValueError(f"{where}: {field_name} must be a non-empty string, got {value!r}")


def check_name(name: str, kind: str) -> None:
    if not isinstance(name, str) or not _SPLIT_NAME.match(name):
        raise ValueError(
            f"{kind} name {name!r} must match {_SPLIT_NAME.pattern} (it becomes a file/split name)"
        )
    if kind == "split" and name == "all":  # datasets reserves it: such a split is written but never loads
        raise ValueError("split name 'all' is reserved by the datasets library; choose another")
