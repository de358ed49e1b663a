"""What the linker reads: knowledge-base tables and the four kinds of text input.

Text inputs (a string, or a JSON object / dict with optional ``world`` and ``id`` and any other keys):

* plain text: ``"He wrote it in Lisp."`` or ``{"text": ...}`` -- mentions are detected;
* text + character spans: ``{"text": ..., "spans": [[start, end], ...]}`` (end exclusive) or one span as
  ``{"text": ..., "start": s, "end": e}``;
* marked text: ``"He wrote it in [START_ENT] Lisp [END_ENT] in 1962."`` (one or several marked spans), also as
  ``{"input": ...}`` (KILT) or ``{"text": ...}``;
* a context/mention record: BLINK's ``{"context_left", "mention", "context_right"}`` or Zeshel's
  ``{"left_context", "mention", "right_context"}``.

Every kind becomes a :class:`TextInput`: the text and its character spans (None = detect), so all kinds link the
same way and report offsets into the same text.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets

START, END = "[START_ENT]", "[END_ENT]"
DEFAULT_WORLD = "default"
ENTITY_COLUMNS = ("entity_id", "title", "text", "world")
ALIASES_COLUMN = "aliases"


@dataclass
class TextInput:
    """One text to link: ``spans`` are (start, end) character offsets (end exclusive); None = detect mentions."""

    text: str
    spans: list[tuple[int, int]] | None = None
    world: str | None = None
    record: dict[str, Any] = field(
        default_factory=dict
    )  # the input's other keys (id, ...), copied to the output
    aliases: list[str | None] | None = None  # alias keys given for the spans (linker with an alias table)


@contextlib.contextmanager
def quiet_datasets() -> Iterator[None]:
    """Silence `datasets`' per-call progress bars (the linker shows its own)."""
    enabled = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if enabled:
            datasets.enable_progress_bars()


# ---------------------------------------------------------------------- text inputs
def join_context(left: str, mention: str, right: str) -> tuple[str, tuple[int, int]]:
    """``left mention right`` as one text (one space where a side does not already end/start with one)."""
    prefix = left + (" " if left and not left[-1].isspace() else "")
    suffix = (" " if right and not right[0].isspace() else "") + right
    return prefix + mention + suffix, (len(prefix), len(prefix) + len(mention))


def parse_marked(text: str, where: str) -> tuple[str, list[tuple[int, int]]] | None:
    """(text without markers, spans) of ``... [START_ENT] m1 [END_ENT] ... [START_ENT] m2 [END_ENT] ...``.

    None when the text has no marker; unbalanced or nested markers and empty spans raise naming ``where``.
    """
    if START not in text and END not in text:
        return None
    out, spans, position = "", [], 0
    while True:
        start = text.find(START, position)
        stray_end = text.find(END, position)
        if start < 0:
            if stray_end >= 0:
                raise ValueError(f"{where}: {END} at character {stray_end} has no {START} before it")
            break
        if 0 <= stray_end < start:
            raise ValueError(f"{where}: {END} at character {stray_end} has no {START} before it")
        end = text.find(END, start + len(START))
        nested = text.find(START, start + len(START))
        if end < 0 or 0 <= nested < end:
            raise ValueError(
                f"{where}: {START} at character {start} is not closed by {END} before the next marker"
            )
        inner = text[start + len(START) : end]
        surface = inner.strip()
        if not surface:
            raise ValueError(f"{where}: the marked span at character {start} is empty")
        out += text[position:start]
        if inner[:1].isspace() and out and out[-1].isalnum():
            out += " "
        spans.append((len(out), len(out) + len(surface)))
        out += surface
        position = end + len(END)
        rest = text[position:]
        if inner[-1:].isspace() and rest and rest[0].isalnum():
            out += " "
    return out + text[position:], spans


def _int_offset(value: Any, where: str, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{where}: span {name} must be an integer character offset, got {value!r}")
    if isinstance(value, float) and (not math.isfinite(value) or not value.is_integer()):
        raise ValueError(f"{where}: span {name} must be an integer character offset, got {value!r}")
    return int(value)


def check_spans(text: str, spans: Sequence[Any], where: str) -> list[tuple[int, int]]:
    """Validate ``[[start, end], ...]`` or ``[{"start", "end"}, ...]`` against ``text`` (end exclusive)."""
    if isinstance(spans, (str, bytes)) or not isinstance(spans, Sequence):
        raise ValueError(f"{where}: 'spans' must be a list of [start, end] pairs, got {spans!r}")
    checked = []
    for number, span in enumerate(spans):
        if isinstance(span, Mapping):
            pair = (span.get("start"), span.get("end"))
        elif isinstance(span, Sequence) and not isinstance(span, (str, bytes)) and len(span) == 2:
            pair = (span[0], span[1])
        else:
            raise ValueError(f"{where}: span {number} must be [start, end] or {{start, end}}, got {span!r}")
        start, end = (
            _int_offset(v, f"{where}: span {number}", n) for v, n in zip(pair, ("start", "end"), strict=True)
        )
        if not 0 <= start < end <= len(text):
            raise ValueError(
                f"{where}: span {number} [{start}, {end}) is not inside the text of {len(text)} characters "
                "(end is exclusive and must exceed start)"
            )
        if not text[start:end].strip():
            raise ValueError(f"{where}: span {number} [{start}, {end}) covers only whitespace")
        checked.append((start, end))
    return checked


def parse_input(item: Any, where: str) -> TextInput:
    """A :class:`TextInput` from any of the accepted input kinds (see the module docstring)."""
    if isinstance(item, str):
        marked = parse_marked(item, where)
        return TextInput(item) if marked is None else TextInput(marked[0], marked[1])
    if not isinstance(item, Mapping):
        raise TypeError(
            f"{where}: an input must be a string or a JSON object/dict, got {type(item).__name__}"
        )
    record = dict(item)
    world = record.get("world")
    world = None if world is None else str(world)
    if "mention" in record:  # BLINK's context_left/right or Zeshel's left/right_context
        mention = record["mention"]
        if not isinstance(mention, str) or not mention.strip():
            raise ValueError(f"{where}: 'mention' must be a non-empty string, got {mention!r}")
        left = record.get("context_left", record.get("left_context", record.get("left"))) or ""
        right = record.get("context_right", record.get("right_context", record.get("right"))) or ""
        if not isinstance(left, str) or not isinstance(right, str):
            raise ValueError(f"{where}: the left/right contexts must be strings")
        text, span = join_context(left, mention.strip(), right)
        return TextInput(text, [span], world, record)
    key = next((k for k in ("text", "input") if k in record), None)
    if key is None:
        raise ValueError(
            f"{where}: no text; give 'text' (plain or marked), 'input' (marked), or "
            f"context_left/mention/context_right (has keys {sorted(record)[:8]})"
        )
    text = record[key]
    if not isinstance(text, str):
        raise ValueError(f"{where}: '{key}' must be a string, got {type(text).__name__}")
    if "spans" in record or "start" in record or "end" in record:
        spans = record["spans"] if "spans" in record else [[record.get("start"), record.get("end")]]
        return TextInput(text, check_spans(text, spans, where), world, record)
    marked = parse_marked(text, where)
    if marked is None:
        return TextInput(text, None, world, record)
    return TextInput(marked[0], marked[1], world, record)


# ---------------------------------------------------------------------- knowledge base
def _check_id(value: Any, where: str, seen: dict[str, str]) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        raise ValueError(f"{where}: entity_id is null")
    entity_id = str(value)
    if not entity_id.strip():
        raise ValueError(f"{where}: entity_id is empty")
    if entity_id in seen:
        raise ValueError(f"{where}: duplicate entity_id {entity_id!r} (first at {seen[entity_id]})")
    seen[entity_id] = where
    return entity_id


def _read_entity_jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                raise ValueError(f"{path}:{number}: not UTF-8 text ({error.reason})") from error
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}:{number}: malformed JSON ({error.msg})") from error
            if not isinstance(row, dict):
                raise ValueError(f"{path}:{number}: an entity must be a JSON object")
            rows.append({"_where": f"{path}:{number}", **row})
    return rows


def _aliases(value: Any, where: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [a.strip() for a in value.split("|") if a.strip()]
    if isinstance(value, Sequence):
        return [str(a).strip() for a in value if a is not None and str(a).strip()]
    raise ValueError(f"{where}: aliases must be a list of strings or a '|'-separated string, got {value!r}")


def load_entity_table(entities: datasets.Dataset | str | Path) -> datasets.Dataset:
    """An entity table (entity_id, title, text, world, optional aliases) from a Dataset or a .jsonl/.parquet file.

    A null, empty or duplicate ``entity_id`` is an error naming the file and line (or row).
    """
    if isinstance(entities, (str, Path)):
        path = Path(entities)
        if not path.exists():
            raise FileNotFoundError(f"entity file {path} does not exist")
        if path.suffix == ".parquet":
            with quiet_datasets():
                table = datasets.Dataset.from_parquet(str(path))
            rows = [{"_where": f"{path} row {i}", **row} for i, row in enumerate(table)]
        elif path.suffix == ".json" and path.read_text(encoding="utf-8").lstrip().startswith("["):
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}:{error.lineno}: malformed JSON ({error.msg})") from error
            rows = [{"_where": f"{path} item {i}", **row} for i, row in enumerate(data)]
        else:
            rows = _read_entity_jsonl(path)
        source = str(path)
    else:
        rows = [{"_where": f"entity row {i}", **row} for i, row in enumerate(entities)]
        source = "the entity table"
    if not rows:
        raise ValueError(f"empty knowledge base: {source} holds no entities; nothing to index")
    seen: dict[str, str] = {}
    clean = {column: [] for column in (*ENTITY_COLUMNS, ALIASES_COLUMN)}
    for row in rows:
        where = row["_where"]
        for column in ("entity_id", "text"):
            if column not in row:
                raise ValueError(
                    f"{where}: the entity lacks '{column}' (has {sorted(set(row) - {'_where'})})"
                )
        clean["entity_id"].append(_check_id(row["entity_id"], where, seen))
        clean["text"].append(str(row["text"] if row["text"] is not None else ""))
        clean["title"].append(str(row.get("title") or ""))
        clean["world"].append(str(row.get("world") or DEFAULT_WORLD))
        clean[ALIASES_COLUMN].append(_aliases(row.get(ALIASES_COLUMN), where))
    return datasets.Dataset.from_dict(
        clean,
        features=datasets.Features(
            {
                **{c: datasets.Value("string") for c in ENTITY_COLUMNS},
                ALIASES_COLUMN: datasets.Sequence(datasets.Value("string")),
            }
        ),
    )
