"""Negative-mining throughput: mentions x entities scored per second, end to end and scoring stage alone.

One world of the processed tables (default: ``foldoc_programming`` of the embedded ``data/glossary_el``, 2,017
entities) is mined for ``--mentions`` of its training mentions with a freshly built retriever on the packaged
all-MiniLM-L6-v2 (inputs featurized at ``--max-length``, default 64). Every row reports wall seconds per stage and
the peak resident memory of the stage above the RSS before it (``VmHWM`` reset through /proc/self/clear_refs; on a
GPU also ``torch.cuda.max_memory_allocated``).

dual:
  * ``ours exact, rows+hard``: what ``NegativeMiner`` does each epoch -- ``EntityIndex.add_world`` (encode the
    entities), ``encode_mentions``, ``EntityIndex.score`` (full [N, E] rows) and ``sample_negatives("hard")``.
  * ``ours exact, top-k``: the same encodings, ``EntityIndex.search`` (chunked exact top-k).
  * ``ours faiss flat, top-k``: the same encodings added to a ``FaissIndex`` (``backend="faiss"``), searched.
  * ``ST mine_hard_negatives``: ``sentence_transformers.util.mine_hard_negatives`` on the SAME model (the dual's
    two towers exported with ``hf_models.publishing.st_export.export_sentence_transformer``: query route = mention encoder,
    document route = entity encoder, CLS pooling), the same mention / entity texts (``mention_text`` /
    ``entity_text``, re-tokenized by the same tokenizer at the same max length), ``num_negatives`` top negatives.
    End to end includes its tokenization, encoding, top-k and dataset assembly; its post-encoding stage is timed
    by further calls that read the embeddings from its own ``cache_folder`` (torch top-k, and ``use_faiss``; the
    ``use_faiss`` total is the first call's encoding time plus its own post-encoding time).
som:
  * ``ours in-memory``: ``EntityIndex`` keeps every entity's token embeddings [E, T, H] in memory and scores
    mention chunks with the masked chunked sum-of-max (``all_pairs_score``), then ``sample_negatives("hard")``.
  * ``paper disk chunks``: the original code's approach -- the entity token embeddings are written as fp32 .npy
    chunk files (plus masks) while encoding, and for every mention batch each chunk is ``np.load``-ed and scored
    with a torch sum-of-max; then the same sampler. (Files are read back through the OS page cache once written.)

The scoring-stage FLOP rate (2 x the multiply-adds the stored shapes cost: padded to the longest sequence on both
sides for som; 2 N E H for dual, FAISS and ST) is compared with this machine's measured ``torch.matmul`` peak (square fp32 and bf16 products).

Usage::

    nice python benchmarks/mining.py                          # defaults: 256 mentions, fp32 encoding, CPU
    nice python benchmarks/mining.py --encode-dtype bfloat16  # bf16 autocast for every encoder (ST included)
    python benchmarks/mining.py --device cuda --mentions 1024 # on a GPU
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import Meter, machine_line, matmul_peak, release_freed_memory  # noqa: E402
from benchmarks._mining_runs import HAVE_FAISS, Row, bench_dual, bench_som, fmt_stage, world_data  # noqa: E402
from hf_models.index.entity_index import resolve_encode_dtype  # noqa: E402
from hf_models.recipes.recipe_args import resolve_encoder  # noqa: E402


def print_report(args, device, peaks: dict[str, float], rows: list[Row], data, meter: Meter) -> None:
    n, e = len(data["gold"]), len(data["entity_ids"])
    pairs = n * e
    print(f"\n{machine_line(device)}")
    print(
        f"world {args.world}: {n} mentions x {e} entities = {pairs:,} pairs; max_length {args.max_length}; "
        f"encode dtype {args.encode_dtype} (autocast {resolve_encode_dtype(args.encode_dtype, device)}); "
        f"encoder batch {args.batch_size}; negatives {args.num_negatives}"
    )
    mem_note = (
        "peak RSS above the stage's start" if meter.can_reset else "absolute ru_maxrss (VmHWM reset denied)"
    )
    print("\nMatrix-product peak (torch.matmul, square):\n")
    print("| dtype | n | GFLOP/s |\n|---|---|---|")
    for name, value in peaks.items():
        print(f"| {name} | {args.peak_size} | {value:.1f} |")

    gpu = device.type == "cuda"
    print(f"\n(a) End to end (seconds per stage; Mpairs/s = {n} x {e} / total; peak MiB = {mem_note}):\n")
    header = "| arch | method | encode entities | encode mentions | score / search | sample | total s | Mpairs/s | peak MiB |"
    if gpu:
        header += " GPU peak MiB |"
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for row in rows:
        search = next((s for s in row.e2e if s not in ("encode_entities", "encode_mentions", "sample")), None)
        if row.e2e == ["end_to_end"]:
            cells = ["(inside)", "(inside)", "(inside)", "—"]
        else:
            score = fmt_stage(row, search)
            if search == "faiss_build":
                score = (
                    f"{row.stages['faiss_build'].seconds:.2f} build + {row.stages['faiss_topk'].seconds:.2f}"
                )
            cells = [
                fmt_stage(row, "encode_entities"),
                fmt_stage(row, "encode_mentions"),
                score,
                fmt_stage(row, "sample") if "sample" in row.e2e else "—",
            ]
        line = (
            f"| {row.arch} | {row.method} | " + " | ".join(cells) + f" | {row.total():.2f} | "
            f"{pairs / row.total() / 1e6:.4f} | {row.peak(row.e2e):.0f} |"
        )
        if gpu:
            line += f" {max(row.stages[s].gpu_peak_mb or 0 for s in row.e2e):.0f} |"
        print(line)

    fp32, bf16 = peaks.get("float32"), peaks.get("bfloat16")
    print(
        "\n(b) Scoring stage alone (the model's score over stored representations; GFLOP = 2 x multiply-adds):\n"
    )
    print(
        "| arch | method | stage | seconds | Mpairs/s | GFLOP | GFLOP/s | % fp32 peak | % bf16 peak | peak MiB | note |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        stage = row.stages[row.scoring]
        rate = row.flops / stage.seconds / 1e9
        pct32 = f"{100 * rate / fp32:.3g}" if fp32 else "—"
        pct16 = f"{100 * rate / bf16:.3g}" if bf16 else "—"
        print(
            f"| {row.arch} | {row.method} | {row.scoring} | {stage.seconds:.3f} | {pairs / stage.seconds / 1e6:.2f} | "
            f"{row.flops / 1e9:.3g} | {rate:.3g} | {pct32} | {pct16} | {stage.peak_mb:.0f} | {row.note} |"
        )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset-dir", default="data/glossary_el")
    parser.add_argument(
        "--world",
        default="foldoc_programming",
        help="a world of the dataset, or 'all': mentions of every training world against one pool of all entities",
    )
    parser.add_argument(
        "--max-entities",
        type=int,
        default=None,
        help="with --world all: golds + a seeded draw up to this many",
    )
    parser.add_argument(
        "--mentions", type=int, default=256, help="training mentions of the world used as queries"
    )
    parser.add_argument("--architectures", nargs="+", default=["dual", "som"], choices=["dual", "som"])
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--encode-dtype", default="float32", choices=["float32", "bfloat16", "auto"])
    parser.add_argument("--batch-size", type=int, default=64, help="encoder batch size (ours and ST)")
    parser.add_argument(
        "--num-negatives", type=int, default=63, help="K-1 (ST: top negatives; ours: top-(K-1+1))"
    )
    parser.add_argument("--score-chunk-size", type=int, default=4096, help="EntityIndex entities per chunk")
    parser.add_argument("--disk-chunk", type=int, default=256, help="paper baseline: entities per .npy file")
    parser.add_argument(
        "--disk-mention-batch", type=int, default=32, help="paper baseline: mentions per reload"
    )
    parser.add_argument(
        "--disk-dir", default=None, help="where the baseline writes its chunks (default: $TMPDIR)"
    )
    parser.add_argument("--device", default="auto", help="auto (cuda when available), cpu, cuda, cuda:1, ...")
    parser.add_argument("--peak-size", type=int, default=2048, help="n of the n x n matmul peak measurement")
    parser.add_argument("--peak-seconds", type=float, default=2.0)
    parser.add_argument("--skip-st", action="store_true", help="skip the sentence-transformers comparison")
    parser.add_argument(
        "--encoder", default="embedded", help="'embedded' (all-MiniLM-L6-v2) or a local folder"
    )
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    device = torch.device(
        ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    )
    torch.manual_seed(args.seed)
    if device.type != "cuda":
        print(f"No GPU in use (torch.cuda.is_available() = {torch.cuda.is_available()}): running on CPU.")
    if not HAVE_FAISS:
        print("faiss is not installed here: the FAISS rows (ours faiss flat, ST use_faiss) are left out.")
    peaks = {
        name: matmul_peak(dtype, args.peak_size, device, args.peak_seconds)
        for name, dtype in (("float32", torch.float32), ("bfloat16", torch.bfloat16))
    }
    tokenizer = AutoTokenizer.from_pretrained(resolve_encoder(args.encoder))
    data = world_data(args, tokenizer)
    meter = Meter(device)
    rows: list[Row] = []
    for arch in args.architectures:
        start = time.perf_counter()
        rows += (bench_dual if arch == "dual" else bench_som)(args, tokenizer, data, meter)
        print(f"[{arch} done in {time.perf_counter() - start:.0f} s]", file=sys.stderr)
        release_freed_memory()
    print_report(args, device, peaks, rows, data, meter)


if __name__ == "__main__":
    main()
