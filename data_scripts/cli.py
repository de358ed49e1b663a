"""Command-line plumbing shared by the loaders: common flags, optional featurization, writing, pushing."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import datasets

from .aliases import AliasTable
from .featurize import DEFAULT_MARKERS, featurize_entities, featurize_mentions, prepare_tokenizer
from .io import check_replaceable, counts_summary, push_processed, write_processed
from .validation import validate_tables

logger = logging.getLogger(__name__)


def add_common_args(parser: argparse.ArgumentParser) -> None:
    """--output_dir, --skip_invalid, --tokenizer/--max_length/--num_proc/--markers, --push_to_hub."""
    parser.add_argument("--output_dir", required=True, help="Folder for the Parquet tables + dataset card.")
    parser.add_argument(
        "--skip_invalid",
        action="store_true",
        help="Count, report and skip invalid records instead of failing.",
    )
    parser.add_argument(
        "--tokenizer", default=None, help="Also write featurized ids made with this tokenizer."
    )
    parser.add_argument("--max_length", type=int, default=128, help="Ids per mention/entity (paper: 128).")
    parser.add_argument("--num_proc", type=int, default=1, help="Processes for featurization.")
    parser.add_argument(
        "--markers", nargs=3, default=list(DEFAULT_MARKERS), help="Mention start/end, title sep."
    )
    parser.add_argument(
        "--push_to_hub", default=None, metavar="REPO", help="Upload the folder as a Hub dataset."
    )
    parser.add_argument("--hub_token", default=None)
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="Replace --output_dir even when it holds another dataset or files that are no dataset.",
    )


def finish(
    args: argparse.Namespace,
    mentions: datasets.DatasetDict,
    entities: datasets.Dataset,
    card: str,
    pretty_name: str,
    aliases: AliasTable | None = None,
) -> None:
    """Validate, featurize (when --tokenizer), write the layout atomically (with the alias table, when given),
    push (when --push_to_hub)."""
    output_dir = Path(args.output_dir)
    check_replaceable(output_dir, pretty_name, args.overwrite)  # fail before the (long) featurization
    validate_tables(mentions, entities)
    if args.tokenizer:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
        limit = getattr(tokenizer, "model_max_length", None)
        if (
            isinstance(limit, int) and limit < 1_000_000 and args.max_length > limit
        ):  # huge = "no limit recorded"
            raise ValueError(f"--max_length {args.max_length} exceeds --tokenizer {args.tokenizer}'s {limit}")
        markers = tuple(args.markers)
        added = prepare_tokenizer(tokenizer, markers)
        kwargs = {"max_length": args.max_length, "num_proc": args.num_proc, "markers": markers}
        mentions = featurize_mentions(mentions, tokenizer, **kwargs)
        entities = featurize_entities(entities, tokenizer, **kwargs)
        card += (
            f"\n\nFeaturized with `{args.tokenizer}` (max_length {args.max_length}, markers {list(markers)}, "
            f"{added} token(s) added to the vocabulary)."
        )
    counts = write_processed(
        mentions,
        entities,
        output_dir,
        card=card,
        pretty_name=pretty_name,
        overwrite=args.overwrite,
        aliases=aliases,
    )
    logger.info("%s", counts_summary(counts))
    if args.push_to_hub:
        url = push_processed(args.output_dir, args.push_to_hub, token=args.hub_token)
        logger.info("pushed to %s", url)


def setup_logging() -> None:
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
