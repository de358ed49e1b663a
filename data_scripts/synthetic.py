"""A synthetic dataset with Zeshel's shape (worlds, entity and mention counts, text lengths) as processed tables.

    python -m data_scripts.synthetic --output_dir data/zeshel_synthetic [--scale 1.0] [--seed 0]

For dry runs of the paper-size pipeline (``benchmarks/dry_run.py``) where the real data is not at hand: 16 worlds
with the entity and mention counts of Logeswaran et al. (2019), Table 1 (train 332,632 entities / 49,275 mentions
in 8 worlds; val 89,549 / 10,000; test 70,140 / 10,000), ``--scale`` multiplying every count. Text is random
words of a 5,000-word vocabulary ("w0" ... "w4999"); entity descriptions have log-normal lengths (median 120
words, clipped to [5, 600]: most fill the 128 wordpieces, stubs do not), mention contexts 0-256 words per side,
mention surfaces 1-3 words that open the gold entity's title. Nothing about the text is meant to be learnable
beyond the title overlap; the point is the sizes.
"""

from __future__ import annotations

import argparse
import logging

import datasets
import numpy as np

from .io import entities_dataset, mentions_dataset

logger = logging.getLogger(__name__)

# world -> (split, entities, mentions): Logeswaran et al. (2019), Table 1
ZESHEL_WORLDS: dict[str, tuple[str, int, int]] = {
    "american_football": ("train", 31_929, 3_898),
    "doctor_who": ("train", 40_281, 8_334),
    "fallout": ("train", 16_992, 3_286),
    "final_fantasy": ("train", 14_044, 6_041),
    "military": ("train", 104_520, 13_063),
    "pro_wrestling": ("train", 10_133, 1_392),
    "starwars": ("train", 87_056, 11_824),
    "world_of_warcraft": ("train", 27_677, 1_437),
    "coronation_street": ("val", 17_809, 1_464),
    "muppets": ("val", 21_344, 2_028),
    "ice_hockey": ("val", 28_684, 2_233),
    "elder_scrolls": ("val", 21_712, 4_275),
    "forgotten_realms": ("test", 15_603, 1_200),
    "lego": ("test", 10_076, 1_199),
    "star_trek": ("test", 34_430, 4_227),
    "yugioh": ("test", 10_031, 3_374),
}
VOCABULARY_SIZE = 5_000


def vocabulary() -> list[str]:
    return [f"w{i}" for i in range(VOCABULARY_SIZE)]


def _texts(rng: np.random.Generator, lengths: np.ndarray, words: np.ndarray) -> list[str]:
    """One string of ``lengths[i]`` random words per row (Zipf-like word frequencies)."""
    flat = words[np.minimum(rng.zipf(1.3, int(lengths.sum())) - 1, len(words) - 1)]
    bounds = np.concatenate([[0], np.cumsum(lengths)])
    return [" ".join(flat[a:b]) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def synthetic_zeshel(
    scale: float = 1.0, seed: int = 0, worlds: dict[str, tuple[str, int, int]] | None = None
) -> tuple[datasets.DatasetDict, datasets.Dataset]:
    """(mentions per split, entities) in the processed schema with Zeshel's counts times ``scale``."""
    if scale <= 0:
        raise ValueError(f"scale must be positive, got {scale}")
    rng = np.random.default_rng(seed)
    words = np.array(vocabulary())
    entity_rows, mention_rows = [], {}
    for world, (split, num_entities, num_mentions) in (worlds or ZESHEL_WORLDS).items():
        e, m = max(2, round(num_entities * scale)), max(1, round(num_mentions * scale))
        title_lengths = rng.integers(1, 4, e)
        titles = _texts(rng, title_lengths, words)
        text_lengths = np.clip(rng.lognormal(np.log(120), 0.8, e).astype(int), 5, 600)
        texts = _texts(rng, text_lengths, words)
        ids = [f"{world}-{i:06d}" for i in range(e)]
        entity_rows.extend(
            {"entity_id": i, "world": world, "title": t, "text": f"{t} {x}"}
            for i, t, x in zip(ids, titles, texts, strict=True)
        )
        golds = rng.integers(0, e, m)
        lefts = _texts(rng, rng.integers(0, 257, m), words)
        rights = _texts(rng, rng.integers(0, 257, m), words)
        for j in range(m):
            gold = int(golds[j])
            mention_rows.setdefault(split, []).append(
                {
                    "mention_id": f"{world}-m{j:06d}",
                    "world": world,
                    "left_context": lefts[j],
                    "mention": titles[gold],
                    "right_context": rights[j],
                    "label_id": ids[gold],
                    "category": "HIGH_OVERLAP",
                    "split": split,
                }
            )
        logger.info("%s (%s): %d entities, %d mentions", world, split, e, m)
    mentions = datasets.DatasetDict({s: mentions_dataset(iter(rows)) for s, rows in mention_rows.items()})
    return mentions, entities_dataset(iter(entity_rows))


def main(argv: list[str] | None = None) -> None:
    from .io import write_processed

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--scale", type=float, default=1.0, help="Multiply every count (1.0 = Zeshel's).")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    mentions, entities = synthetic_zeshel(args.scale, args.seed)
    counts = write_processed(
        mentions,
        entities,
        args.output_dir,
        card="Synthetic tables with Zeshel's world, entity and mention counts (data_scripts/synthetic.py).",
        pretty_name="Synthetic Zeshel-size tables",
        overwrite=True,
    )
    print(counts)


if __name__ == "__main__":
    main()
