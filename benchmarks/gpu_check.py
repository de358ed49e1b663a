"""One-command device check for the paper-size run (bert-base-size random weights, no network, < 8 min on an H100).

    python benchmarks/gpu_check.py                   # on the GPU machine (CUDA, bf16)
    python benchmarks/gpu_check.py --tiny            # seconds on a CPU (what tests/test_gpu_check.py runs)

Prints, for the device it runs on:
1. entity encoding throughput at 128 tokens (sequences/s, achieved TFLOP/s and % of the bf16 dense peak) and the
   time to encode Zeshel's 332,632 training entities (goal: <= 45 s);
2. host -> device bandwidth of the pinned fp16 entity store;
3. mining throughput for dual and som against the training pool with the real streaming code
   (``hf_models.training.streaming.stream_partial``: host store streamed in chunks, exact keyed Gumbel-top-k), as
   mention x entity pairs per second, and the projected time of one mining epoch (49,275 mentions x 332,632
   entities) including the store transfers;
4. training step time (median, AdamW, bf16 autocast) per architecture at K = 64 and 4 mentions (joint: 2);
5. the projected wall time of the full 4-epoch Zeshel som run (mining + training + validation every epoch).
The arithmetic behind each projection is printed next to it; docs/scaling.md explains it.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import machine_line, matmul_peak, synchronize, timed  # noqa: E402
from hf_models.index.entity_index import autocast_for  # noqa: E402
from hf_models.modeling.scoring import Representation  # noqa: E402
from hf_models.training.keyed_noise import KeyedNoise  # noqa: E402
from hf_models.training.streaming import pin_if_cuda, stream_partial  # noqa: E402

ZESHEL = {"train_entities": 332_632, "train_mentions": 49_275, "val_entities": 89_549, "val_mentions": 10_000}
BF16_PEAK = {"H200": 989e12, "H100 PCIe": 756e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12}  # dense


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tiny", action="store_true", help="Tiny model and sizes (CPU smoke test).")
    parser.add_argument("--hidden", type=int, default=768)
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--heads", type=int, default=12)
    parser.add_argument("--vocab", type=int, default=30_522)
    parser.add_argument("--seq", type=int, default=128, help="Wordpieces per mention / entity (paper: 128).")
    parser.add_argument("--encode_sequences", type=int, default=16_384)
    parser.add_argument("--encode_batch", type=int, default=512)
    parser.add_argument(
        "--store_entities", type=int, default=16_384, help="Entities in the streamed test store."
    )
    parser.add_argument("--entity_chunk", type=int, default=4_096)
    parser.add_argument("--mine_mentions", type=int, default=1_024, help="Mentions per streaming pass.")
    parser.add_argument("--num_candidates", type=int, default=64)
    parser.add_argument("--train_mentions", type=int, default=4)
    parser.add_argument("--steps", type=int, default=6, help="Timed training steps (after 2 warm-up steps).")
    parser.add_argument("--architectures", nargs="+", default=["dual", "poly", "multi", "som", "joint"])
    args = parser.parse_args(argv)
    if args.tiny:
        args.hidden, args.layers, args.heads, args.vocab, args.seq = 32, 2, 2, 1_000, 16
        args.encode_sequences, args.encode_batch, args.store_entities, args.entity_chunk = 64, 32, 96, 40
        args.mine_mentions, args.num_candidates, args.steps = 8, 4, 2
    return args


def bert_dir(cli) -> Path:
    """A random BERT of the requested size saved to a temporary folder (no download)."""
    from transformers import BertConfig, BertModel

    folder = Path(tempfile.mkdtemp(prefix="gpu_check_bert_"))
    config = BertConfig(
        vocab_size=cli.vocab,
        hidden_size=cli.hidden,
        num_hidden_layers=cli.layers,
        num_attention_heads=cli.heads,
        intermediate_size=4 * cli.hidden,
        max_position_embeddings=max(512, 2 * cli.seq + 2),
    )
    torch.manual_seed(0)
    BertModel(config).save_pretrained(folder)
    return folder


def encoder_flops(cli, tokens: int) -> float:
    """Forward FLOPs of one sequence: 2 x non-embedding parameters x tokens + attention 4 x L x T^2 x H."""
    per_layer = 4 * cli.hidden**2 + 2 * cli.hidden * 4 * cli.hidden  # Q, K, V, O + the two FFN matrices
    return 2 * cli.layers * per_layer * tokens + 4 * cli.layers * tokens**2 * cli.hidden


def peak_flops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in BF16_PEAK.items() if k in name), None)


def measured_peak(device: torch.device, dtype: torch.dtype | None) -> float:
    """FLOP/s of the best of 10 square products in the check's dtype (8192^3 bf16 on a GPU; 512^3 fp32 on a CPU)."""
    size = 8192 if device.type == "cuda" else 512
    rate = 1e9 * matmul_peak(dtype or torch.float32, size, device, min_repeats=10)
    print(
        f"| matrix product {size}^3, {dtype or torch.float32} | {rate / 1e12:.1f} TFLOP/s (measured peak) | |"
    )
    return rate


def tokens(cli, *shape: int) -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.randint(1000 if cli.vocab > 2000 else 5, cli.vocab, (*shape, cli.seq))
    ids[..., 0] = 2  # any fixed [CLS]-like id
    return ids, torch.ones_like(ids)


def check_encoding(cli, model, device, dtype) -> float:
    """Sequences per second of entity encoding at cli.seq tokens."""
    ids, mask = tokens(cli, cli.encode_sequences)
    model.eval()
    with torch.inference_mode(), autocast_for(device, dtype):
        model.encode_entities(
            ids[: cli.encode_batch].to(device), mask[: cli.encode_batch].to(device)
        )  # warm-up
        synchronize(device)
        began = time.perf_counter()
        for start in range(0, cli.encode_sequences, cli.encode_batch):
            rep = model.encode_entities(
                ids[start : start + cli.encode_batch].to(device),
                mask[start : start + cli.encode_batch].to(device),
            )
            rep.vectors.to("cpu", torch.float16)
        synchronize(device)
    rate = cli.encode_sequences / (time.perf_counter() - began)
    flops = encoder_flops(cli, cli.seq) * rate
    peak = peak_flops(device)
    share = (
        f"{100 * flops / peak:.1f}% of the bf16 dense peak {peak / 1e12:.0f} TFLOP/s" if peak else "peak n/a"
    )
    full = ZESHEL["train_entities"] / rate
    print(
        f"| entity encoding, {cli.seq} tokens | {rate:,.0f} sequences/s | {flops / 1e12:.2f} TFLOP/s ({share}) |"
    )
    print(
        f"| 332,632 training entities | {full:.1f} s | goal <= 45 s: {'met' if full <= 45 else 'NOT met'} |"
    )
    return rate


def check_bandwidth(store: Representation, device) -> float:
    began = time.perf_counter()
    moved = store.vectors.to(device, non_blocking=True)
    synchronize(device)
    seconds = time.perf_counter() - began
    del moved
    rate = store.vectors.numel() * store.vectors.element_size() / max(seconds, 1e-9)
    print(f"| host -> device, pinned fp16 store | {rate / 1e9:.1f} GB/s | {tuple(store.vectors.shape)} |")
    return rate


def check_mining(cli, architecture: str, model, device, dtype, encode_rate: float, peak: float) -> float:
    """Streamed mining of cli.mine_mentions mentions against a random fp16 store; returns projected epoch s.

    The stage's score FLOPs are 2 x T x T x H per pair for som (all T tokens real here) and 2 x H for dual; their
    rate is reported against ``peak``, the matrix-product peak measured in the same run."""
    width = 1 if architecture == "dual" else cli.seq
    gen = torch.Generator().manual_seed(0)
    store = pin_if_cuda(
        Representation(
            vectors=torch.randn(cli.store_entities, width, cli.hidden, generator=gen).half(),
            mask=torch.ones(cli.store_entities, width, dtype=torch.bool),
        )
    )
    bandwidth = check_bandwidth(store, device)
    ids, mask = tokens(cli, cli.mine_mentions)
    with torch.inference_mode(), autocast_for(device, dtype):
        mentions = model.encode_mentions(ids.to(device), mask.to(device))
    n, k1 = cli.mine_mentions, cli.num_candidates - 1
    gold = torch.randint(0, cli.store_entities, (n,), generator=gen)
    noise = KeyedNoise(0, 0, torch.arange(n), torch.arange(cli.store_entities))
    draws = torch.randint(0, cli.store_entities, (n, k1), generator=gen)

    def once() -> float:
        return timed(
            lambda: stream_partial(
                model, mentions, store, 0, gold, k1 // 2, noise, draws,
                chunk_size=cli.entity_chunk, device=device, score_dtype=dtype or torch.float32,
            ),
            device,
        )  # fmt: skip

    once()  # warm-up
    seconds = once()
    store_bytes = store.vectors.numel() * store.vectors.element_size()
    transfer = store_bytes / bandwidth
    pair_seconds = max(seconds - transfer, 1e-12) / (n * cli.store_entities)
    pairs = ZESHEL["train_mentions"] * ZESHEL["train_entities"]
    full_store = store_bytes / cli.store_entities * ZESHEL["train_entities"]
    passes = math.ceil(ZESHEL["train_mentions"] / n)
    epoch = pairs * pair_seconds + passes * full_store / bandwidth + ZESHEL["train_mentions"] / encode_rate
    pair_flops = 2 * cli.hidden * (cli.seq * cli.seq if architecture == "som" else 1)
    # The store's copies may overlap the products, so the rate lies between the two bounds: the measured wall time
    # less a separately timed transfer (upper bound) and the wall time with the transfer in (lower bound).
    upper, lower = pair_flops / pair_seconds, pair_flops * n * cli.store_entities / seconds
    print(
        f"| mining {architecture}, scores + keyed top-k only | {lower / 1e12:.3g}-{upper / 1e12:.3g} TFLOP/s of "
        f"scores | {100 * lower / peak:.0f}-{100 * upper / peak:.0f}% of the measured peak (store transfer "
        "included - excluded) |"
    )
    print(
        f"| mining {architecture}, training pool | {1 / pair_seconds:,.0f} pairs/s ({n} mentions x "
        f"{cli.store_entities:,} entities in {seconds:.3f} s) | epoch: {pairs:.3g} pairs / rate "
        f"{pairs * pair_seconds:.0f} s + {passes} passes x {full_store / 1e9:.2f} GB / {bandwidth / 1e9:.1f} GB/s "
        f"{passes * full_store / bandwidth:.0f} s + mention encoding {ZESHEL['train_mentions'] / encode_rate:.0f} s "
        f"= {epoch:.0f} s |"
    )
    return epoch


def build(architecture: str, folder: Path):
    from hf_models.modeling.modeling_joint import JointRerankerModel
    from hf_models.modeling.modeling_retriever import MODEL_BY_ARCHITECTURE

    if architecture == "joint":
        return JointRerankerModel.from_encoder(str(folder))
    kwargs = {"m": 64} if architecture == "poly" else {"m": 8} if architecture == "multi" else {}
    return MODEL_BY_ARCHITECTURE[architecture].from_encoder(str(folder), **kwargs)


def check_train_step(cli, architecture: str, model, device, dtype) -> float:
    """Median seconds of one optimizer step at K candidates (4 mentions; joint: 2 mentions, pairs of 2T)."""
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-5, weight_decay=0.0)
    k = cli.num_candidates
    if architecture == "joint":
        batch = max(1, cli.train_mentions // 2)
        ids = torch.randint(5, cli.vocab, (batch, k, 2 * cli.seq))
        inputs = {"pair_input_ids": ids, "pair_attention_mask": torch.ones_like(ids)}
    else:
        batch = cli.train_mentions
        m_ids, m_mask = tokens(cli, batch)
        e_ids, e_mask = tokens(cli, batch, k)
        inputs = {
            "mention_input_ids": m_ids,
            "mention_attention_mask": m_mask,
            "entity_input_ids": e_ids,
            "entity_attention_mask": e_mask,
        }
    inputs = {name: value.to(device) for name, value in inputs.items()}
    times = []
    for step in range(2 + cli.steps):
        synchronize(device)
        began = time.perf_counter()
        with autocast_for(device, dtype):
            loss = model(**inputs, loss="nce").loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        synchronize(device)
        if step >= 2:
            times.append(time.perf_counter() - began)
    median = statistics.median(times)
    print(
        f"| train step {architecture}, K = {k}, {batch} mentions | {median:.3f} s (median of {cli.steps}) | |"
    )
    return median


def main(argv=None) -> dict:
    cli = parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if device.type == "cuda" else None
    print(machine_line(device))
    print(f"random BERT: hidden {cli.hidden}, {cli.layers} layers, {cli.heads} heads; autocast {dtype}\n")
    print("| check | result | details |\n|---|---|---|")
    began = time.perf_counter()
    folder = bert_dir(cli)
    results: dict[str, float] = {}
    peak = measured_peak(device, dtype)
    som = build("som", folder).to(device)
    results["encode_rate"] = check_encoding(cli, som, device, dtype)
    for architecture in ("dual", "som"):
        model = som if architecture == "som" else build(architecture, folder).to(device)
        results[f"mine_{architecture}_s"] = check_mining(
            cli, architecture, model, device, dtype, results["encode_rate"], peak
        )
        del model
    for architecture in cli.architectures:
        model = build(architecture, folder).to(device)
        results[f"step_{architecture}_s"] = check_train_step(cli, architecture, model, device, dtype)
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()
    encode = ZESHEL["train_entities"] / results["encode_rate"]
    steps = math.ceil(ZESHEL["train_mentions"] / 4)
    train = steps * results.get("step_som_s", float("nan"))
    val_pairs_share = (
        ZESHEL["val_mentions"]
        * ZESHEL["val_entities"]
        / (ZESHEL["train_mentions"] * ZESHEL["train_entities"])
    )
    evaluate = (ZESHEL["val_entities"] + ZESHEL["val_mentions"]) / results[
        "encode_rate"
    ] + val_pairs_share * (results["mine_som_s"] - ZESHEL["train_mentions"] / results["encode_rate"])
    epoch = encode + results["mine_som_s"] + train + evaluate
    results["projected_som_run_s"] = 4 * epoch
    print(
        f"| projected 4-epoch Zeshel som run | {4 * epoch / 3600:.2f} h | 4 x (encode {encode:.0f} s + mine "
        f"{results['mine_som_s']:.0f} s + {steps:,} steps x {results.get('step_som_s', float('nan')):.3f} s = "
        f"{train:.0f} s + validation {evaluate:.0f} s) = 4 x {epoch:.0f} s; goal < 3 h |"
    )
    print(f"\nchecked in {time.perf_counter() - began:.0f} s")
    return results


if __name__ == "__main__":
    main()
