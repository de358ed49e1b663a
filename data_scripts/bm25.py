"""BM25 candidates (Appendix B's rerankers on BM25 candidates) for any processed dataset, in the retrievers' format.

    python -m data_scripts.bm25 --dataset_dir data/zeshel --output_dir outputs/bm25/candidates \
        [--k 64] [--context_words 0] [--splits train val test]

Each world's entities (title + text) are indexed with `bm25s` (Lucene BM25, k1 = 1.5, b = 0.75, English stopwords
removed, lower-cased word tokens); each mention's query is its surface string plus ``context_words`` whitespace
words of context per side (0 = the surface only, as Logeswaran et al. (2019) query with the mention string), and
retrieves the ``k`` best entities of its OWN world. One file per split, ``<output_dir>/<split>.jsonl``, one JSON
line per mention with ``mention_id``, ``world``, ``label_id``, ``candidates`` (entity ids, best first) and
``scores`` (BM25) -- the format of the retrievers' ``candidates/<split>.jsonl``, so
``recipes/zeshel_rerank.py --candidates_dir OUTPUT_DIR`` trains and evaluates a reranker on them. Zeshel's own
released TF-IDF candidates are converted by ``python -m data_scripts.zeshel ... --tfidf_candidates_dir DIR``.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from hf_models.atomic import atomic_write_jsonl

logger = logging.getLogger(__name__)


def mention_query(left: str, mention: str, right: str, context_words: int) -> str:
    """The surface string plus ``context_words`` whitespace words of context on each side."""
    if context_words <= 0:
        return mention
    return " ".join([*left.split()[-context_words:], mention, *right.split()[:context_words]])


def bm25_candidates(mentions, entities, k: int = 64, context_words: int = 0) -> list[dict]:
    """Top-k BM25 entities of each mention's own world -> candidate records (mentions order).

    ``mentions``: rows with mention_id, world, left_context, mention, right_context, label_id (a processed split);
    ``entities``: rows with entity_id, world, title, text. A world with fewer than k entities returns them all.
    """
    import bm25s

    by_world: dict[str, list[int]] = {}
    for row, world in enumerate(entities["world"]):
        by_world.setdefault(world, []).append(row)
    entity_ids, titles, texts = entities["entity_id"], entities["title"], entities["text"]
    mention_rows: dict[str, list[int]] = {}
    for row, world in enumerate(mentions["world"]):
        mention_rows.setdefault(world, []).append(row)
    lefts, surfaces, rights = mentions["left_context"], mentions["mention"], mentions["right_context"]
    records: list[dict | None] = [None] * len(mentions)
    for world, rows in sorted(mention_rows.items()):
        if world not in by_world:
            raise ValueError(f"mentions of world {world!r} but the entity table has no entity of that world")
        world_entities = by_world[world]
        corpus = [f"{titles[r]} {texts[r]}" for r in world_entities]
        retriever = bm25s.BM25()
        retriever.index(bm25s.tokenize(corpus, stopwords="en", show_progress=False), show_progress=False)
        queries = [mention_query(lefts[r], surfaces[r], rights[r], context_words) for r in rows]
        top = min(k, len(world_entities))
        # query words as strings (mapped onto the world's vocabulary; unknown words score 0); an all-stopword
        # query tokenizes to nothing and scores every entity 0
        tokens = bm25s.tokenize(queries, stopwords="en", show_progress=False, return_ids=False)
        positions, scores = retriever.retrieve(tokens, k=top, show_progress=False)  # [n, top] each
        for i, row in enumerate(rows):
            records[row] = {
                "mention_id": mentions["mention_id"][row],
                "world": world,
                "label_id": mentions["label_id"][row],
                "candidates": [entity_ids[world_entities[int(p)]] for p in positions[i]],
                "scores": [round(float(s), 5) for s in scores[i]],
            }
        logger.info("BM25: world %s, %d mentions x %d entities", world, len(rows), len(world_entities))
    return records  # type: ignore[return-value]


def main(argv: list[str] | None = None) -> None:
    from .io import load_processed

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset_dir", required=True, help="Processed tables (data_scripts output).")
    parser.add_argument(
        "--output_dir", required=True, help="Where <split>.jsonl candidate files are written."
    )
    parser.add_argument("--k", type=int, default=64, help="Candidates per mention (paper: 64).")
    parser.add_argument(
        "--context_words", type=int, default=0, help="Context words per side added to the query."
    )
    parser.add_argument("--splits", nargs="+", default=None, help="Splits to retrieve for (default: all).")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.k < 1:
        parser.error(f"--k must be >= 1, got {args.k}")
    if args.context_words < 0:
        parser.error(f"--context_words must be >= 0, got {args.context_words}")
    mentions, entities = load_processed(args.dataset_dir)
    splits = args.splits or list(mentions)
    missing = [s for s in splits if s not in mentions]
    if missing:
        parser.error(f"{args.dataset_dir} has no split(s) {missing} (has {list(mentions)})")
    for split in splits:
        records = bm25_candidates(mentions[split], entities, k=args.k, context_words=args.context_words)
        path = atomic_write_jsonl(Path(args.output_dir) / f"{split}.jsonl", records)
        print(f"{split}: {len(records)} mentions -> {path}")


if __name__ == "__main__":
    main()
