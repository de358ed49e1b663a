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
import contextlib
import importlib.util
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _common import machine_line, matmul_peak, release_freed_memory, reset_peak_rss, rss_bytes  # noqa: E402

from hf_models.index.entity_index import (  # noqa: E402
    EntityIndex,
    WorldEntities,
    autocast_for,
    encode_in_batches,
    resolve_encode_dtype,
)
from hf_models.index.faiss_backend import FaissIndex  # noqa: E402
from hf_models.recipes.model_setup import build_model  # noqa: E402
from hf_models.recipes.recipe import load_recipe_data  # noqa: E402
from hf_models.recipes.recipe_args import DataArguments, ModelArguments, resolve_encoder  # noqa: E402
from hf_models.training.samplers import sample_negatives  # noqa: E402

# faiss-cpu is a dependency of the repo, but a GPU image may lack it: its rows are then left out (and said so).
HAVE_FAISS = importlib.util.find_spec("faiss") is not None


# ---------------------------------------------------------------------------- measurement
@dataclass
class Stage:
    seconds: float
    peak_mb: float  # above the RSS before the stage (absolute ru_maxrss when VmHWM cannot be reset)
    gpu_peak_mb: float | None = None


@dataclass
class Meter:
    device: torch.device
    can_reset: bool = field(init=False)

    def __post_init__(self) -> None:
        self.can_reset = reset_peak_rss()

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    @contextlib.contextmanager
    def stage(self, stages: dict[str, Stage], name: str):
        release_freed_memory()
        self.sync()
        base = rss_bytes()
        reset_peak_rss()
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            gpu_base = torch.cuda.memory_allocated(self.device)
        start = time.perf_counter()
        yield
        self.sync()
        seconds = time.perf_counter() - start
        peak = rss_bytes("VmHWM") - base if self.can_reset else rss_bytes("VmHWM")
        gpu = None
        if self.device.type == "cuda":
            gpu = (torch.cuda.max_memory_allocated(self.device) - gpu_base) / 2**20
        stages[name] = Stage(seconds, peak / 2**20, gpu)


# ---------------------------------------------------------------------------- results
@dataclass
class Row:
    arch: str
    method: str
    stages: dict[str, Stage]
    e2e: list[str]  # stage names summed into the end-to-end time
    scoring: str | None  # the scoring stage's name
    flops: float = 0.0  # of the scoring stage
    note: str = ""

    def total(self) -> float:
        return sum(self.stages[name].seconds for name in self.e2e)

    def peak(self, names: list[str]) -> float:
        return max(self.stages[name].peak_mb for name in names)


def fmt_stage(row: Row, name: str) -> str:
    stage = row.stages.get(name)
    return "—" if stage is None else f"{stage.seconds:.2f}"


# ---------------------------------------------------------------------------- data
def pool_rows(args, entities, train) -> tuple[list[int], torch.Tensor]:
    """(training mention indices, entity table rows) of the mined pool.

    One world: its first ``--mentions`` training mentions and all its entities. ``--world all`` (a length-varied
    set): ``--mentions`` training mentions drawn from every training world (seeded) against one pool of every
    world's entities, or of their golds plus a seeded draw of the others up to ``--max-entities``.
    """
    if args.mentions < 1:
        raise SystemExit(f"--mentions must be >= 1, got {args.mentions}")
    if args.world != "all":
        if args.max_entities is not None:
            raise SystemExit("--max-entities applies to --world all only (one world is mined whole)")
        if args.world not in entities.rows_by_world:
            raise SystemExit(f"--world {args.world!r}: no entities (known: {sorted(entities.rows_by_world)})")
        chosen = [i for i, world in enumerate(train.worlds) if world == args.world][: args.mentions]
        if not chosen:
            raise SystemExit(f"world {args.world!r} has no training mentions")
        return chosen, entities.rows_by_world[args.world]
    generator = torch.Generator().manual_seed(args.seed)
    chosen = sorted(torch.randperm(len(train), generator=generator)[: args.mentions].tolist())
    everything = torch.cat(list(entities.rows_by_world.values()))
    if args.max_entities is None or args.max_entities >= len(everything):
        return chosen, everything.sort().values
    golds = torch.tensor(sorted({int(train.gold_rows[i]) for i in chosen}))
    if args.max_entities < len(golds):
        raise SystemExit(
            f"--max-entities {args.max_entities} < the {len(golds)} gold entities of the mentions"
        )
    others = everything[~torch.isin(everything, golds)]
    drawn = others[torch.randperm(len(others), generator=generator)[: args.max_entities - len(golds)]]
    return chosen, torch.cat([golds, drawn]).sort().values


def world_data(args, tokenizer):
    """(entity ids, ids [E, T], mask [E, T], entity texts, mention ids/mask [N, T], gold rows in the pool [N],
    mention texts, gold entity texts) of the mentions and entity pool chosen by :func:`pool_rows`."""
    from data_scripts.io import load_processed
    from hf_models.publishing.st_export import entity_text, mention_text

    data = load_recipe_data(
        DataArguments(
            dataset_dir=args.dataset_dir, max_length=args.max_length, eval_split="", test_split=None
        ),
        tokenizer,
    )
    entities, train = data.entities, data.splits["train"]
    chosen, world_rows = pool_rows(args, entities, train)
    entity_ids = [entities.entity_ids[r] for r in world_rows.tolist()]
    e_ids, e_mask = entities.input_ids[world_rows], entities.attention_mask[world_rows]
    position = {int(row): i for i, row in enumerate(world_rows.tolist())}
    m_index = torch.tensor(chosen)
    gold = torch.tensor([position[int(train.gold_rows[i])] for i in chosen])

    raw_mentions, raw_entities = load_processed(args.dataset_dir)
    raw_train = raw_mentions["train"]
    by_id = {mid: k for k, mid in enumerate(raw_train["mention_id"])}
    lefts, surfaces, rights = raw_train["left_context"], raw_train["mention"], raw_train["right_context"]
    mention_texts = []
    for i in chosen:
        k = by_id[train.mention_ids[i]]
        mention_texts.append(mention_text(lefts[k], surfaces[k], rights[k], tokenizer, args.max_length))
    text_of = {
        eid: entity_text(title, text)
        for eid, title, text in zip(
            raw_entities["entity_id"], raw_entities["title"], raw_entities["text"], strict=True
        )
    }
    entity_texts = [text_of[eid] for eid in entity_ids]
    gold_texts = [entity_texts[int(g)] for g in gold]
    return dict(
        entity_ids=entity_ids,
        e_ids=e_ids,
        e_mask=e_mask,
        entity_texts=entity_texts,
        m_ids=train.input_ids[m_index],
        m_mask=train.attention_mask[m_index],
        gold=gold,
        mention_texts=mention_texts,
        gold_texts=gold_texts,
    )


def make_index(model, args, **kwargs) -> EntityIndex:
    return EntityIndex(
        model,
        batch_size=args.batch_size,
        encode_dtype=args.encode_dtype,
        chunk_size=args.score_chunk_size,
        show_progress=False,
        **kwargs,
    )


def sample_hard(scores: torch.Tensor, gold: torch.Tensor, args) -> torch.Tensor:
    generator = torch.Generator().manual_seed(args.seed)
    return sample_negatives("hard", scores, gold, args.num_negatives, generator).ids


# ---------------------------------------------------------------------------- dual
def bench_dual(args, tokenizer, data, meter: Meter) -> list[Row]:
    model = (
        build_model(ModelArguments(architecture="dual", encoder=args.encoder), tokenizer)
        .to(meter.device)
        .eval()
    )
    n, e = len(data["gold"]), len(data["entity_ids"])
    hidden = model.config.encoder_hidden_size
    k = args.num_negatives + 1
    index = make_index(model, args)
    st: dict[str, Stage] = {}
    with meter.stage(st, "encode_entities"):
        index.add_world(args.world, data["entity_ids"], data["e_ids"], data["e_mask"])
    with meter.stage(st, "encode_mentions"):
        reps = index.encode_mentions(data["m_ids"], data["m_mask"])
    with meter.stage(st, "score_rows"):
        scores = index.score(args.world, reps)
    with meter.stage(st, "sample"):
        sample_hard(scores, data["gold"], args)
    with meter.stage(st, "exact_topk"):
        _, exact_top = index.search(args.world, reps, k)

    rep = index.worlds[args.world].representation

    faiss_index = None
    if HAVE_FAISS:
        faiss_index = make_index(model, args, backend="faiss", faiss_kind="flat")
        with meter.stage(st, "faiss_build"):
            flat = FaissIndex(dim=hidden, kind="flat", use_gpu=None if meter.device.type == "cuda" else False)
            flat.add(rep.vectors.float(), mask=rep.mask)
            faiss_index.worlds[args.world] = WorldEntities(list(data["entity_ids"]), rep, flat)
        with meter.stage(st, "faiss_topk"):
            _, faiss_top = faiss_index.search(args.world, reps, k)
        agree = (exact_top.sort(1).values == faiss_top.sort(1).values).float().mean().item()

    useful = 2.0 * n * e * hidden
    flops = 2.0 * n * e * reps.vectors.shape[1] * rep.vectors.shape[1] * hidden  # what the stored shapes cost
    padded = f"stored reps [.., {reps.vectors.shape[1]}, H] x [.., {rep.vectors.shape[1]}, H]"
    enc = ["encode_entities", "encode_mentions"]
    rows = [
        Row(
            "dual",
            "ours exact, rows + hard sampling",
            st,
            enc + ["score_rows", "sample"],
            "score_rows",
            flops,
            note=padded,
        ),
        Row("dual", f"ours exact, top-{k}", st, enc + ["exact_topk"], "exact_topk", flops, note=padded),
    ]
    if HAVE_FAISS:
        rows.append(
            Row(
                "dual",
                f"ours faiss flat, top-{k}",
                st,
                enc + ["faiss_build", "faiss_topk"],
                "faiss_topk",
                useful,
                note=f"same top-{k} sets as exact: {agree:.1%}",
            )
        )
    if not args.skip_st:
        rows += bench_st(args, model, tokenizer, data, meter, useful)
    del index, faiss_index, model
    return rows


def bench_st(args, model, tokenizer, data, meter: Meter, flops: float) -> list[Row]:
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.util import mine_hard_negatives

    from hf_models.publishing.st_export import export_sentence_transformer

    scratch = Path(tempfile.mkdtemp(prefix="mining_bench_st_"))
    try:
        export_sentence_transformer(model, scratch / "model", tokenizer=tokenizer, max_length=args.max_length)
        st_model = SentenceTransformer(str(scratch / "model"), device=str(meter.device))
        dataset = Dataset.from_dict({"query": data["mention_texts"], "positive": data["gold_texts"]})
        autocast_dtype = resolve_encode_dtype(args.encode_dtype, meter.device)

        def mine(use_faiss: bool, cache: Path):
            with autocast_for(meter.device, autocast_dtype):
                return mine_hard_negatives(
                    dataset,
                    st_model,
                    corpus=data["entity_texts"],
                    num_negatives=args.num_negatives,
                    sampling_strategy="top",
                    output_format="n-tuple",
                    batch_size=args.batch_size,
                    use_faiss=use_faiss,
                    verbose=False,
                    cache_folder=str(cache),
                )

        cache = scratch / "cache"
        first: dict[str, Stage] = {}
        with meter.stage(first, "end_to_end"):
            mined = mine(False, cache)  # tokenizes + encodes, writes the embeddings to its cache folder
        rows = []
        for use_faiss in (False, True) if HAVE_FAISS else (False,):
            stages = dict(first)
            with meter.stage(stages, "post_encoding"):
                mine(use_faiss, cache)  # reads the cached embeddings: top-k + dataset assembly only
            note = f"{len(mined)} rows x {len(mined.column_names) - 2} negatives; cosine (normalized)"
            if use_faiss:  # same encoding as the torch run; only the post-encoding part differs
                encoding = first["end_to_end"].seconds - rows[0].stages["post_encoding"].seconds
                stages["end_to_end"] = Stage(
                    encoding + stages["post_encoding"].seconds, first["end_to_end"].peak_mb
                )
                note += "; total = encoding of the row above + this post-encoding time"
            name = "ST mine_hard_negatives" + (", use_faiss" if use_faiss else "")
            rows.append(Row("dual", name, stages, ["end_to_end"], "post_encoding", flops, note=note))
        return rows
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


# ---------------------------------------------------------------------------- som
def sum_of_max(
    q: torch.Tensor, q_mask: torch.Tensor, key: torch.Tensor, key_mask: torch.Tensor
) -> torch.Tensor:
    """The paper's som score of mentions q [B, Tq, H] against one chunk of entities key [c, Te, H] -> [B, c]."""
    inter = torch.einsum("bqh,ckh->bcqk", q, key)  # [B, c, Tq, Te]
    inter = inter.masked_fill(~key_mask[None, :, None, :], float("-inf"))
    best = inter.amax(dim=-1)  # [B, c, Tq]
    return torch.where(q_mask[:, None, :], best, torch.zeros_like(best)).sum(-1)  # [B, c]


def bench_som(args, tokenizer, data, meter: Meter) -> list[Row]:
    model = (
        build_model(ModelArguments(architecture="som", encoder=args.encoder), tokenizer)
        .to(meter.device)
        .eval()
    )
    n, e = len(data["gold"]), len(data["entity_ids"])
    hidden = model.config.encoder_hidden_size
    index = make_index(model, args)
    st: dict[str, Stage] = {}
    with meter.stage(st, "encode_entities"):
        index.add_world(args.world, data["entity_ids"], data["e_ids"], data["e_mask"])
    with meter.stage(st, "encode_mentions"):
        reps = index.encode_mentions(data["m_ids"], data["m_mask"])
    with meter.stage(st, "score_rows"):
        ours = index.score(args.world, reps)
    with meter.stage(st, "sample"):
        sample_hard(ours, data["gold"], args)
    stored = index.worlds[args.world].representation.vectors.shape[1]
    flops = 2.0 * n * e * reps.vectors.shape[1] * stored * hidden
    del index, reps
    rows = [Row("som", "ours in-memory (EntityIndex.score)", st, list(st), "score_rows", flops)]

    # --- the paper's disk-chunk baseline
    disk: dict[str, Stage] = {}
    folder = Path(tempfile.mkdtemp(prefix="mining_bench_som_", dir=args.disk_dir))
    autocast_dtype = resolve_encode_dtype(args.encode_dtype, meter.device)
    try:
        with meter.stage(disk, "encode_entities"):  # encode chunk by chunk, each written as fp32 .npy files
            chunk = args.disk_chunk
            for c, start in enumerate(range(0, e, chunk)):
                rep = encode_in_batches(
                    model.encode_entities,
                    data["e_ids"][start : start + chunk],
                    data["e_mask"][start : start + chunk],
                    batch_size=args.batch_size,
                    device=meter.device,
                    autocast_dtype=autocast_dtype,
                    show_progress=False,
                )
                np.save(folder / f"emb_{c:05d}.npy", rep.vectors.float().numpy())  # [c, T, H]
                np.save(folder / f"mask_{c:05d}.npy", rep.mask.numpy())  # [c, T]
            num_chunks = c + 1
        mention_encode = 0.0
        parts = []
        with meter.stage(disk, "score_total"):  # per mention batch: encode it, reload and score every chunk
            for start in range(0, n, args.disk_mention_batch):
                t0 = time.perf_counter()
                q = encode_in_batches(
                    model.encode_mentions,
                    data["m_ids"][start : start + args.disk_mention_batch],
                    data["m_mask"][start : start + args.disk_mention_batch],
                    batch_size=args.batch_size,
                    device=meter.device,
                    autocast_dtype=autocast_dtype,
                    show_progress=False,
                ).to(meter.device, torch.float32)
                mention_encode += time.perf_counter() - t0
                row = []
                for c in range(num_chunks):
                    key = torch.from_numpy(np.load(folder / f"emb_{c:05d}.npy")).to(meter.device)
                    key_mask = torch.from_numpy(np.load(folder / f"mask_{c:05d}.npy")).to(meter.device)
                    row.append(sum_of_max(q.vectors, q.mask, key, key_mask).cpu())
                parts.append(torch.cat(row, dim=1))
            disk_scores = torch.cat(parts)
        total = disk.pop("score_total")
        disk["encode_mentions"] = Stage(mention_encode, total.peak_mb, total.gpu_peak_mb)
        disk["score_rows"] = Stage(total.seconds - mention_encode, total.peak_mb, total.gpu_peak_mb)
        with meter.stage(disk, "sample"):
            sample_hard(disk_scores, data["gold"], args)
        on_disk = sum(f.stat().st_size for f in folder.iterdir()) / 2**20
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    diff = (disk_scores - ours).abs().max().item()
    rows.append(
        Row(
            "som",
            f"paper disk chunks ({args.disk_chunk} entities/file, {args.disk_mention_batch} mentions/batch)",
            disk,
            ["encode_entities", "encode_mentions", "score_rows", "sample"],
            "score_rows",
            flops,
            note=f"{on_disk:.0f} MiB on disk, reread {-(-n // args.disk_mention_batch)}x; max |diff| vs ours {diff:.1e}",
        )
    )
    return rows


# ---------------------------------------------------------------------------- report
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
