"""Zeshel (Logeswaran et al., 2019) original release -> processed tables.

    python -m data_scripts.zeshel --zeshel_dir zeshel --output_dir data/zeshel \
        [--tokenizer bert-base-uncased --max_length 128 --num_proc 2] [--skip_invalid] [--push_to_hub REPO]

Entities: every document of ``documents/<world>.json`` (entity_id = document_id; text begins with the title, as
released). Mentions: ``mentions/<split>.json`` for train, val, test, heldout_train_seen, heldout_train_unseen
(those present). Contexts are the context document's whitespace tokens before ``start_index`` and after
``end_index`` (INCLUSIVE), at most ``context_window`` tokens per side (default 256 >= 128 wordpieces).
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import datasets

from hf_models.index.evaluation import check_candidate_ids
from hf_models.progress import tqdm

from .io import entities_dataset, mentions_dataset
from .validation import (
    CONTEXT_DOCUMENT_MISSING,
    EntityIndex,
    ProblemLog,
    check_entities,
    check_mentions,
    check_span,
    id_field,
    int_field,
    read_jsonl,
    require_fields,
    text_field,
)

logger = logging.getLogger(__name__)

SPLITS = ("train", "val", "test", "heldout_train_seen", "heldout_train_unseen")
DOCUMENT_FIELDS = ("document_id", "title", "text")
MENTION_FIELDS = (
    "mention_id",
    "context_document_id",
    "label_document_id",
    "corpus",
    "start_index",
    "end_index",
)


def iter_documents(documents_dir: Path, problems: ProblemLog) -> Iterator[tuple[str, dict[str, Any]]]:
    """`(where, entity_row)` for every document of every world file."""
    for path in sorted(documents_dir.glob("*.json")):
        world = path.stem
        for line, record in tqdm(read_jsonl(path, problems), desc=f"documents/{path.name}", leave=False):
            where = f"{path}:{line}"
            if not require_fields(record, DOCUMENT_FIELDS, where, problems):
                continue
            entity_id = id_field(record, "document_id", where, problems)
            title = text_field(record, "title", where, problems) if entity_id is not None else None
            text = text_field(record, "text", where, problems) if title is not None else None
            if text is not None:
                yield where, {"entity_id": entity_id, "world": world, "title": title, "text": text}


def span_row(tokens: list[str], start: int, end: int, context_window: int | None) -> tuple[str, str, str]:
    """(left_context, mention, right_context) of an inclusive token span, contexts clipped to the window."""
    left_start = 0 if not context_window else max(0, start - context_window)
    right_end = None if not context_window else end + 1 + context_window
    return (
        " ".join(tokens[left_start:start]),
        " ".join(tokens[start : end + 1]),
        " ".join(tokens[end + 1 : right_end]),
    )


def optional_texts(record: dict[str, Any], names: tuple[str, ...], where: str, problems: ProblemLog) -> bool:
    """Optional text fields: each absent, null or a string; anything else is reported (False)."""
    return all(
        record.get(name) is None or text_field(record, name, where, problems) is not None for name in names
    )


def iter_mentions(
    path: Path, split: str, texts: dict[str, str], problems: ProblemLog, context_window: int | None
) -> Iterator[tuple[str, dict[str, Any]]]:
    """`(where, mention_row)` for one split file; spans are checked against their context documents."""
    tokens_of: dict[str, list[str]] = {}
    for line, record in tqdm(read_jsonl(path, problems), desc=f"mentions/{path.name}", leave=False):
        where = f"{path}:{line}"
        if not require_fields(record, MENTION_FIELDS, where, problems):
            continue
        mention_id = id_field(record, "mention_id", where, problems)
        label = id_field(record, "label_document_id", where, problems) if mention_id is not None else None
        document_id = id_field(record, "context_document_id", where, problems) if label is not None else None
        start = int_field(record, "start_index", where, problems) if document_id is not None else None
        end = int_field(record, "end_index", where, problems) if start is not None else None
        world = id_field(record, "corpus", where, problems) if end is not None else None
        if world is None or not optional_texts(record, ("text", "category"), where, problems):
            continue
        if document_id not in texts:
            problems.report(
                CONTEXT_DOCUMENT_MISSING,
                f"{where}: mention {record['mention_id']!r} cites context document {document_id!r}, not in documents/",
            )
            continue
        if document_id not in tokens_of:
            tokens_of = {document_id: texts[document_id].split()}  # mentions of a document are contiguous
        if not check_span(tokens_of[document_id], start, end, record.get("text"), where, problems):
            continue
        left, mention, right = span_row(tokens_of[document_id], start, end, context_window)
        yield (
            where,
            {
                "mention_id": mention_id,
                "world": world,
                "left_context": left,
                "mention": mention,
                "right_context": right,
                "label_id": label,
                "category": record.get("category") or "",
                "split": split,
            },
        )


def read_zeshel(
    zeshel_dir: str | Path,
    splits: tuple[str, ...] | None = None,
    skip_invalid: bool = False,
    context_window: int | None = 256,
) -> tuple[datasets.DatasetDict, datasets.Dataset]:
    """(mentions per split, entities of every world) from a Zeshel release folder.

    Raises :class:`~data_scripts.validation.InvalidDataError` on the first invalid record unless
    `skip_invalid`, in which case invalid records are counted per reason, logged, and skipped. ``splits=None``
    reads those of :data:`SPLITS` that exist; splits named explicitly must exist. A split without one valid
    mention is logged (and refused by :func:`~data_scripts.io.write_processed`). Mention ids must be unique over all splits.
    """
    if context_window is not None and context_window < 0:
        raise ValueError(f"context_window must be >= 0 (0 or None = all), got {context_window}")
    root = Path(zeshel_dir)
    if not (root / "documents").is_dir() or not (root / "mentions").is_dir():
        raise FileNotFoundError(
            f"{root}: expected documents/<world>.json and mentions/<split>.json (Zeshel layout)"
        )
    problems = ProblemLog(skip_invalid=skip_invalid)
    index = EntityIndex()
    texts: dict[str, str] = {}

    def remember(rows):
        for row in rows:
            texts[row["entity_id"]] = row["text"]
            yield row

    entities = entities_dataset(
        remember(check_entities(iter_documents(root / "documents", problems), problems, index))
    )
    mentions = {}
    seen: set[str] = set()
    for split in splits or SPLITS:
        path = root / "mentions" / f"{split}.json"
        if not path.exists():
            if splits:
                raise FileNotFoundError(f"{path}: no such split file (--splits names {split!r})")
            continue
        rows = iter_mentions(path, split, texts, problems, context_window)
        mentions[split] = mentions_dataset(check_mentions(rows, index, problems, seen))
        if len(mentions[split]) == 0:
            logger.warning("%s: no valid mention in split %r (empty file or all skipped)", path, split)
    if not mentions:
        raise FileNotFoundError(f"{root / 'mentions'}: none of {list(splits or SPLITS)} found")
    problems.log_summary(str(root))
    return datasets.DatasetDict(mentions), entities


def tfidf_candidate_records(
    zeshel_dir: str | Path, split: str, mentions: datasets.Dataset, world_of: dict[str, str]
) -> list[dict[str, Any]]:
    """Zeshel's released ``tfidf_candidates/<split>.json`` (64 document ids per mention, best first) as candidate
    records in the retrievers' format (mention_id, world, label_id, candidates, scores), in ``mentions`` order.

    The release has no scores: ``scores`` is minus the rank (-1, -2, ...), which keeps the order. Every processed
    mention must have one line; its candidates must be distinct known entities (``world_of``: entity id -> world)
    of the mention's world (errors name the file and line).
    """
    path = Path(zeshel_dir) / "tfidf_candidates" / f"{split}.json"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no TF-IDF candidates for split {split!r}")
    world_of_mention = dict(zip(mentions["mention_id"], mentions["world"], strict=True))
    candidates: dict[str, list[str]] = {}
    line_of: dict[str, int] = {}
    problems = ProblemLog(skip_invalid=False)
    for line, record in read_jsonl(path, problems):
        where = f"{path}:{line}"
        if not require_fields(record, ("mention_id", "tfidf_candidates"), where, problems):
            continue
        mention_id = str(record["mention_id"])
        if mention_id not in world_of_mention:
            continue  # a mention skipped by the conversion (--skip_invalid) or of another split
        if mention_id in line_of:
            raise ValueError(
                f"{where}: mention {mention_id!r} already has candidates on line {line_of[mention_id]}"
            )
        if not isinstance(record["tfidf_candidates"], list):
            raise ValueError(f"{where}: field 'tfidf_candidates' must be a list of document ids")
        ids = [str(c) for c in record["tfidf_candidates"]]
        check_candidate_ids(ids, world_of_mention[mention_id], world_of, where, mention_id)
        candidates[mention_id], line_of[mention_id] = ids, line
    missing = [m for m in mentions["mention_id"] if m not in candidates]
    if missing:
        raise ValueError(f"{path}: no TF-IDF candidates for {len(missing)} mention(s), e.g. {missing[:3]}")
    return [
        {
            "mention_id": mention_id,
            "world": world,
            "label_id": label,
            "candidates": candidates[mention_id],
            "scores": [-float(rank) for rank in range(1, len(candidates[mention_id]) + 1)],
        }
        for mention_id, world, label in zip(
            mentions["mention_id"], mentions["world"], mentions["label_id"], strict=True
        )
    ]


def write_tfidf_candidates(
    zeshel_dir: str | Path, mentions: datasets.DatasetDict, entities: datasets.Dataset, output_dir: str | Path
) -> list[Path]:
    """``<output_dir>/<split>.jsonl`` for every processed split (the reranker recipe's ``--candidates_dir``)."""
    from hf_models.atomic import atomic_write_jsonl

    world_of = dict(zip(entities["entity_id"], entities["world"], strict=True))
    return [
        atomic_write_jsonl(
            Path(output_dir) / f"{split}.jsonl",
            tfidf_candidate_records(zeshel_dir, split, mentions[split], world_of),
        )
        for split in mentions
    ]


CARD = """Zero-shot entity linking mentions and entities from Zeshel (Logeswaran et al., 2019; text from Fandom
wikis, CC-BY-SA), converted from the original release by `python -m data_scripts.zeshel`. Contexts are the
context document's whitespace tokens (at most {window} per side); spans are inclusive token indices."""


def main(argv: list[str] | None = None) -> None:
    from .cli import add_common_args, finish, setup_logging

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--zeshel_dir", required=True, help="Folder with documents/ and mentions/.")
    parser.add_argument(
        "--splits",
        nargs="+",
        default=None,
        help=f"Splits to read (each must exist); default: those of {SPLITS}.",
    )
    parser.add_argument(
        "--context_window", type=int, default=256, help="Whitespace tokens per side (0 = all)."
    )
    parser.add_argument(
        "--tfidf_candidates_dir",
        default=None,
        help="Also convert the release's tfidf_candidates/ (App. B's BM25 candidates) into <DIR>/<split>.jsonl "
        "candidate files for recipes/zeshel_rerank.py --candidates_dir DIR.",
    )
    add_common_args(parser)
    args = parser.parse_args(argv)
    if args.context_window < 0:
        parser.error(f"--context_window must be >= 0 (0 = all), got {args.context_window}")
    if args.splits and len(set(args.splits)) != len(args.splits):
        parser.error(f"--splits names a split more than once: {args.splits}")
    setup_logging()
    mentions, entities = read_zeshel(
        args.zeshel_dir, tuple(args.splits) if args.splits else None, args.skip_invalid, args.context_window
    )
    finish(
        args, mentions, entities, CARD.format(window=args.context_window or "all"), "Zeshel entity linking"
    )
    if args.tfidf_candidates_dir:
        for path in write_tfidf_candidates(args.zeshel_dir, mentions, entities, args.tfidf_candidates_dir):
            logger.info("wrote %s", path)


if __name__ == "__main__":
    main()
