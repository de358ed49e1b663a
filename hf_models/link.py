"""Command line entity linking: build an entity index, then link mentions against it.

    python -m hf_models.link build-index --retriever DIR --entities kb.jsonl --index kb_index/ \
        [--backend exact|faiss] [--faiss_kind flat|ivf|hnsw] [--shortlist_size N] [--fp16] [--max_length 128]
    python -m hf_models.link [link] --retriever DIR [--reranker DIR] --index kb_index/ \
        --input mentions.jsonl --output linked.jsonl [--top_k 64]

Input lines are JSON objects: ``{"input": "left [START_ENT] mention [END_ENT] right", "world": ...}`` (KILT) or
``{"left_context": ..., "mention": ..., "right_context": ..., "world": ...}``; any other keys (``id``, ...) are copied
to the output line, which adds ``"entities": [{"entity_id", "title", "score", "world"}, ...]`` best first.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from .linker import EntityLinker

logger = logging.getLogger(__name__)

COMMANDS = ("build-index", "link")


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--retriever", required=True, help="trained retriever folder or repo id (with tokenizer)"
    )
    parser.add_argument("--batch_size", type=int, default=64, help="mentions / entities per encoder batch")
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda when available)")
    parser.add_argument("--no_progress", action="store_true", help="hide progress bars")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m hf_models.link", description=__doc__.split("\n\n")[0])
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
    build.add_argument("--max_length", type=int, default=128, help="mention / entity input length")
    link = commands.add_parser("link", help="link mentions (the default command)")
    _common(link)
    link.add_argument("--reranker", default=None, help="optional joint reranker folder or repo id")
    link.add_argument("--index", required=True, help="index folder written by build-index")
    link.add_argument("--input", required=True, help="mentions, one JSON object per line")
    link.add_argument("--output", required=True, help="output JSONL")
    link.add_argument("--top_k", type=int, default=64)
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse ``argv``; without a command name, ``link`` is assumed."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0] not in COMMANDS and argv[0] not in ("-h", "--help")):
        argv = ["link", *argv]
    return build_parser().parse_args(argv)


def read_mentions(path: Path) -> list[dict[str, Any]]:
    """JSON objects of a JSONL file (blank lines skipped); a bad line raises naming its number."""
    if not path.exists():
        raise FileNotFoundError(f"mention file {path} does not exist")
    records = []
    with path.open() as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}:{number}: malformed JSON ({error.msg})") from error
    return records


def run_build(args: argparse.Namespace) -> Path:
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
    return linker.build_index(args.entities).save_index(args.index)


def run_link(args: argparse.Namespace) -> Path:
    linker = EntityLinker.from_pretrained(
        args.retriever,
        args.reranker,
        device=args.device,
        batch_size=args.batch_size,
        show_progress=not args.no_progress,
    ).load_index(args.index)
    records = read_mentions(Path(args.input))
    linked = linker.link(records, top_k=args.top_k)
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    with output.open("w") as handle:
        for record, entities in zip(records, linked, strict=True):
            handle.write(json.dumps({**record, "entities": [asdict(e) for e in entities]}) + "\n")
    logger.info("linked %d mention(s) -> %s", len(records), output)
    return output


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status (2 with a one-line message for bad input or a mismatched index)."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    try:
        run_build(args) if args.command == "build-index" else run_link(args)
    except (FileNotFoundError, ValueError, TypeError) as error:
        print(f"error: {error}", file=sys.stderr)  # the CLI's one-line message (no traceback)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
