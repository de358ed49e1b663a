"""KILT AIDA-CoNLL (Petroni et al., 2021) + the KILT knowledge source -> processed tables (world "wikipedia").

    python -m data_scripts.kilt_aida --mention_files train=aidayago2-train-kilt.jsonl val=aidayago2-dev-kilt.jsonl \
        --knowledge_source kilt_knowledgesource.json --output_dir data/kilt_aida \
        [--restrict gold|candidates|none] [--candidate_file cands.jsonl] [--max_pages N] [--skip_invalid]

Mentions come from the ``[START_ENT] ... [END_ENT]`` markers of ``input`` (or ``meta.left_context/mention/
right_context`` when the markers are absent); the gold is the first ``output[].provenance[].wikipedia_id``.
Entities: entity_id = wikipedia_id, title = wikipedia_title, text = the first paragraphs after the title line
(``Section::::`` headings dropped) up to ``--description_chars``. The knowledge source (35 GB) is STREAMED line
by line: with ``--restrict gold`` (default) only the pages that are some mention's gold are kept (plus the ids
of ``--candidate_file`` with ``--restrict candidates``); ``--restrict none`` keeps all pages (``--max_pages`` caps
them), written through a memory-mapped Arrow file.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import datasets

from hf_models.progress import tqdm

from .io import entities_dataset, mentions_dataset
from .validation import (
    BAD_FIELD,
    GOLD_MISSING,
    MALFORMED_JSON,
    MISSING_MARKERS,
    EntityIndex,
    ProblemLog,
    check_entities,
    check_mentions,
    decode_line,
    id_field,
    is_id,
    read_jsonl,
    text_field,
)

logger = logging.getLogger(__name__)

WORLD = "wikipedia"
START, END = "[START_ENT]", "[END_ENT]"
META = ("left_context", "mention", "right_context")
_WIKIPEDIA_ID = re.compile(r'"wikipedia_id"\s*:\s*"?(\d+)"?')


def split_markers(text: str) -> tuple[str, str, str] | None:
    """(left, mention, right) from ``left [START_ENT] mention [END_ENT] right``; None without markers (the caller
    has checked that the text holds at most one of each)."""
    start, end = text.find(START), text.find(END)
    if start < 0 and end < 0:
        return None
    if start < 0 or end < start:
        raise ValueError(
            f"{END} without a {START} before it" if start < 0 else f"{START} without an {END} after it"
        )
    return text[:start].strip(), text[start + len(START) : end].strip(), text[end + len(END) :].strip()


def gold_id(record: dict[str, Any]) -> str | None:
    """The first provenance wikipedia_id of the first answer that has one (ValueError: malformed ``output``)."""
    outputs = record.get("output") or []
    if not isinstance(outputs, list) or not all(isinstance(o, dict) for o in outputs):
        raise ValueError("field 'output' must be a list of objects")
    for output in outputs:
        provenances = output.get("provenance") or []
        if not isinstance(provenances, list) or not all(isinstance(p, dict) for p in provenances):
            raise ValueError("field 'output[].provenance' must be a list of objects")
        for provenance in provenances:
            value = provenance.get("wikipedia_id")
            if value in (None, ""):
                continue
            if not is_id(value):
                raise ValueError(f"field 'output[].provenance[].wikipedia_id' must be an id, got {value!r}")
            return str(value)
    return None


def iter_kilt_mentions(path: Path, split: str, problems: ProblemLog) -> Iterator[tuple[str, dict[str, Any]]]:
    """`(where, mention_row)` for a KILT entity-linking jsonl file."""
    for line, record in read_jsonl(path, problems):
        where = f"{path}:{line}"
        mention_id = id_field(record, "id", where, problems) if "id" in record else f"{split}-{line}"
        if mention_id is None:
            continue
        meta = record.get("meta") or {}
        text = text_field(record, "input", where, problems) if "input" in record else ""
        if text is None:
            continue
        if not isinstance(meta, dict):
            problems.report(BAD_FIELD, f"{where}: id {mention_id!r}: field 'meta' must be an object")
            continue
        if text.count(START) > 1 or text.count(END) > 1:
            problems.report(
                MISSING_MARKERS,
                f"{where}: id {mention_id!r} has {text.count(START)} {START} and {text.count(END)} {END}; "
                "expected one of each",
            )
            continue
        try:
            parts = split_markers(text)
        except ValueError as error:
            problems.report(MISSING_MARKERS, f"{where}: id {mention_id!r}: {error}")
            continue
        if parts is None and "mention" in meta:
            fields = [
                text_field(meta, name, f"{where} meta", problems) if name in meta else "" for name in META
            ]
            if None in fields:
                continue
            parts = (fields[0], fields[1], fields[2])
        if parts is None:
            problems.report(
                MISSING_MARKERS, f"{where}: id {record.get('id')!r} has no {START}/{END} markers or meta"
            )
            continue
        try:
            label = gold_id(record)
        except ValueError as error:
            problems.report(BAD_FIELD, f"{where}: id {mention_id!r}: {error}")
            continue
        if label is None:
            problems.report(GOLD_MISSING, f"{where}: id {record.get('id')!r} has no provenance wikipedia_id")
            continue
        yield (
            where,
            {
                "mention_id": mention_id,
                "world": WORLD,
                "left_context": parts[0],
                "mention": parts[1],
                "right_context": parts[2],
                "label_id": label,
                "category": "",
                "split": split,
            },
        )


def description(paragraphs: list[str], max_chars: int) -> str:
    """The first paragraphs after the title line, headings dropped, up to about `max_chars` characters."""
    kept: list[str] = []
    size = 0
    for paragraph in paragraphs[1:]:
        paragraph = paragraph.strip()
        if not paragraph or paragraph.startswith("Section::::"):
            continue
        kept.append(paragraph.replace("BULLET::::", "").strip())
        size += len(kept[-1]) + 1
        if size >= max_chars:
            break
    return " ".join(kept)[:max_chars]


def iter_pages(
    path: Path,
    problems: ProblemLog,
    keep_ids: set[str] | None = None,
    max_pages: int | None = None,
    description_chars: int = 2000,
) -> Iterator[tuple[str, dict[str, Any]]]:
    """Stream `(where, entity_row)` from the knowledge source, one line at a time.

    With `keep_ids`, lines are filtered on their ``wikipedia_id`` (a regex) BEFORE JSON parsing; the stream
    stops once every kept id has been seen or after `max_pages` kept pages.
    """
    remaining = set(keep_ids) if keep_ids is not None else None
    kept = 0
    with open(path, "rb") as handle:
        for line_number, raw in enumerate(
            tqdm(handle, desc=f"pages {path.name}", unit=" pages", mininterval=5)
        ):
            line = decode_line(raw, f"{path}:{line_number + 1}", problems)
            if line is None:
                continue
            if remaining is not None:
                match = _WIKIPEDIA_ID.search(line)
                if match is None or match.group(1) not in remaining:
                    continue
            where = f"{path}:{line_number + 1}"
            try:
                page = json.loads(line)
            except json.JSONDecodeError as error:
                problems.report(MALFORMED_JSON, f"{where}: malformed JSON ({error.msg})")
                continue
            if not isinstance(page, dict):
                problems.report(MALFORMED_JSON, f"{where}: expected a JSON object")
                continue
            page_id = id_field(page, "wikipedia_id", where, problems)
            if page_id is None:
                continue
            if remaining is not None:
                remaining.discard(page_id)
            text = page.get("text")
            if not isinstance(text, list) or not all(isinstance(p, str) for p in text):
                problems.report(
                    BAD_FIELD,
                    f"{where}: page {page_id!r}: field 'text' must be a list of paragraph strings, "
                    f"got {type(text).__name__}",
                )
                continue
            yield (
                where,
                {
                    "entity_id": page_id,
                    "world": WORLD,
                    "title": page.get("wikipedia_title") or (text[0].strip() if text else ""),
                    "text": description(text, description_chars),
                },
            )
            kept += 1
            if (max_pages is not None and kept >= max_pages) or remaining == set():
                return


def candidate_ids(path: Path, problems: ProblemLog) -> set[str]:
    """Ids listed in a candidate file: jsonl objects with a list under `candidates` (or `tfidf_candidates`) of ids
    or of objects with an `entity_id`; anything else is an error naming the file and line."""
    ids: set[str] = set()
    for line, record in read_jsonl(path, problems):
        name = "candidates" if "candidates" in record else "tfidf_candidates"
        listed = record.get(name, [])
        if not isinstance(listed, list):
            raise ValueError(f"{path}:{line}: field {name!r} must be a list, got {type(listed).__name__}")
        for candidate in listed:
            value = candidate.get("entity_id") if isinstance(candidate, dict) else candidate
            if not is_id(value):
                raise ValueError(
                    f"{path}:{line}: {name} entries must be entity ids (or objects with one under 'entity_id'), "
                    f"got {candidate!r:.60}"
                )
            ids.add(str(value))
    return ids


def read_kilt_aida(
    mention_files: dict[str, str | Path],
    knowledge_source: str | Path,
    restrict: str = "gold",
    candidate_file: str | Path | None = None,
    max_pages: int | None = None,
    description_chars: int = 2000,
    skip_invalid: bool = False,
) -> tuple[datasets.DatasetDict, datasets.Dataset]:
    """(mentions per split, entities of world "wikipedia"); see the module docstring for `restrict`."""
    if restrict not in ("gold", "candidates", "none"):
        raise ValueError(f"restrict must be 'gold', 'candidates' or 'none', got {restrict!r}")
    problems = ProblemLog(skip_invalid=skip_invalid)
    raw = {
        split: [row for _, row in iter_kilt_mentions(Path(p), split, problems)]
        for split, p in mention_files.items()
    }
    keep: set[str] | None = None
    if restrict != "none":
        keep = {row["label_id"] for rows in raw.values() for row in rows}
        if restrict == "candidates":
            if candidate_file is None:
                raise ValueError("restrict='candidates' needs candidate_file")
            keep |= candidate_ids(Path(candidate_file), problems)
    index = EntityIndex()
    pages = iter_pages(Path(knowledge_source), problems, keep, max_pages, description_chars)
    entities = entities_dataset(check_entities(pages, problems, index))
    seen: set[str] = set()  # mention ids are unique over all splits
    mentions = {
        split: mentions_dataset(check_mentions(_located(rows, mention_files[split]), index, problems, seen))
        for split, rows in raw.items()
    }
    for split, dataset in mentions.items():
        if len(dataset) == 0:
            path = mention_files[split]
            logger.warning("%s: no valid mention in split %r (empty file or all skipped)", path, split)
    problems.log_summary("KILT AIDA")
    return datasets.DatasetDict(mentions), entities


def _located(rows: Iterable[dict[str, Any]], path: str | Path) -> Iterator[tuple[str, dict[str, Any]]]:
    for row in rows:
        yield f"{path} (id {row['mention_id']})", row


CARD = """AIDA-CoNLL entity linking from KILT (Petroni et al., 2021), one world `wikipedia` (entity_id = KILT
wikipedia_id; description = first paragraphs of the KILT page), converted by `python -m data_scripts.kilt_aida`
(restrict = {restrict})."""


def main(argv: list[str] | None = None) -> None:
    from .cli import add_common_args, finish, setup_logging

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mention_files", nargs="+", required=True, metavar="SPLIT=PATH")
    parser.add_argument("--knowledge_source", required=True)
    parser.add_argument("--restrict", choices=("gold", "candidates", "none"), default="gold")
    parser.add_argument("--candidate_file", default=None)
    parser.add_argument("--max_pages", type=int, default=None)
    parser.add_argument("--description_chars", type=int, default=2000)
    add_common_args(parser)
    args = parser.parse_args(argv)
    setup_logging()
    malformed = [item for item in args.mention_files if "=" not in item or "" in item.split("=", 1)]
    if malformed:
        parser.error(
            f"--mention_files {malformed[0]!r}: expected SPLIT=PATH (e.g. train=aidayago2-train-kilt.jsonl)"
        )
    splits = [item.split("=", 1)[0] for item in args.mention_files]
    repeated = sorted({s for s in splits if splits.count(s) > 1})
    if repeated:
        parser.error(f"--mention_files names split {repeated[0]!r} more than once")
    if args.description_chars < 1:
        parser.error(f"--description_chars must be >= 1, got {args.description_chars}")
    if args.max_pages is not None and args.max_pages < 1:
        parser.error(f"--max_pages must be >= 1, got {args.max_pages}")
    if args.candidate_file and args.restrict != "candidates":
        parser.error("--candidate_file is read only with --restrict candidates")
    files = dict(item.split("=", 1) for item in args.mention_files)
    mentions, entities = read_kilt_aida(
        files,
        args.knowledge_source,
        args.restrict,
        args.candidate_file,
        args.max_pages,
        args.description_chars,
        args.skip_invalid,
    )
    finish(args, mentions, entities, CARD.format(restrict=args.restrict), "KILT AIDA-CoNLL entity linking")


if __name__ == "__main__":
    main()
