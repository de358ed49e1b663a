"""Command line entity linking: build an entity index, then link texts against it.

    python -m hf_models.linking build-index --retriever DIR --entities kb.jsonl --index kb_index/ \
        [--backend exact|faiss] [--faiss_kind flat|ivf|hnsw] [--shortlist_size N] [--fp16] [--max_length 128] \
        [--aliases data/my_kb|aliases.parquet [--prior_weight W]]
    python -m hf_models.linking [link] --retriever DIR [--reranker DIR] --index kb_index/ \
        --input texts.txt|inputs.jsonl --output linked.jsonl [--top_k 10] [--detector dictionary|DIR] \
        [--nil_threshold P] [--detection_threshold P] [--world NAME]

A ``.txt`` input is one text per line (mentions detected, or marked with ``[START_ENT] ... [END_ENT]``); the
output has one JSON line per input line. A ``.jsonl`` input holds one JSON object per line: ``{"text": ...}``
(plain or marked), ``{"text": ..., "spans": [[start, end], ...]}``, ``{"input": "... [START_ENT] m [END_ENT] ..."}``
or BLINK's ``{"context_left", "mention", "context_right"}``, each with optional ``world`` and any other keys
(``id``, ...), which are copied to the output line. Output lines add ``text`` (markers removed), ``world`` and
``mentions``: ``[{"start", "end", "surface", "entity_id", "nil", "entities": [{"entity_id", "title",
"description", "score", "probability", "world"}, ...]}, ...]``. An index built with ``--aliases`` (the alias table
of a processed folder written by ``python -m data_scripts.jsonl``) links a mention whose alias key (its ``alias`` /
``lemma``, else its normalized surface) has candidates among those only, by score + ``--prior_weight`` x log prior;
each mention then also carries ``"source": "alias"`` or ``"index"``. See docs/linking.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

import torch

from ..atomic import atomic_write_jsonl
from . import EntityLinker, TrainedDetector

logger = logging.getLogger(__name__)

COMMANDS = ("build-index", "link")


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--retriever", required=True, help="trained retriever folder or repo id (with tokenizer)"
    )
    parser.add_argument("--batch_size", type=int, default=64, help="texts / entities per encoder batch")
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda when available)")
    parser.add_argument("--no_progress", action="store_true", help="hide progress bars")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m hf_models.linking", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command")
    build = commands.add_parser("build-index", help="encode a knowledge base and save its index")
    _common(build)
    build.add_argument("--entities", required=True, help="entity table: .jsonl/.json or .parquet")
    build.add_argument("--index", required=True, help="output index folder")
    build.add_argument("--backend", choices=("exact", "faiss"), default="exact")
    build.add_argument("--faiss_kind", choices=("flat", "ivf", "hnsw"), default="flat")
    build.add_argument(
        "--shortlist_size", type=int, default=None, help="som pre-filter: first-token shortlist"
    )
    build.add_argument("--fp16", action="store_true", help="store entity vectors in float16")
    build.add_argument(
        "--max_length",
        type=int,
        default=None,
        help="mention / entity input length (default: the model's, or 128)",
    )
    build.add_argument(
        "--aliases",
        default=None,
        help="alias table: a processed folder with aliases.parquet (python -m data_scripts.jsonl) or that file",
    )
    build.add_argument(
        "--prior_weight",
        type=float,
        default=None,
        help="weight of the alias log prior added to the score (with --aliases; default 0)",
    )
    link = commands.add_parser("link", help="link texts (the default command)")
    _common(link)
    link.add_argument("--reranker", default=None, help="optional joint reranker folder or repo id")
    link.add_argument("--index", required=True, help="index folder written by build-index")
    link.add_argument(
        "--input", required=True, help=".txt (one text per line) or .jsonl (one JSON object per line)"
    )
    link.add_argument("--output", required=True, help="output JSONL (written atomically)")
    link.add_argument("--top_k", type=int, default=10, help="entities per mention")
    link.add_argument(
        "--detector",
        default="dictionary",
        help="'dictionary' (the index's titles and aliases) or a trained mention-detector folder",
    )
    link.add_argument(
        "--detection_threshold", type=float, default=None, help="trained detector's span probability"
    )
    link.add_argument(
        "--nil_threshold", type=float, default=0.0, help="NIL when the best probability is below"
    )
    link.add_argument("--world", default=None, help="world of inputs that name none")
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse ``argv``; without a command name, ``link`` is assumed."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0] not in COMMANDS and argv[0] not in ("-h", "--help")):
        argv = ["link", *argv]
    return build_parser().parse_args(argv)


def _lines(path: Path):
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, 1):
            try:
                yield number, raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as error:
                raise ValueError(f"{path}:{number}: not UTF-8 text ({error.reason})") from error


def read_inputs(path: Path) -> tuple[list[Any], list[str]]:
    """(inputs, where) of a .txt (every line one text, blank ones too) or a JSONL file (blank lines skipped);
    a malformed line raises naming the file and line."""
    if not path.exists():
        raise FileNotFoundError(f"input file {path} does not exist")
    inputs, where = [], []
    for number, line in _lines(path):
        if path.suffix == ".txt":
            inputs.append(line)
        elif not line.strip():
            continue
        else:
            try:
                inputs.append(json.loads(line))
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}:{number}: malformed JSON ({error.msg})") from error
        where.append(f"{path}:{number}")
    return inputs, where


def run_build(args: argparse.Namespace) -> Path:
    if args.prior_weight is not None and args.aliases is None:
        raise ValueError("--prior_weight weights the alias table's log prior: pass it with --aliases")
    linker = EntityLinker.from_pretrained(
        args.retriever,
        device=args.device,
        max_length=args.max_length,
        batch_size=args.batch_size,
        show_progress=not args.no_progress,
        backend=args.backend,
        faiss_kind=args.faiss_kind,
        shortlist_size=args.shortlist_size,
        store_dtype=torch.float16 if args.fp16 else torch.float32,
    )
    linker.build_index(args.entities, aliases=args.aliases, prior_weight=args.prior_weight or 0.0)
    return linker.save_index(args.index)


def run_link(args: argparse.Namespace) -> Path:
    if args.detection_threshold is not None and args.detector == "dictionary":
        raise ValueError("--detection_threshold is the trained detector's: pass it with --detector DIR")
    linker = EntityLinker.from_pretrained(
        args.retriever,
        args.reranker,
        device=args.device,
        batch_size=args.batch_size,
        show_progress=not args.no_progress,
        nil_threshold=args.nil_threshold,
    ).load_index(args.index)
    if args.detector != "dictionary":
        detector_dir = Path(args.detector)
        if not (detector_dir / "config.json").exists():
            raise FileNotFoundError(
                f"--detector {detector_dir}: not 'dictionary' nor a saved mention detector folder"
            )
        linker.detector = TrainedDetector.from_pretrained(
            detector_dir,
            device=next(linker.retriever.parameters()).device,
            threshold=args.detection_threshold,
        )
    path = Path(args.input)
    inputs, where = read_inputs(path)
    if args.world is not None:
        inputs = [
            {**item, "world": item.get("world", args.world)}
            if isinstance(item, dict)
            else {"text": item, "world": args.world}
            for item in inputs
        ]
    results = linker.link(inputs, top_k=args.top_k, where=where)
    records = []
    for item, result in zip(inputs, results, strict=True):
        record = dict(item) if isinstance(item, dict) else {}
        record.update(result.to_dict())
        records.append(record)
    output = Path(args.output)
    atomic_write_jsonl(output, records)
    mentions = sum(len(r.mentions) for r in results)
    logger.info("linked %d mention(s) in %d input(s) -> %s", mentions, len(results), output)
    return output


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status (2 with a one-line message for bad input or a mismatched index)."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    try:
        run_build(args) if args.command == "build-index" else run_link(args)
    except (
        OSError,
        ValueError,
        TypeError,
    ) as error:  # OSError: a missing file, a folder given as a file, ...
        print(f"error: {error}", file=sys.stderr)  # the CLI's one-line message (no traceback)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
