"""Zeshel-size dry run of one mining epoch (training pool) for dual and som with a tiny random BERT, on CPU.

    python -m data_scripts.synthetic --output_dir data/zeshel_synthetic        # Zeshel's counts (once)
    nice -n 19 python benchmarks/dry_run.py --dataset_dir data/zeshel_synthetic \
        [--architectures dual som] [--hidden 16 --layers 1] [--encode_seconds 240 --mine_seconds 120]
    nice -n 19 python benchmarks/dry_run.py --synthetic_scale 1.0   # the same tables generated in memory

Stages (each prints time and peak resident memory): featurize the 8 training worlds (332,632 entities, 49,275
mentions at 128 wordpieces), encode every training entity into the host-memory fp16 store, and mine one epoch of
mixed-50 negatives (K = 64) from the training pool with the real ``NegativeMiner`` chunk path (streamed exact
Gumbel-top-k). Stages that would not fit the time budget are TIME-BOXED and extrapolated linearly (the cost of
encoding is linear in entities and of mining linear in mentions, every chunk scanning the whole pool): encoding
stops after ``--encode_seconds`` and the store is filled to its full size with copies of the encoded rows (so
its memory and the mining scan are full size), mining stops after ``--mine_seconds``. The table says which
numbers were measured and which were extrapolated. The extrapolation to bert-base on one H100 is in
docs/scaling.md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import machine_line, release_freed_memory, reset_peak_rss, rss_bytes  # noqa: E402
from hf_models.modeling.scoring import Representation  # noqa: E402

ROWS: list[dict] = []


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--dataset_dir", help="Processed tables (data_scripts.synthetic output).")
    source.add_argument(
        "--synthetic_scale",
        type=float,
        help="Generate the synthetic training worlds in memory instead (1.0 = Zeshel's counts; skips writing them).",
    )
    parser.add_argument("--architectures", nargs="+", default=["dual", "som"])
    parser.add_argument("--hidden", type=int, default=16, help="Tiny BERT hidden size.")
    parser.add_argument("--layers", type=int, default=1)
    parser.add_argument("--max_length", type=int, default=128)
    parser.add_argument("--num_candidates", type=int, default=64)
    parser.add_argument("--negatives", default="mixed", choices=["random", "hard", "mixed", "topk"])
    parser.add_argument("--encode_batch", type=int, default=512)
    parser.add_argument("--entity_chunk", type=int, default=8192, help="Entities streamed per device chunk.")
    parser.add_argument(
        "--mention_chunk",
        type=int,
        default=None,
        help="Mentions per mining chunk (default: 128 for dual, 8 for som, whose one chunk of 128 mentions scans "
        "the whole som store for ~55 minutes on 2 CPU cores: longer than the time box).",
    )
    parser.add_argument("--encode_seconds", type=float, default=240.0, help="Time box of entity encoding.")
    parser.add_argument(
        "--mine_seconds", type=float, default=120.0, help="Time box of mining per architecture."
    )
    parser.add_argument("--max_train_entities", type=int, default=None, help="Only for tests: cut the pool.")
    return parser.parse_args(argv)


class Stage:
    """Time and peak RSS (VmHWM after a reset) of a block; appends a table row."""

    def __init__(self, architecture: str, name: str) -> None:
        self.row = {"architecture": architecture, "stage": name}

    def __enter__(self) -> dict:
        release_freed_memory()
        self.reset = reset_peak_rss()
        self.start = time.perf_counter()
        return self.row

    def __exit__(self, *exc) -> None:
        self.row["seconds"] = time.perf_counter() - self.start
        self.row["peak_rss_mib"] = rss_bytes("VmHWM" if self.reset else "VmRSS") / 2**20
        self.row.setdefault("full_seconds", self.row["seconds"])
        self.row.setdefault("done", "all")
        ROWS.append(self.row)
        print_row(self.row, flush=True)


def print_row(row: dict, flush: bool = False) -> None:
    print(
        f"| {row['architecture']} | {row['stage']} | {row['done']} | {row['seconds']:.1f} | "
        f"{row['full_seconds']:.1f} | {row['peak_rss_mib']:.0f} |",
        flush=flush,
    )


def tiny_model_dir(hidden: int, layers: int, max_length: int) -> Path:
    """A random BERT over the synthetic vocabulary (every synthetic word one wordpiece) + its tokenizer."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    from data_scripts.synthetic import vocabulary

    folder = Path(tempfile.mkdtemp(prefix="dry_run_bert_"))
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[unused0]", "[unused1]", "[unused2]"]
    vocab = {token: i for i, token in enumerate(specials + vocabulary())}
    BertTokenizerFast(vocab=vocab, do_lower_case=True).save_pretrained(folder)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=max(1, hidden // 8),
        intermediate_size=2 * hidden,
        max_position_embeddings=max_length + 2,
    )
    torch.manual_seed(0)
    BertModel(config).save_pretrained(folder)
    return folder


def featurize(cli, model_dir: Path):
    from transformers import AutoTokenizer

    from data_scripts.featurize import featurize_entities, featurize_mentions, prepare_tokenizer
    from data_scripts.io import load_processed
    from hf_models.index.tables import EntityTable, MentionTable

    with Stage("both", "load + featurize training worlds") as row:
        if cli.dataset_dir:
            mentions, entities = load_processed(cli.dataset_dir)
        else:
            from data_scripts.synthetic import ZESHEL_WORLDS, synthetic_zeshel

            train_worlds = {w: spec for w, spec in ZESHEL_WORLDS.items() if spec[0] == "train"}
            mentions, entities = synthetic_zeshel(cli.synthetic_scale, worlds=train_worlds)
        train = mentions["train"]
        worlds = set(train["world"])
        entities = entities.filter(lambda w: w in worlds, input_columns="world")
        if cli.max_train_entities is not None:
            keep = set(train["label_id"])
            entities = entities.filter(
                lambda i, e: i < cli.max_train_entities or e in keep,
                with_indices=True,
                input_columns="entity_id",
            )
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        prepare_tokenizer(tokenizer)
        table = EntityTable.from_dataset(featurize_entities(entities, tokenizer, max_length=cli.max_length))
        train_table = MentionTable.from_dataset(
            featurize_mentions(train, tokenizer, max_length=cli.max_length), table
        )
        row["done"] = f"{len(table):,} entities, {len(train_table):,} mentions"
    return table, train_table


def run_architecture(cli, architecture: str, model_dir: Path, table, train) -> None:
    from hf_models.index.entity_index import EntityIndex
    from hf_models.modeling.modeling_retriever import MODEL_BY_ARCHITECTURE
    from hf_models.training.mining import NegativeMiner

    model = MODEL_BY_ARCHITECTURE[architecture].from_encoder(str(model_dir)).eval()
    index = EntityIndex(
        model,
        batch_size=cli.encode_batch,
        encode_dtype="auto",
        store_dtype=torch.float16,
        chunk_size=cli.entity_chunk,
        show_progress=False,
    )
    miner = NegativeMiner(
        index,
        train,
        table,
        strategy=cli.negatives,
        num_negatives=cli.num_candidates - 1,
        hard_fraction=0.5,
        chunk_size=mention_chunk(cli, architecture),
        pool="training",
    )
    pool = miner.pools[0]
    with Stage(architecture, "encode training entities -> fp16 host store") as row:
        store = encode_time_boxed(miner, pool.entity_rows, cli, row)
        row["store_gib"] = store.vectors.numel() * store.vectors.element_size() / 2**30
        row["done"] += f" (store {tuple(store.vectors.shape)}, {row['store_gib']:.2f} GiB)"
    with Stage(
        architecture, f"mine one epoch ({cli.negatives}, K={cli.num_candidates}, training pool)"
    ) as row:
        chunks = pool.mention_indices.split(mention_chunk(cli, architecture))
        began, done = time.perf_counter(), 0
        for indices in chunks:
            ids, _ = miner._mine_chunk(0, pool, indices, store, 0)
            assert ids.shape == (len(indices), cli.num_candidates - 1)
            done += len(indices)
            if time.perf_counter() - began > cli.mine_seconds:
                break
        elapsed = time.perf_counter() - began
        row["full_seconds"] = elapsed * len(train) / done
        row["done"] = f"{done:,}/{len(train):,} mentions" + (" (extrapolated)" if done < len(train) else "")
    del store


def mention_chunk(cli, architecture: str) -> int:
    """Mentions per mining chunk: the flag, else 8 for som (a whole-store scan per chunk) and 128 otherwise."""
    return cli.mention_chunk or (8 if architecture == "som" else 128)


def encode_time_boxed(miner, rows: torch.Tensor, cli, row: dict) -> Representation:
    """Encode the pool's entities batch by batch until the time box; tile the encoded rows to the full size."""
    parts, done, began = [], 0, time.perf_counter()
    step = cli.encode_batch * 8
    while done < len(rows) and (done == 0 or time.perf_counter() - began < cli.encode_seconds):
        batch = rows[done : done + step]
        parts.append(
            miner._encode(
                miner.index.model.encode_entities,
                miner.entities.input_ids[batch],
                miner.entities.attention_mask[batch],
                "encoding entities",
            )
        )
        done += len(batch)
    elapsed = time.perf_counter() - began
    width = max(p.vectors.shape[1] for p in parts)
    encoded = Representation.cat([p.pad_to(width) for p in parts])
    row["full_seconds"] = elapsed * len(rows) / done
    row["done"] = f"{done:,}/{len(rows):,} entities" + (
        " (extrapolated; store tiled)" if done < len(rows) else ""
    )
    if done == len(rows):
        return encoded
    repeats = -(-len(rows) // done)
    vectors = encoded.vectors.repeat(repeats, *([1] * (encoded.vectors.dim() - 1)))[: len(rows)]
    mask = encoded.mask.repeat(repeats, 1)[: len(rows)]
    return Representation(vectors=vectors, mask=mask)


def main(argv=None) -> list[dict]:
    cli = parse_args(argv)
    ROWS.clear()
    print(machine_line(torch.device("cpu")))
    model_dir = tiny_model_dir(cli.hidden, cli.layers, cli.max_length)
    print(
        f"tiny BERT: hidden {cli.hidden}, {cli.layers} layer(s); {cli.max_length} wordpieces; encode dtype auto; "
        f"store fp16; entity chunk {cli.entity_chunk}; mention chunk "
        + ", ".join(f"{a} {mention_chunk(cli, a)}" for a in cli.architectures)
    )
    print("| architecture | stage | done | seconds measured | seconds for all | peak RSS MiB |")
    print("|---|---|---|---:|---:|---:|")
    table, train = featurize(cli, model_dir)
    for architecture in cli.architectures:
        run_architecture(cli, architecture, model_dir, table, train)
    return ROWS


if __name__ == "__main__":
    main()
