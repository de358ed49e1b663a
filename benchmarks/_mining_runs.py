"""The measured runs of benchmarks/mining.py (see its docstring): the world's data, then per architecture the
rows ours / FAISS / sentence-transformers (dual) and ours / the paper's disk chunks (som)."""

from __future__ import annotations

import importlib.util
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import Meter, Stage  # noqa: E402
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
from hf_models.recipes.recipe_args import DataArguments, ModelArguments  # noqa: E402
from hf_models.training.samplers import sample_negatives  # noqa: E402

# faiss-cpu is a dependency of the repo, but a GPU image may lack it: its rows are then left out (and said so).
HAVE_FAISS = importlib.util.find_spec("faiss") is not None


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
