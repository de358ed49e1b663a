"""Issue 13 throughput checks, each an A/B ratio measured side by side in one run (A B A B ..., medians).

(a) Encoding: ``encode_in_batches`` (rows sorted by length, a token budget per batch, one preallocated table) vs
    the previous implementation (fixed-row batches in table order, each trimmed to its longest row, concatenated),
    same model, same rows, same batch size, on one glossary world and on a length-varied set (every world's
    entities at a larger max_length).
(b) som scoring stage: ``EntityIndex.score`` over real MiniLM encodings with fp32 products vs bf16 products (fp32
    accumulation), as GFLOP/s of the products actually computed (each pair's real lengths) and of the padded
    shapes, against the bf16 ``torch.matmul`` peak measured in the same run; exactness of bf16 vs fp32: max |score
    diff|, top-64 overlap, total variation of the hard sampler's first draw.

Usage::

    nice python benchmarks/throughput.py                 # defaults below; prints markdown tables
    python benchmarks/throughput.py --repeats 2 --encode-rows 256 --mentions 64   # a quick run
    python benchmarks/throughput.py --device cuda --parts score --mentions 2048   # the scoring stage on a GPU
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch
from transformers import AutoTokenizer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import machine_line, matmul_peak, timed  # noqa: E402
from data_scripts.featurize import prepare_tokenizer  # noqa: E402
from hf_models.analysis.precision import exactness_report  # noqa: E402
from hf_models.index.encoding import autocast_for, encode_in_batches, resolve_encode_dtype  # noqa: E402
from hf_models.index.entity_index import EntityIndex  # noqa: E402
from hf_models.modeling.scoring import Representation  # noqa: E402
from hf_models.recipes.model_setup import build_model  # noqa: E402
from hf_models.recipes.recipe import load_recipe_data  # noqa: E402
from hf_models.recipes.recipe_args import DataArguments, ModelArguments, resolve_encoder  # noqa: E402


def previous_encode(
    encode_fn, input_ids, attention_mask, *, batch_size, autocast_dtype, device
) -> Representation:
    """The encoder loop before issue 13: fixed-row batches in table order, trimmed, concatenated (reference)."""
    parts = []
    with torch.no_grad():
        for start in range(0, input_ids.shape[0], batch_size):
            ids = input_ids[start : start + batch_size]
            mask = attention_mask[start : start + batch_size]
            width = max(int(mask.sum(1).max()), 1)
            with autocast_for(device, autocast_dtype):
                rep = encode_fn(ids[:, :width].to(device), mask[:, :width].to(device))
            parts.append(Representation(vectors=rep.vectors.float().cpu(), mask=rep.mask.cpu()))
    return Representation.cat(parts)


def interleaved(runs: dict[str, callable], repeats: int, device: torch.device) -> dict[str, list[float]]:
    """Seconds of each run, A B A B ... (after one untimed warm-up of each)."""
    for fn in runs.values():
        fn()
    times = {name: [] for name in runs}
    for _ in range(repeats):
        for name, fn in runs.items():
            times[name].append(timed(fn, device))
    return times


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


def encoding_table(args, tokenizer, model) -> list[str]:
    lines = [
        "| rows | real tokens (mean / max) | batch | previous s, median (min-max) | sorted + budget s | speedup |",
        "|---|---|---|---|---|---|",
    ]
    dtype = resolve_encode_dtype(args.encode_dtype, args.device)
    for label, max_length, world in (
        (f"{args.world}, max_length {args.max_length}", args.max_length, args.world),
        (f"all worlds, max_length {args.varied_max_length}", args.varied_max_length, None),
    ):
        data = load_recipe_data(
            DataArguments(dataset_dir=args.dataset_dir, max_length=max_length, max_train_mentions=8),
            tokenizer,
        )
        rows = data.entities.rows_by_world[world] if world else torch.randperm(len(data.entities))
        rows = rows[: args.encode_rows]
        ids, mask = data.entities.input_ids[rows], data.entities.attention_mask[rows]
        lengths = mask.sum(1).float()
        runs = {
            "previous": lambda ids=ids, mask=mask: previous_encode(
                model.encode_entities,
                ids,
                mask,
                batch_size=args.batch_size,
                autocast_dtype=dtype,
                device=args.device,
            ),
            "sorted": lambda ids=ids, mask=mask: encode_in_batches(
                model.encode_entities,
                ids,
                mask,
                batch_size=args.batch_size,
                device=args.device,
                autocast_dtype=dtype,
                show_progress=False,
            ),
        }
        times = interleaved(runs, args.repeats, args.device)
        ratio = statistics.median(times["previous"]) / statistics.median(times["sorted"])
        lines.append(
            f"| {label}: {len(rows)} | {lengths.mean():.1f} / {int(lengths.max())} | {args.batch_size} | "
            f"{spread(times['previous'])} | {spread(times['sorted'])} | {ratio:.2f}x |"
        )
    return lines


def scoring_tables(args, tokenizer, model) -> list[str]:
    data = load_recipe_data(
        DataArguments(dataset_dir=args.dataset_dir, max_length=args.max_length, max_train_mentions=None),
        tokenizer,
    )
    train = data.splits["train"]
    mention_rows = torch.nonzero(torch.tensor([w == args.world for w in train.worlds])).flatten()[
        : args.mentions
    ]
    index = EntityIndex(model, encode_dtype=args.encode_dtype, score_dtype="float32", show_progress=False)
    index.add_world(args.world, *data.entities.world_subset(args.world))
    mentions = index.encode_mentions(train.input_ids[mention_rows], train.attention_mask[mention_rows])
    entity_rep = index.worlds[args.world].representation
    hidden = mentions.vectors.shape[-1]
    real = 2 * hidden * float(mentions.mask.sum(1).double().sum() * entity_rep.mask.sum(1).double().sum())
    padded = (
        2 * hidden * len(mentions) * mentions.vectors.shape[1] * len(entity_rep) * entity_rep.vectors.shape[1]
    )
    gold_local = {r: i for i, r in enumerate(data.entities.rows_by_world[args.world].tolist())}
    gold = torch.tensor([gold_local[int(g)] for g in train.gold_rows[mention_rows]])
    results = {}

    def run(dtype):
        index.score_dtype = dtype
        results[dtype] = index.score(args.world, mentions)

    times = interleaved(
        {"fp32": lambda: run(torch.float32), "bf16": lambda: run(torch.bfloat16)}, args.repeats, args.device
    )
    square = 8192 if args.device.type == "cuda" else 2048
    peaks = {  # best of 5 square products
        name: matmul_peak(dtype, square, args.device, min_repeats=5)
        for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16))
    }
    lines = [
        f"{len(mentions)} mentions x {len(entity_rep)} entities of {args.world}; stored widths "
        f"{mentions.vectors.shape[1]} x {entity_rep.vectors.shape[1]}, H = {hidden}; real products "
        f"{real / 1e9:.0f} GFLOP, padded shapes {padded / 1e9:.0f} GFLOP; matmul peak fp32 {peaks['fp32']:.0f}, "
        f"bf16 {peaks['bf16']:.0f} GFLOP/s (square {square}, same run)",
        "",
        "| products | seconds, median (min-max) | GFLOP/s (real) | % of bf16 peak (real) | GFLOP/s (padded shapes) |",
        "|---|---|---|---|---|",
    ]
    for name in ("fp32", "bf16"):
        seconds = statistics.median(times[name])
        lines.append(
            f"| {name} | {spread(times[name])} | {real / seconds / 1e9:.0f} | "
            f"{100 * real / seconds / 1e9 / peaks['bf16']:.0f}% | {padded / seconds / 1e9:.0f} |"
        )
    report = exactness_report(results[torch.float32], results[torch.bfloat16], gold, k=64)
    lines += [
        "",
        "| bf16 vs fp32 | max abs score diff | max abs score (fp32) | top-64 overlap | first-draw TV (max / mean) |",
        "|---|---|---|---|---|",
        f"| {args.world} | {report['max_abs_diff']:.4f} | {report['reference_scale']:.1f} | "
        f"{100 * report['topk_overlap']:.2f}% | {report['first_draw_tv']:.4f} / {report['mean_first_draw_tv']:.4f} |",
    ]
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset-dir", default="data/glossary_el")
    parser.add_argument("--world", default="foldoc_programming")
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--varied-max-length", type=int, default=128)
    parser.add_argument("--encode-rows", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--mentions", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--encode-dtype", default="auto")
    parser.add_argument("--parts", nargs="+", default=["encode", "score"], choices=["encode", "score"])
    parser.add_argument(
        "--device", default="cpu", help="cpu, cuda, cuda:1, ... (the model, encoding and scoring)"
    )
    parser.add_argument(
        "--encoder", default="embedded", help="'embedded' (all-MiniLM-L6-v2) or a local folder"
    )
    args = parser.parse_args(argv)
    args.device = torch.device(args.device)
    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(resolve_encoder(args.encoder))
    prepare_tokenizer(tokenizer)  # the marker tokens, before the embeddings are sized
    model = (
        build_model(ModelArguments(architecture="som", encoder=args.encoder), tokenizer)
        .to(args.device)
        .eval()
    )
    print(machine_line(args.device))
    print(
        f"encoder {args.encoder}; encode dtype {args.encode_dtype} "
        f"(autocast {resolve_encode_dtype(args.encode_dtype, args.device)})"
    )
    if "encode" in args.parts:
        print("\n(a) Encoding, entity encoder of a fresh som MiniLM\n")
        print("\n".join(encoding_table(args, tokenizer, model)))
    if "score" in args.parts:
        print("\n(b) som scoring stage (EntityIndex.score), fp32 vs bf16 products\n")
        print("\n".join(scoring_tables(args, tokenizer, model)))
    print(f"\nload average at the end: {machine_line(args.device).rsplit('load average ', 1)[-1]}")


if __name__ == "__main__":
    main()
