"""All-pairs scoring throughput of eq. (9): batched/chunked implementation vs a naive per-pair loop.

For each architecture (dual, poly-m, multi-m, som, genpoly-m) random reduced representations stand in for the
encoder outputs (no encoder is run), shaped as the model would produce them: N mentions x E entities, T tokens,
hidden H. Each architecture runs in a fresh (spawned) process so its peak resident memory can be measured.

* batched: ``all_pairs_score`` over entity chunks (exactly what ``RetrieverModel.score_all`` calls), until all
  entities are scored or ``--time-limit`` seconds pass (the table then says how many were covered);
* naive: one pair at a time, ``sum_t Attn(Q_t^T K) . (Q_t^T K)`` on the unpadded columns, on a random subset of
  the pairs the batched pass scored, single-threaded; the two are compared (max abs diff).

Usage::

    python benchmarks/score_functions.py            # 256 mentions x 10,000 entities, 128 tokens, H=384
    python benchmarks/score_functions.py --small    # a quick run
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import time
from dataclasses import dataclass

import torch

from hf_models.modeling.all_pairs import DEFAULT_MAX_BLOCK_ELEMENTS, _auto_chunk_size, all_pairs_score
from hf_models.modeling.configuration_retriever import CONFIG_BY_ARCHITECTURE, RetrieverConfig, config_for
from hf_models.modeling.scoring import Representation

SIZED = {"poly": 16, "multi": 8, "genpoly": 16}


@dataclass
class Row:
    name: str
    shape: str
    batched_pairs_per_s: float
    covered_entities: int
    naive_pairs_per_s: float
    naive_pairs: int
    peak_mib: float
    max_abs_diff: float


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mentions", type=int, default=256)
    parser.add_argument("--entities", type=int, default=10_000)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--hidden", type=int, default=384)
    parser.add_argument("--m", type=int, default=None, help="size of poly/multi/genpoly (default 16/8/16)")
    parser.add_argument("--architectures", nargs="+", default=list(CONFIG_BY_ARCHITECTURE))
    parser.add_argument(
        "--chunk-size", type=int, default=None, help="entities per chunk (default: automatic)"
    )
    parser.add_argument("--naive-pairs", type=int, default=256, help="pairs timed with the per-pair loop")
    parser.add_argument(
        "--time-limit", type=float, default=60.0, help="seconds of batched scoring per architecture"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--small", action="store_true", help="32 mentions x 1,000 entities, 32 tokens, H=64")
    args = parser.parse_args(argv)
    if args.small:
        args.mentions, args.entities, args.tokens, args.hidden = 32, 1_000, 32, 64
    return args


def side_representation(rows: int, reduction: str, count: int | None, args, generator) -> Representation:
    """Random reduced vectors as the model's encode_* would return them (leftmost-all keeps padding masked)."""
    if count is None:  # all tokens, right-padded: real lengths between T/2 and T
        lengths = torch.randint(args.tokens // 2, args.tokens + 1, (rows,), generator=generator)
        mask = torch.arange(args.tokens)[None, :] < lengths[:, None]  # [rows, T]
        vectors = torch.randn(rows, args.tokens, args.hidden, generator=generator)
        return Representation(vectors=vectors.masked_fill_(~mask[..., None], 0.0), mask=mask)
    vectors = torch.randn(
        rows, count, args.hidden, generator=generator
    )  # [rows, m, H] (leftmost m or m codes)
    return Representation(vectors=vectors, mask=torch.ones(rows, count, dtype=torch.bool))


def score_block(
    config: RetrieverConfig, mentions: Representation, entities: Representation, chunk_size
) -> torch.Tensor:
    """RetrieverModel.score_all without the model: [N, E_block]."""
    query, key = (mentions, entities) if config.mention_is_query else (entities, mentions)
    scores = all_pairs_score(query.vectors, query.mask, key.vectors, key.mask, config.attention, chunk_size)
    return scores if config.mention_is_query else scores.T


def naive_pair(query: Representation, key: Representation, attention: str) -> torch.Tensor:
    """Eq. (9) for ONE pair on its unpadded columns."""
    q, k = query.vectors[0][query.mask[0]], key.vectors[0][key.mask[0]]  # [m, H], [m', H]
    interaction = q @ k.T  # [m, m']
    if attention == "hard":
        return interaction.max(dim=1).values.sum()
    return (interaction.softmax(dim=1) * interaction).sum()


def current_rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def run_architecture(name: str, args: argparse.Namespace) -> Row:
    """One architecture, in its own process: batched pass (time-limited), naive loop, peak memory."""
    if args.threads:
        torch.set_num_threads(args.threads)
    config = config_for(name, args.m or SIZED.get(name)) if name in SIZED else config_for(name)
    generator = torch.Generator().manual_seed(0)
    mentions = side_representation(args.mentions, *config.side("mention"), args, generator)
    entities = side_representation(args.entities, *config.side("entity"), args, generator)
    query_m, key_m = mentions.vectors.shape[1], entities.vectors.shape[1]
    if not config.mention_is_query:
        query_m, key_m = key_m, query_m
    block = args.chunk_size or _auto_chunk_size(args.mentions, query_m, key_m, DEFAULT_MAX_BLOCK_ELEMENTS)
    score_block(config, mentions[:2], entities[:2], args.chunk_size)  # warm-up (first-call overheads)
    naive_pair(mentions[0], entities[0], config.attention)
    baseline = current_rss_bytes()

    parts, start = [], time.perf_counter()
    for begin in range(0, args.entities, block):
        parts.append(score_block(config, mentions, entities[begin : begin + block], args.chunk_size))
        if time.perf_counter() - start > args.time_limit:
            break
    batched_seconds = time.perf_counter() - start
    scores = torch.cat(parts, dim=1)  # [N, covered]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - baseline

    covered = scores.shape[1]
    pairs = torch.stack(
        [
            torch.randint(0, args.mentions, (args.naive_pairs,)),
            torch.randint(0, covered, (args.naive_pairs,)),
        ],
        1,
    ).tolist()
    threads = torch.get_num_threads()
    torch.set_num_threads(
        1
    )  # tiny per-pair ops: extra threads only add synchronisation (badly so on a busy CPU)
    naive, start = [], time.perf_counter()
    for n, e in pairs:
        query, key = (mentions[n], entities[e]) if config.mention_is_query else (entities[e], mentions[n])
        naive.append(naive_pair(query, key, config.attention))
    naive_seconds = time.perf_counter() - start
    torch.set_num_threads(threads)
    reference = torch.stack([scores[n, e] for n, e in pairs])
    return Row(
        name=name if name not in SIZED else f"{name}-{args.m or SIZED[name]}",
        shape=f"m={query_m}, m'={key_m}",
        batched_pairs_per_s=args.mentions * covered / batched_seconds,
        covered_entities=covered,
        naive_pairs_per_s=len(pairs) / naive_seconds,
        naive_pairs=len(pairs),
        peak_mib=max(peak, 0) / 2**20,
        max_abs_diff=float((torch.stack(naive) - reference).abs().max()),
    )


def format_table(rows: list[Row], args: argparse.Namespace) -> str:
    header = (
        f"all-pairs eq. (9): {args.mentions} mentions x {args.entities} entities, {args.tokens} tokens, "
        f"H={args.hidden}, torch {torch.__version__}, {torch.get_num_threads()} threads\n"
        "| architecture | query/key columns | batched pairs/s | entities covered | naive pairs/s | speedup "
        "| peak extra MiB | max abs diff |\n|---|---|---:|---:|---:|---:|---:|---:|"
    )
    lines = [
        f"| {r.name} | {r.shape} | {r.batched_pairs_per_s:,.0f} | {r.covered_entities:,}/{args.entities:,} "
        f"| {r.naive_pairs_per_s:,.0f} | {r.batched_pairs_per_s / r.naive_pairs_per_s:,.0f}x | {r.peak_mib:,.0f} "
        f"| {r.max_abs_diff:.1e} |"
        for r in rows
    ]
    return "\n".join([header, *lines])


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    context = multiprocessing.get_context("spawn")
    rows = []
    for name in args.architectures:
        with context.Pool(1) as pool:  # a fresh process per architecture: its own peak RSS
            rows.append(pool.apply(run_architecture, (name, args)))
    print(format_table(rows, args))


if __name__ == "__main__":
    main()
