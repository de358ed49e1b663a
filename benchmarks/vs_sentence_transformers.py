"""The practitioner's baseline vs this repo's recipes, side by side on the same tables (issue 14).

Every system trains the same encoder (the packaged all-MiniLM-L6-v2) on the SAME training mentions for the same
number of epochs, and is evaluated by THIS repo's evaluation (world-restricted top-k; recall@1/8/64 micro, accuracy
macro over worlds): the sentence-transformers model is converted to a ``DualEncoderModel`` with the same pooling and
similarity (mean pooling, one shared encoder, cosine), so both sides go through the same ``EntityIndex``.

* ``st-mnrl`` -- what a practitioner would write with sentence-transformers: ``mine_hard_negatives`` (1 hard negative
  per mention, defaults otherwise, over the training entities) + ``MultipleNegativesRankingLoss`` (in-batch negatives,
  cosine x 20), mean pooling, one shared encoder, batch 32, lr 5e-5, ``NO_DUPLICATES`` batches; fp32 training unless
  ``--train_bf16`` (as every row).
* ``paper-dual-random`` / ``paper-dual-hard`` -- ``recipes/zeshel_dual.py`` as the issue ran it (leftmost, dot
  product, two encoders, K = 16, batch 8, lr 5e-5), re-mined every epoch.
* the other rows change one thing at a time on the way to ``ours`` (see ``SYSTEMS``).
* ``pylate`` -- the multi-vector peer of ``som``: PyLate's ColBERT (MiniLM + a 128-d projection, its contrastive
  loss with in-batch negatives and the same mined hard negative, batch 32), trained in its own venv
  (``--pylate_python``, see ``benchmarks/_pylate_peer.py``: PyLate pins sentence-transformers 5.3 / transformers
  <= 5.3, which cannot be installed beside this repo's) and scored by MaxSim over each world; the rankings are
  evaluated here. ``som-ours`` is the repo's som with the ``ours`` training settings.

Wall time: ``train s`` = model build + every mining pass + training (what differs between systems); ``eval s`` =
encoding the evaluation pools and searching (the same code for every row). Text and tokenization are shared and not
timed. Two variants of the embedded data: ``world`` (each mention searches its own world, as in Zeshel) and ``pool``
(every mention searches ALL 9,329 entities of all worlds; training negatives come from all training entities), where
recall@64 is not saturated.

    python benchmarks/vs_sentence_transformers.py --variant world
    python benchmarks/vs_sentence_transformers.py --variant pool --systems st-mnrl ours
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from benchmarks._peers import run_pylate, train_sentence_transformers  # noqa: E402
from benchmarks._systems import (  # noqa: E402
    DEFAULT_ROWS,
    PYLATE_ROW,
    ST_ROWS,
    SYSTEMS,
)

KEYS = ("recall@1", "recall@8", "recall@64", "unnormalized_accuracy")
ALIAS_KEYS = ("alias_accuracy", "alias_prior_accuracy")  # when the processed folder has an alias table
SHORT = {"unnormalized_accuracy": "acc", "alias_accuracy": "alias acc", "alias_prior_accuracy": "alias+prior"}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--systems", nargs="+", default=DEFAULT_ROWS, choices=[*ST_ROWS, PYLATE_ROW, *SYSTEMS]
    )
    parser.add_argument(
        "--pylate_python", default=None, help="python of a venv with PyLate installed (for --systems pylate)"
    )
    parser.add_argument("--variant", choices=["world", "pool"], default="world")
    parser.add_argument("--dataset_dir", default=str(REPO / "data" / "glossary_el"))
    parser.add_argument("--max_train_mentions", type=int, default=1600)
    parser.add_argument("--max_eval_mentions", type=int, default=None)
    parser.add_argument("--max_length", type=int, default=48)
    parser.add_argument("--num_train_epochs", type=int, default=2)
    parser.add_argument("--learning_rate", type=float, default=5e-5)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--output_dir", default="outputs/bench_vs_st")
    parser.add_argument(
        "--train_bf16",
        action="store_true",
        help="train every system under bf16 autocast (on CPUs with AVX512-BF16 or AMX ~3x faster than fp32; on "
        "AVX2-only CPUs ~13x SLOWER, docs/results.md 'Where the time goes'; encoding for mining/evaluation follows "
        "encode_dtype auto either way)",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="time every system's training this many times, the systems interleaved (A B A B ...); the table "
        "reports the median and the range (metrics come from the first round: the runs are seeded)",
    )
    parser.add_argument(
        "--print_only", action="store_true", help="print the table of an earlier run's results.json and exit"
    )
    return parser.parse_args()


# ----------------------------------------------------------------------------------------------- data
@dataclass
class Tables:
    train: object  # MentionTable
    train_entities: object  # EntityTable (the training pool)
    evals: dict  # split -> MentionTable
    eval_entities: object  # EntityTable
    tokenizer: object
    aliases: object = None  # AliasTable of the processed folder (None: none, or the `pool` variant)


def _relabel(dataset, world: str):
    return dataset.map(lambda _: {"world": world}, desc=f"world -> {world}")


def load_tables(cli: argparse.Namespace, tokenizer) -> Tables:
    """Featurize the processed tables once; the `pool` variant merges the worlds into one retrieval pool."""
    from data_scripts.aliases import load_aliases
    from data_scripts.featurize import featurize_entities, featurize_mentions, prepare_tokenizer
    from data_scripts.io import load_processed
    from hf_models.index.tables import EntityTable, MentionTable

    prepare_tokenizer(tokenizer)
    mentions, entities = load_processed(cli.dataset_dir)
    train = (
        mentions["train"].shuffle(seed=0).select(range(min(cli.max_train_mentions, len(mentions["train"]))))
    )
    evals = {s: mentions[s] for s in ("val", "test") if s in mentions}
    if cli.max_eval_mentions:
        evals = {
            s: d.shuffle(seed=0).select(range(min(cli.max_eval_mentions, len(d)))) for s, d in evals.items()
        }
    train_worlds = set(train.unique("world"))
    if cli.variant == "pool":
        train_entities = _relabel(entities.filter(lambda r: r["world"] in train_worlds), "train-pool")
        entities, train = _relabel(entities, "all"), _relabel(train, "train-pool")
        evals = {s: _relabel(d, "all") for s, d in evals.items()}
    featurized = EntityTable.from_dataset(featurize_entities(entities, tokenizer, max_length=cli.max_length))
    train_table = featurized
    if cli.variant == "pool":
        train_table = EntityTable.from_dataset(
            featurize_entities(train_entities, tokenizer, max_length=cli.max_length)
        )
    return Tables(
        train=MentionTable.from_dataset(
            featurize_mentions(train, tokenizer, max_length=cli.max_length), train_table, split="train"
        ),
        train_entities=train_table,
        evals={
            s: MentionTable.from_dataset(
                featurize_mentions(d, tokenizer, max_length=cli.max_length), featurized, s
            )
            for s, d in evals.items()
        },
        eval_entities=featurized,
        tokenizer=tokenizer,
        aliases=load_aliases(cli.dataset_dir) if cli.variant == "world" else None,
    )


# ------------------------------------------------------------------------------------------ evaluation
def evaluate(model, tables: Tables, batch_size: int = 128) -> tuple[dict, float]:
    """This repo's evaluation of any retriever on the eval splits -> ({split: metrics}, seconds)."""
    from hf_models.index.entity_index import EntityIndex
    from hf_models.index.evaluation import evaluate_ranking, retrieve_splits

    start = time.perf_counter()
    model.eval()
    index = EntityIndex(model, None, batch_size=batch_size, encode_dtype="auto", show_progress=False)
    rankings = retrieve_splits(index, tables.evals, tables.eval_entities, k=64)  # each pool encoded once
    results = {
        split: evaluate_ranking(rankings[split], mentions, tables.eval_entities, ks=(1, 8, 64))
        for split, mentions in tables.evals.items()
    }
    if (
        tables.aliases is not None
    ):  # alias-restricted accuracy; the prior's weight is tuned on the first eval split
        from hf_models.index.alias_metrics import evaluate_alias_splits

        alias = evaluate_alias_splits(
            model, tables.aliases, tables.evals, tables.eval_entities, next(iter(tables.evals)), cross=False
        )
        for split, metrics in alias.items():
            results[split].update(metrics)
    return results, time.perf_counter() - start


# ------------------------------------------------------------------------------------------ this repo
def train_nce(cli: argparse.Namespace, tables: Tables, name: str, encoder: str):
    """One NCETrainer run with the row's settings (mining at every epoch included)."""
    from hf_models.recipes.model_setup import build_model
    from hf_models.recipes.recipe_args import ModelArguments
    from hf_models.training.trainer import NCETrainer
    from hf_models.training.training_args import NCETrainingArguments

    settings = SYSTEMS[name]
    model = build_model(
        ModelArguments(
            architecture=settings["architecture"],
            encoder=encoder,
            shared_encoder=settings["shared_encoder"],
            reduction=settings["reduction"],
            similarity=settings["similarity"],
            similarity_scale=settings["similarity_scale"],
        ),
        tables.tokenizer,
    )
    args = NCETrainingArguments(
        output_dir=str(Path(cli.output_dir) / name),
        negatives=settings["negatives"],
        num_candidates=settings["num_candidates"],
        share_candidates=settings["share_candidates"],
        negative_pool=settings["negative_pool"],
        per_device_train_batch_size=settings["per_device_train_batch_size"],
        learning_rate=settings["learning_rate"] or cli.learning_rate,
        warmup_steps=settings["warmup_steps"],
        freeze_word_embeddings=settings["freeze_word_embeddings"],
        group_batches_by_world=settings["group_batches_by_world"],
        num_train_epochs=cli.num_train_epochs,
        mining_interval=settings.get("mining_interval", 1),
        optim=settings["optim"],
        weight_decay=0.0,
        bf16=cli.train_bf16,
        use_cpu=True,
        save_strategy="no",
        eval_strategy="no",
        report_to="none",
        logging_steps=50,
        seed=cli.seed,
        mining_batch_size=128,
        mining_chunk_size=512,
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    trainer = NCETrainer(model, args, tables.train, tables.train_entities, aliases=tables.aliases)
    trainer.train()
    return trainer.model, trainer.state.global_step


def main() -> None:
    from transformers import AutoTokenizer, set_seed

    from hf_models.recipes.recipe_args import resolve_encoder

    cli = parse_args()
    logging.basicConfig(level=logging.WARNING)
    encoder = resolve_encoder("embedded")
    tables = load_tables(cli, AutoTokenizer.from_pretrained(encoder))
    out = Path(cli.output_dir) / cli.variant
    if cli.print_only:
        print_table(cli, json.loads((out / "results.json").read_text()), tables)
        return
    rows = []
    out.mkdir(parents=True, exist_ok=True)
    for repeat in range(
        cli.repeats
    ):  # round 0 trains and evaluates; later rounds re-time the training (A B A B)
        for index, name in enumerate(cli.systems):
            set_seed(cli.seed)
            start = time.perf_counter()
            if name == PYLATE_ROW:
                results, train_seconds, eval_seconds, steps = run_pylate(cli, tables, encoder)
                model = None
            else:
                if name in ST_ROWS:
                    corpus, batch_size, learning_rate = ST_ROWS[name]
                    model, steps = train_sentence_transformers(
                        cli,
                        tables,
                        encoder,
                        corpus=corpus,
                        batch_size=batch_size,
                        learning_rate=learning_rate,
                    )
                else:
                    model, steps = train_nce(cli, tables, name, encoder)
                train_seconds = time.perf_counter() - start
                if not repeat:
                    results, eval_seconds = evaluate(model, tables)
            if repeat:
                rows[index]["train_s_all"].append(train_seconds)
                rows[index]["train_s"] = statistics.median(rows[index]["train_s_all"])
                print(f"repeat {repeat} {name}: train {train_seconds:.0f} s", flush=True)
            else:
                rows.append(
                    {
                        "system": name,
                        "train_s": train_seconds,
                        "train_s_all": [train_seconds],
                        "eval_s": eval_seconds,
                        "steps": steps,
                        **results,
                    }
                )
                print(
                    f"done {name}: train {train_seconds:.0f} s, eval {eval_seconds:.0f} s, {results}",
                    flush=True,
                )
            (out / "results.json").write_text(json.dumps(rows, indent=2))
            del model
            gc.collect()
    print_table(cli, rows, tables)


def print_table(cli: argparse.Namespace, rows: list[dict], tables: Tables) -> None:
    from hf_models.index.encoding import cpu_has_fast_bf16

    pool = len(tables.eval_entities) if cli.variant == "pool" else "its world's"
    encoding = "bf16" if cpu_has_fast_bf16() else "fp32"
    print(
        f"\nvariant {cli.variant}: {len(tables.train)} training mentions, each eval mention searches {pool} entities; "
        f"MiniLM-L6, {cli.max_length} wordpieces, {cli.num_train_epochs} epochs, lr {cli.learning_rate}, "
        f"seed {cli.seed}, training in {'bf16 autocast' if cli.train_bf16 else 'fp32'} (encoding {encoding}), "
        f"{torch.get_num_threads()} threads, load average at the end {os.getloadavg()[0]:.2f}\n"
    )
    splits = list(tables.evals)
    keys = KEYS + (ALIAS_KEYS if all(ALIAS_KEYS[0] in row[s] for row in rows for s in splits) else ())
    if len(keys) > len(KEYS):
        weights = sorted({row[s]["prior_weight"] for row in rows for s in splits})
        mfs = rows[0][splits[0]]["alias_mfs_accuracy"]
        print(
            f"alias: accuracy among the alias candidates of each mention's key (micro); +prior: score + w log "
            f"p(entity | alias), w tuned on {splits[0]} per row (chosen: {weights}); most-frequent candidate "
            f"{mfs:.2f}\n"
        )
    header = " | ".join(f"{s} {SHORT.get(k, k)}" for s in splits for k in keys)
    timed = [len(row.get("train_s_all", [])) for row in rows]
    extra = f" train s range ({max(timed)} runs) |" if max(timed, default=1) > 1 else ""
    print(f"| system | {header} | train s | eval s |{extra}")
    print("|---|" + "---:|" * (len(splits) * len(keys) + 2 + bool(extra)))
    for row in rows:
        cells = " | ".join(f"{row[s][k]:.2f}" for s in splits for k in keys)
        times = row.get("train_s_all", [row["train_s"]])
        span = f" {min(times):.0f}-{max(times):.0f} |" if extra else ""
        print(f"| {row['system']} | {cells} | {row['train_s']:.0f} | {row['eval_s']:.0f} |{span}")


if __name__ == "__main__":
    main()
