"""Random vs hard vs mixed-50 negatives for dual and som on the embedded dataset, under the same budget.

Every run trains the same encoder (the packaged all-MiniLM-L6-v2) on the same training mentions for the same number
of steps with the same K, and differs only in the negatives (and the architecture). Prints one markdown table.

    python benchmarks/negatives.py                       # ~20 minutes on 2 CPU cores
    python benchmarks/negatives.py --architectures dual --strategies random hard --max_train_mentions 160
    python benchmarks/negatives.py --strategies hard --pools training world   # the negative pool as a column

``--pools``: where negatives come from (``negative_pool``): ``training`` = all entities of all training worlds
(the paper's setting), ``world`` = the mention's own world, ``labeled`` = the golds of the world's training mentions.
Every run uses the paper's scoring and candidates (dot product, K candidates per mention, no sharing, batch 8), the
rest from recipes/configs/demo_som.yaml.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from hf_models.recipes.recipe import run_retriever_recipe

KEYS = ("recall@8", "recall@64", "unnormalized_accuracy")
DEMO_CONFIG = str(Path(__file__).resolve().parents[1] / "recipes" / "configs" / "demo_som.yaml")
STRATEGIES = {
    "random": ["--negatives", "random"],
    "hard": ["--negatives", "hard"],
    "mixed-50": ["--negatives", "mixed", "--hard_percent", "50"],
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--architectures", nargs="+", default=["dual", "som"])
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=list(STRATEGIES))
    parser.add_argument("--pools", nargs="+", default=["world"], choices=["training", "world", "labeled"])
    parser.add_argument("--max_train_mentions", type=int, default=320)
    parser.add_argument("--max_eval_mentions", type=int, default=400)
    parser.add_argument("--num_train_epochs", type=int, default=2)
    parser.add_argument("--num_candidates", type=int, default=8)
    parser.add_argument("--max_length", type=int, default=48)
    parser.add_argument("--learning_rate", type=float, default=5e-5)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--output_dir", default="outputs/bench_negatives")
    return parser.parse_args()


def run_one(cli: argparse.Namespace, architecture: str, strategy: str, pool: str = "world") -> dict:
    output_dir = Path(cli.output_dir) / f"{architecture}_{strategy}_{pool}"
    argv = [
        "--architecture", architecture, *STRATEGIES[strategy], "--negative_pool", pool,
        "--max_train_mentions", str(cli.max_train_mentions), "--max_eval_mentions", str(cli.max_eval_mentions),
        "--num_train_epochs", str(cli.num_train_epochs), "--num_candidates", str(cli.num_candidates),
        "--max_length", str(cli.max_length), "--learning_rate", str(cli.learning_rate), "--seed", str(cli.seed),
        "--output_dir", str(output_dir), "--save_strategy", "no", "--load_best_model_at_end", "false",
        "--eval_strategy", "no", "--write_candidates", "false", "--disable_tqdm", "true", "--log_level", "warning",
        # the paper's scoring and candidates, whatever the demo config's practitioner options say
        "--share_candidates", "false", "--similarity", "dot", "--per_device_train_batch_size", "8",
    ]  # fmt: skip
    start = time.perf_counter()
    results = run_retriever_recipe(argv, default_config=DEMO_CONFIG)
    results["seconds"] = time.perf_counter() - start
    return results


def main() -> None:
    cli = parse_args()
    rows = []
    for architecture in cli.architectures:
        for strategy in cli.strategies:
            for pool in cli.pools:
                results = run_one(cli, architecture, strategy, pool)
                rows.append((architecture, strategy, pool, results))
            Path(cli.output_dir).mkdir(parents=True, exist_ok=True)
            (Path(cli.output_dir) / "results.json").write_text(json.dumps([list(r) for r in rows], indent=2))
    print(
        f"\nembedded glossary dataset, MiniLM-L6, {cli.max_train_mentions} training mentions, K={cli.num_candidates}, "
        f"{cli.max_length} wordpieces, {cli.num_train_epochs} epochs, lr {cli.learning_rate}, seed {cli.seed}\n"
    )
    print(
        "| architecture | negatives | pool | val R@8 | val R@64 | val acc | test R@8 | test R@64 | test acc | seconds |"
    )
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for architecture, strategy, pool, r in rows:
        cells = [r.get(split, {}).get(key, float("nan")) for split in ("val", "test") for key in KEYS]
        print(
            f"| {architecture} | {strategy} | {pool} | "
            + " | ".join(f"{c:.2f}" for c in cells)
            + f" | {r['seconds']:.0f} |"
        )


if __name__ == "__main__":
    main()
