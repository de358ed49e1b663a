"""Entity-index scaling benchmark: build/query time, memory and recall@k of each search backend.

Backends: ``exact`` (torch chunked matmul + running top-k, what ``EntityIndex`` does without FAISS), and the
FAISS backends of ``hf_models.index.faiss_backend.FaissIndex``: ``flat`` (exact), ``ivf``, ``hnsw``. For every
(size, dim) the synthetic clustered entity vectors are generated once; each (dtype, backend) case then builds an
index, searches ``--queries`` mentions for the top ``--k`` and reports:

* build_s: store copy (exact) / add (flat) / train+add (ivf) / graph build (hnsw), wall seconds.
* query_s: search of all queries (ms/q = per query).
* index_MB: bytes the index holds (E*d*bytes for the stored vectors + ivf ids/centroids + hnsw links).
* peak_MB: peak RSS above the process RSS before the case (VmHWM reset via /proc/self/clear_refs), i.e. index
  plus build/search workspace, excluding the fp32 input vectors that all cases share.
* recall@k: overlap with the exact fp32 top-k.

Finally the measured figures are extrapolated to KILT's 5,903,530 Wikipedia entities with the arithmetic shown.

Example (what docs/scaling.md shows)::

    nice python benchmarks/index_scale.py --sizes 100000 1000000 --dims 384 768 --hnsw-max-size 100000
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import release_freed_memory, reset_peak_rss, rss_bytes  # noqa: E402
from hf_models.index.faiss_backend import FaissIndex  # noqa: E402

KILT_ENTITIES = 5_903_530
BYTES = {"fp32": 4, "fp16": 2}


# ---------------------------------------------------------------------------- measurement helpers
def clustered_vectors(num: int, dim: int, num_clusters: int, seed: int, chunk: int = 100_000) -> np.ndarray:
    """[num, dim] float32 vectors around unit-norm centers (noise norm ~0.3), generated in chunks."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((num_clusters, dim), dtype=np.float32)
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    out = np.empty((num, dim), dtype=np.float32)
    for start in range(0, num, chunk):
        rows = min(chunk, num - start)
        assign = rng.integers(num_clusters, size=rows)
        noise = rng.standard_normal((rows, dim), dtype=np.float32) * np.float32(0.3 / math.sqrt(dim))
        out[start : start + rows] = centers[assign] + noise
    return out


# ---------------------------------------------------------------------------- backends
class ExactTorch:
    """Entity table in torch (fp32 or fp16 storage, upcast per chunk), chunked matmul with a running top-k."""

    def __init__(self, dtype: str, device: str, chunk_size: int = 65_536) -> None:
        self.dtype = torch.float16 if dtype == "fp16" else torch.float32
        self.device = torch.device(device)
        self.chunk_size = chunk_size
        self.table: torch.Tensor | None = None

    def add(self, vectors: np.ndarray) -> None:
        self.table = torch.from_numpy(vectors).to(self.device, self.dtype, copy=True)

    def nbytes(self) -> int:
        return self.table.numel() * self.table.element_size()

    @torch.no_grad()
    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        query = torch.from_numpy(queries).to(self.device)
        best_scores = best_ids = None
        for start in range(0, self.table.shape[0], self.chunk_size):
            chunk = self.table[start : start + self.chunk_size].float()
            scores = query @ chunk.T  # [N, chunk]
            ids = torch.arange(start, start + scores.shape[1], device=self.device).expand_as(scores)
            if best_scores is not None:
                scores, ids = torch.cat([best_scores, scores], 1), torch.cat([best_ids, ids], 1)
            best_scores, pos = scores.topk(min(k, scores.shape[1]), dim=1)
            best_ids = ids.gather(1, pos)
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        return best_scores.cpu().numpy(), best_ids.cpu().numpy()


class Faiss:
    """hf_models.index.faiss_backend.FaissIndex with the benchmark's parameters."""

    def __init__(self, kind: str, dtype: str, dim: int, num: int, args: argparse.Namespace) -> None:
        nlist = args.nlist or max(1, int(math.sqrt(num)))
        self.index = FaissIndex(
            dim,
            kind,
            fp16=dtype == "fp16",
            nlist=nlist,
            nprobe=args.nprobe,
            train_sample_size=min(num, args.train_per_list * nlist),
            hnsw_m=args.hnsw_m,
            ef_construction=args.ef_construction,
            ef_search=args.ef_search,
            use_gpu=None if args.gpu else False,
        )

    def add(self, vectors: np.ndarray) -> None:
        self.index.add(vectors)

    def nbytes(self) -> int:
        return self.index.nbytes()

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return self.index.search(queries, k)


@dataclass
class Row:
    size: int
    dim: int
    dtype: str
    backend: str
    device: str
    build_s: float = math.nan
    query_s: float = math.nan
    index_mb: float = math.nan
    peak_mb: float = math.nan
    recall: float = math.nan
    note: str = ""
    extra: dict = field(default_factory=dict)


def run_case(
    backend: str, dtype: str, entities: np.ndarray, queries: np.ndarray, reference: np.ndarray | None, args
) -> tuple[Row, np.ndarray]:
    num, dim = entities.shape
    device = "cuda" if backend == "exact" and args.gpu and torch.cuda.is_available() else "cpu"
    row = Row(num, dim, dtype, backend, device)
    release_freed_memory()
    base = rss_bytes()
    reset_peak_rss()
    index = ExactTorch(dtype, device) if backend == "exact" else Faiss(backend, dtype, dim, num, args)
    start = time.perf_counter()
    index.add(entities)
    row.build_s = time.perf_counter() - start
    index.search(queries[:8], args.k)  # warm-up: thread pools, first-touch page faults
    start = time.perf_counter()
    _, ids = index.search(queries, args.k)
    row.query_s = time.perf_counter() - start
    row.peak_mb = (rss_bytes("VmHWM") - base) / 2**20
    row.index_mb = index.nbytes() / 2**20
    if reference is not None:
        row.recall = recall_at_k(ids, reference)
    del index
    release_freed_memory()
    return row, ids


def recall_at_k(ids: np.ndarray, reference: np.ndarray) -> float:
    hits = [len(np.intersect1d(a, b)) / len(b) for a, b in zip(ids, reference, strict=True)]
    return float(np.mean(hits))


# ---------------------------------------------------------------------------- driver
def run_size(num: int, dim: int, args) -> list[Row]:
    clusters = max(1, num // args.points_per_cluster)
    entities = clustered_vectors(num, dim, clusters, seed=0)
    queries = clustered_vectors(args.queries, dim, clusters, seed=0)[::-1].copy()  # same centers
    queries += np.random.default_rng(1).standard_normal(queries.shape, dtype=np.float32) * 0.3 / dim**0.5
    rows, reference = [], None
    for dtype in args.dtypes:
        for backend in args.backends:
            if backend == "hnsw" and num > args.hnsw_max_size:
                rows.append(
                    Row(
                        num,
                        dim,
                        dtype,
                        backend,
                        "cpu",
                        note=f"skipped: > --hnsw-max-size {args.hnsw_max_size}",
                    )
                )
                continue
            row, ids = run_case(backend, dtype, entities, queries, reference, args)
            if reference is None and backend == "exact" and dtype == "fp32":
                reference, row.recall = ids, 1.0
            rows.append(row)
            print(format_row(row), flush=True)
    return rows


HEADER = (
    f"{'entities':>9} {'dim':>4} {'dtype':>5} {'backend':>7} {'dev':>4} {'build_s':>8} {'query_s':>8} "
    f"{'ms/q':>7} {'index_MB':>9} {'peak_MB':>8} {'recall@k':>8}  note"
)


def format_row(row: Row, num_queries: int | None = None) -> str:
    num_queries = num_queries or ARGS.queries
    ms = 1000 * row.query_s / num_queries
    return (
        f"{row.size:>9,} {row.dim:>4} {row.dtype:>5} {row.backend:>7} {row.device:>4} {row.build_s:>8.2f} "
        f"{row.query_s:>8.2f} {ms:>7.2f} {row.index_mb:>9.0f} {row.peak_mb:>8.0f} {row.recall:>8.4f}  {row.note}"
    )


def extrapolate(rows: list[Row], args) -> list[str]:
    """Scale the largest measured size of each (dim, dtype, backend) to KILT's entity count."""
    lines = [f"Extrapolation to KILT (E = {KILT_ENTITIES:,} entities, {args.queries} queries, top-{args.k}):"]
    for dim in sorted({r.dim for r in rows}):
        for dtype in args.dtypes:
            store = KILT_ENTITIES * dim * BYTES[dtype]
            lines.append(
                f"  d={dim} {dtype}: vectors = E*d*bytes = {KILT_ENTITIES:,}*{dim}*{BYTES[dtype]} = {store / 1e9:.2f} GB"
            )
            for backend in args.backends:
                measured = [r for r in rows if (r.dim, r.dtype, r.backend) == (dim, dtype, backend)]
                measured = [r for r in measured if not math.isnan(r.build_s)]
                if not measured:
                    continue
                r = max(measured, key=lambda x: x.size)
                ratio = KILT_ENTITIES / r.size
                memory = r.index_mb * 2**20 * ratio / 1e9
                build = (
                    r.build_s
                    * ratio
                    * (math.log(KILT_ENTITIES) / math.log(r.size) if backend == "hnsw" else 1)
                )
                if backend == "ivf":  # assignment E*nlist*d with nlist ~ sqrt(E): build ~ E^1.5
                    build = r.build_s * ratio**1.5
                query = r.query_s * (math.sqrt(ratio) if backend == "ivf" else ratio)
                if backend == "hnsw":
                    query = r.query_s * math.log(KILT_ENTITIES) / math.log(r.size)
                rule = {
                    "exact": "build, query and memory linear in E",
                    "flat": "build, query and memory linear in E",
                    "ivf": "memory linear; nlist ~ sqrt(E): build ~ E^1.5, query ~ sqrt(E) at fixed nprobe",
                    "hnsw": "memory linear; build ~ E log E, query ~ log E (at fixed efSearch)",
                }[backend]
                lines.append(
                    f"    {backend:>5}: from {r.size:,} (x{ratio:.1f}): index {r.index_mb:.0f} MB*{ratio:.1f} = "
                    f"{memory:.2f} GB, build ~{build / 60:.1f} min, query {args.queries} ~{query:.1f} s  [{rule}]"
                )
    return lines


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--dims", type=int, nargs="+", default=[384, 768])
    parser.add_argument("--dtypes", nargs="+", default=["fp32", "fp16"], choices=sorted(BYTES))
    parser.add_argument("--backends", nargs="+", default=["exact", "flat", "ivf", "hnsw"])
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--k", type=int, default=64)
    parser.add_argument(
        "--points-per-cluster",
        type=int,
        default=100,
        help="synthetic entities per cluster center (E/this centers)",
    )
    parser.add_argument("--nlist", type=int, default=None, help="ivf lists (default sqrt(E))")
    parser.add_argument("--nprobe", type=int, default=32)
    parser.add_argument("--train-per-list", type=int, default=40, help="ivf k-means sample = this * nlist")
    parser.add_argument("--hnsw-m", type=int, default=32)
    parser.add_argument("--ef-construction", type=int, default=80)
    parser.add_argument("--ef-search", type=int, default=256)
    parser.add_argument("--hnsw-max-size", type=int, default=100_000, help="skip hnsw builds above this size")
    parser.add_argument("--threads", type=int, default=None, help="torch / faiss threads (default: all)")
    parser.add_argument("--no-gpu", dest="gpu", action="store_false", help="stay on the CPU even with a GPU")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    global ARGS
    ARGS = args = parse_args(argv)
    if args.threads:
        import faiss

        torch.set_num_threads(args.threads)
        faiss.omp_set_num_threads(args.threads)
    import faiss

    print(
        f"torch {torch.__version__} ({torch.get_num_threads()} threads, cuda={torch.cuda.is_available()}), "
        f"faiss {faiss.__version__} (gpus={faiss.get_num_gpus()}), cpus={os.cpu_count()}; "
        f"queries={args.queries} k={args.k} nprobe={args.nprobe} hnsw M={args.hnsw_m} "
        f"efC={args.ef_construction} efS={args.ef_search}"
    )
    print(HEADER, flush=True)
    rows: list[Row] = []
    for num in args.sizes:
        for dim in args.dims:
            rows.extend(run_size(num, dim, args))
    print("\n" + HEADER)
    for row in rows:
        print(format_row(row))
    print()
    print("\n".join(extrapolate(rows, args)))


ARGS: argparse.Namespace

if __name__ == "__main__":
    main()
