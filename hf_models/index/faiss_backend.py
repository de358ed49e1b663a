"""FAISS search over entity vectors for dot-product retrievers (dual, multi-m).

:class:`FaissIndex` holds ONE world's entities (the caller, :class:`~hf_models.index.entity_index.EntityIndex`, keeps one
index per world; restricting a search to a world is therefore choosing the index, never filtering results).

* ``kind="flat"``: exact inner product (``IndexFlatIP``; ``SQfp16`` codes when ``fp16=True``).
* ``kind="ivf"``: inverted lists (``IndexIVFFlat`` / ``IndexIVFScalarQuantizer``), k-means trained on a sample
  of the first ``add``; ``nlist`` lists, ``nprobe`` probed at search time.
* ``kind="hnsw"``: graph search (``IndexHNSWFlat`` / ``IndexHNSWSQ``) with ``METRIC_INNER_PRODUCT``; ``hnsw_m``
  links per node, ``ef_construction`` / ``ef_search`` beam widths.

Multi-vector entities (multi-m, score = max_t <q, y_t>): every valid vector of every entity is added and
``vector_to_entity`` maps vector rows to entity rows. A search for k entities asks FAISS for ``k * m`` vectors
(m = the most vectors any entity has), which for an exact index always contains k distinct entities; the
per-entity max is the entity's first hit in the score-sorted list, so keeping each entity's first hit and the
k best of those is exactly the top-k of the max-score. Rows that still have fewer than k distinct entities
(approximate indices can return fewer hits) are searched again with twice as many vectors, up to everything.

GPU: with ``use_gpu=None`` (default) a faiss build with GPUs (``faiss.get_num_gpus() > 0``) moves flat and ivf
indices to GPU 0 (``use_gpu=False`` opts out; hnsw has no GPU implementation and stays on the CPU).
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

KINDS = ("flat", "ivf", "hnsw")
INDEX_FILE = "index.faiss"
META_FILE = "faiss_meta.json"
MAP_FILE = "vector_to_entity.npy"


def _faiss():
    """Import faiss lazily (it is an optional, heavy dependency of the rest of the package)."""
    try:
        import faiss
    except ImportError as error:  # pragma: no cover - faiss-cpu is a declared dependency
        raise ImportError("the FAISS backend needs `pip install faiss-cpu` (or faiss-gpu)") from error
    return faiss


def to_float32_numpy(array: Any, name: str) -> np.ndarray:
    """A torch tensor (any float dtype, any device) or numpy array -> C-contiguous float32 numpy."""
    if hasattr(array, "detach"):  # torch.Tensor without importing torch
        array = array.detach().to("cpu").float().numpy()
    array = np.asarray(array)
    if not np.issubdtype(array.dtype, np.floating):
        raise TypeError(f"{name} must be a float array, got dtype {array.dtype}")
    return np.ascontiguousarray(array, dtype=np.float32)


def _to_bool_numpy(mask: Any) -> np.ndarray:
    if hasattr(mask, "detach"):
        mask = mask.detach().to("cpu").numpy()
    return np.asarray(mask).astype(bool)


def auto_nlist(num_vectors: int) -> int:
    """~4 sqrt(n) lists, but at most n / 39 so k-means has the 39 points per centroid faiss asks for."""
    return max(1, min(int(4 * math.sqrt(num_vectors)), num_vectors // 39))


def first_hit_per_entity(
    scores: np.ndarray, entity_ids: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Max-reduce score-sorted vector hits to entities and keep the k best.

    Args:
        scores: [N, K] vector scores, each row sorted descending (FAISS order).
        entity_ids: [N, K] entity of each hit (-1 = no hit).
        k: entities to keep.

    Returns:
        (scores [N, k], entity ids [N, k], number of distinct entities found [N]); missing slots hold
        (-inf, -1).
    """
    order = np.argsort(entity_ids, axis=1, kind="stable")  # groups an entity's hits, best hit first
    ent_sorted = np.take_along_axis(entity_ids, order, axis=1)
    score_sorted = np.take_along_axis(scores, order, axis=1)
    first = np.ones_like(ent_sorted, dtype=bool)
    first[:, 1:] = ent_sorted[:, 1:] != ent_sorted[:, :-1]
    first &= ent_sorted >= 0
    score_sorted = np.where(first, score_sorted, -np.inf).astype(np.float32)
    found = first.sum(axis=1)
    best = np.argsort(-score_sorted, axis=1, kind="stable")[:, :k]
    top_scores = np.take_along_axis(score_sorted, best, axis=1)
    top_ids = np.where(np.isfinite(top_scores), np.take_along_axis(ent_sorted, best, axis=1), -1)
    if top_scores.shape[1] < k:  # fewer hits than k in total: pad
        pad = k - top_scores.shape[1]
        top_scores = np.pad(top_scores, ((0, 0), (0, pad)), constant_values=-np.inf)
        top_ids = np.pad(top_ids, ((0, 0), (0, pad)), constant_values=-1)
    return top_scores, top_ids.astype(np.int64), found


class FaissIndex:
    """Top-k inner-product search over one world's (possibly multi-vector) entities.

    Args:
        dim: vector dimension H.
        kind: "flat" (exact), "ivf" or "hnsw".
        fp16: store vectors as fp16 (scalar-quantizer codes; half the memory, scores exact up to fp16 rounding).
        nlist: ivf lists (None = :func:`auto_nlist` of the first ``add``).
        nprobe: ivf lists probed per query.
        train_sample_size: ivf k-means training vectors (None = 64 per list), sampled from the first ``add``.
        hnsw_m: hnsw links per node.
        ef_construction / ef_search: hnsw beam widths at build / search time (search uses max(ef_search, k)).
        use_gpu: None = GPU when faiss sees one, False = CPU only, True = require a GPU.
        query_chunk_size: queries searched per FAISS call (bounds memory at chunk x k * m hits).
        seed: seed of the ivf training sample.
    """

    def __init__(
        self,
        dim: int,
        kind: str = "flat",
        *,
        fp16: bool = False,
        nlist: int | None = None,
        nprobe: int = 32,
        train_sample_size: int | None = None,
        hnsw_m: int = 32,
        ef_construction: int = 200,
        ef_search: int = 256,
        use_gpu: bool | None = None,
        query_chunk_size: int = 1024,
        seed: int = 0,
    ) -> None:
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        if dim <= 0:
            raise ValueError(f"dim must be positive, got {dim}")
        self.dim = int(dim)
        self.kind = kind
        self.fp16 = fp16
        self.nlist = nlist
        self.nprobe = nprobe
        self.train_sample_size = train_sample_size
        self.hnsw_m = hnsw_m
        self.ef_construction = ef_construction
        self.ef_search = ef_search
        self.use_gpu = use_gpu
        self.query_chunk_size = query_chunk_size
        self.seed = seed
        self.index = None  # built on the first add (ivf needs the data to choose nlist and train)
        self.on_gpu = False
        self.vector_to_entity = np.zeros(0, dtype=np.int64)
        self.num_entities = 0
        self.max_vectors_per_entity = 0

    # ------------------------------------------------------------------ properties
    def __len__(self) -> int:
        """Number of entities added (including entities without a valid vector)."""
        return self.num_entities

    @property
    def num_vectors(self) -> int:
        return len(self.vector_to_entity)

    @property
    def num_searchable_entities(self) -> int:
        """Entities with at least one valid vector."""
        return len(np.unique(self.vector_to_entity))

    def describe(self) -> str:
        """A faiss factory-style description, e.g. "IVF1024,SQfp16 (IP, cpu)"."""
        return f"{self._factory_string(self.nlist or 0)} (IP, {'gpu' if self.on_gpu else 'cpu'})"

    # ------------------------------------------------------------------ building
    def _factory_string(self, nlist: int) -> str:
        storage = "SQfp16" if self.fp16 else "Flat"
        if self.kind == "flat":
            return storage
        if self.kind == "ivf":
            return f"IVF{nlist},{storage}"
        return f"HNSW{self.hnsw_m},{storage}"

    def _want_gpu(self) -> bool:
        faiss = _faiss()
        num_gpus = faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0
        if self.use_gpu and num_gpus == 0:
            raise RuntimeError("use_gpu=True but faiss sees no GPU (install faiss-gpu / check CUDA)")
        if self.kind == "hnsw":
            if self.use_gpu:
                logger.warning("faiss has no GPU HNSW; keeping the hnsw index on the CPU")
            return False
        return bool(num_gpus > 0 and self.use_gpu is not False)

    def _new_index(self, vectors: np.ndarray):
        faiss = _faiss()
        if self.kind == "ivf" and self.nlist is None:
            self.nlist = auto_nlist(len(vectors))
        index = faiss.index_factory(
            self.dim, self._factory_string(self.nlist or 0), faiss.METRIC_INNER_PRODUCT
        )
        if self.kind == "hnsw":
            faiss.downcast_index(index).hnsw.efConstruction = self.ef_construction
        if self.kind == "ivf":
            self._train(index, vectors)
        return index

    def _train(self, index, vectors: np.ndarray) -> None:
        if len(vectors) < self.nlist:
            raise ValueError(
                f"ivf: nlist={self.nlist} lists need at least as many training vectors, got {len(vectors)}; "
                "lower nlist or leave it None (automatic)"
            )
        size = min(len(vectors), self.train_sample_size or 64 * self.nlist)
        rows = np.random.default_rng(self.seed).choice(len(vectors), size=size, replace=False)
        logger.info("training ivf (nlist=%d) on %d of %d vectors", self.nlist, size, len(vectors))
        index.train(vectors[np.sort(rows)])

    def _to_gpu(self, index):
        faiss = _faiss()
        options = faiss.GpuClonerOptions()
        options.useFloat16 = self.fp16
        self._gpu_resources = faiss.StandardGpuResources()
        return faiss.index_cpu_to_gpu(self._gpu_resources, 0, index, options)

    def _cpu_index(self):
        return _faiss().index_gpu_to_cpu(self.index) if self.on_gpu else self.index

    def _flatten(self, vectors: Any, mask: Any | None) -> tuple[np.ndarray, np.ndarray, int, int]:
        """[E, H] or [E, m, H] (+ mask [E, m]) -> valid vectors [V, H], their entity rows [V], E, m."""
        array = to_float32_numpy(vectors, "vectors")
        if array.ndim == 2:
            array = array[:, None, :]
        if array.ndim != 3:
            raise ValueError(f"vectors must be [E, H] or [E, m, H], got shape {tuple(array.shape)}")
        if array.shape[-1] != self.dim:
            raise ValueError(
                f"vectors have dimension {array.shape[-1]} but the index has dimension {self.dim}"
            )
        num_entities, per_entity = array.shape[:2]
        valid = np.ones((num_entities, per_entity), dtype=bool) if mask is None else _to_bool_numpy(mask)
        if valid.shape != (num_entities, per_entity):
            raise ValueError(
                f"mask must be [E, m] = {(num_entities, per_entity)} to match vectors, got {tuple(valid.shape)}"
            )
        if valid.all():  # no copy of the (possibly multi-GB) input: a reshape view
            entity_rows = np.repeat(np.arange(num_entities, dtype=np.int64), per_entity)
            return array.reshape(-1, self.dim), entity_rows, num_entities, per_entity
        entity_rows = np.broadcast_to(np.arange(num_entities)[:, None], valid.shape)[valid]
        return np.ascontiguousarray(array[valid]), entity_rows.astype(np.int64), num_entities, per_entity

    def add(self, vectors: Any, mask: Any | None = None) -> FaissIndex:
        """Add entities: ``vectors`` [E, H] (one vector each) or [E, m, H] (multi-vector), float32/16, numpy or
        torch; ``mask`` [E, m] bool marks the valid vectors (False rows are skipped). Entity rows continue
        from the previous ``add`` (row r of the first call is entity r). An ivf index trains on the first call."""
        flat, entity_rows, num_entities, per_entity = self._flatten(vectors, mask)
        if len(flat) == 0:
            raise ValueError("add: no valid vectors (empty input or an all-False mask)")
        if self.index is None:
            index = self._new_index(flat)
            self.on_gpu = self._want_gpu()
            self.index = self._to_gpu(index) if self.on_gpu else index
            self._apply_search_params()
        self.index.add(flat)
        self.vector_to_entity = np.concatenate([self.vector_to_entity, entity_rows + self.num_entities])
        self.num_entities += num_entities
        counts = np.bincount(entity_rows, minlength=num_entities)
        self.max_vectors_per_entity = max(self.max_vectors_per_entity, int(counts.max()))
        logger.info("faiss %s: added %d vectors of %d entities", self.describe(), len(flat), num_entities)
        return self

    def _apply_search_params(self) -> None:
        faiss = _faiss()
        if self.kind == "ivf":
            if self.on_gpu:
                faiss.GpuParameterSpace().set_index_parameter(self.index, "nprobe", self.nprobe)
            else:
                faiss.extract_index_ivf(self.index).nprobe = self.nprobe
        elif self.kind == "hnsw":
            faiss.downcast_index(self.index).hnsw.efSearch = self.ef_search

    def set_search_params(self, *, nprobe: int | None = None, ef_search: int | None = None) -> None:
        """Change ivf ``nprobe`` / hnsw ``ef_search`` of a built index."""
        self.nprobe = nprobe if nprobe is not None else self.nprobe
        self.ef_search = ef_search if ef_search is not None else self.ef_search
        if self.index is not None:
            self._apply_search_params()

    def nbytes(self) -> int:
        """Approximate index memory: codes (+ ivf ids and centroids, + hnsw links) + the vector->entity map."""
        faiss = _faiss()
        index = self._cpu_index() if self.index is not None else None
        if index is None:
            return 0
        code_bytes = self.num_vectors * (2 if self.fp16 else 4) * self.dim
        extra = 0
        if self.kind == "ivf":
            extra = self.num_vectors * 8 + (self.nlist or 0) * self.dim * 4
        elif self.kind == "hnsw":
            hnsw = faiss.downcast_index(index).hnsw
            extra = hnsw.neighbors.size() * 4 + hnsw.levels.size() * 4 + hnsw.offsets.size() * 8
        return int(code_bytes + extra + self.vector_to_entity.nbytes)

    # ------------------------------------------------------------------ search
    def search(self, queries: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k entities by max inner product -> (scores [N, k] float32, entity rows [N, k] int64).

        ``k`` is clamped to the number of entities; slots an approximate index cannot fill hold (-inf, -1).
        """
        if self.index is None or self.num_vectors == 0:
            raise ValueError("search on an empty FaissIndex: call add(vectors) first")
        array = to_float32_numpy(queries, "queries")
        if array.ndim != 2:
            raise ValueError(f"queries must be [N, H], got shape {tuple(array.shape)}")
        if array.shape[1] != self.dim:
            raise ValueError(
                f"queries have dimension {array.shape[1]} but the index has dimension {self.dim}"
            )
        if k <= 0:
            raise ValueError(f"k must be positive, got {k}")
        k = min(k, self.num_entities)
        out_scores = np.empty((len(array), k), dtype=np.float32)
        out_ids = np.empty((len(array), k), dtype=np.int64)
        for start in range(0, len(array), self.query_chunk_size):
            chunk = slice(start, start + self.query_chunk_size)
            out_scores[chunk], out_ids[chunk] = self._search_chunk(array[chunk], k)
        return out_scores, out_ids

    def _search_vectors(self, queries: np.ndarray, num_hits: int) -> tuple[np.ndarray, np.ndarray]:
        scores, rows = self.index.search(queries, num_hits)
        hit = rows >= 0  # faiss pads missing hits with id -1 (score -3.4e38)
        entity_ids = np.where(hit, self.vector_to_entity[np.maximum(rows, 0)], -1)
        return np.where(hit, scores, -np.inf).astype(np.float32), entity_ids

    def _search_chunk(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        if self.max_vectors_per_entity == 1:  # one vector per entity: vector hits are entity hits
            scores, entity_ids = self._search_vectors(queries, k)
            return scores, entity_ids
        num_hits = min(self.num_vectors, k * self.max_vectors_per_entity)
        scores, entity_ids = self._search_vectors(queries, num_hits)
        top_scores, top_ids, found = first_hit_per_entity(scores, entity_ids, k)
        short = np.flatnonzero(found < k)
        while len(short) and num_hits < self.num_vectors:  # approximate hits too few: search deeper
            num_hits = min(self.num_vectors, 2 * num_hits)
            scores, entity_ids = self._search_vectors(queries[short], num_hits)
            top_scores[short], top_ids[short], found_short = first_hit_per_entity(scores, entity_ids, k)
            short = short[found_short < k]
        return top_scores, top_ids

    # ------------------------------------------------------------------ persistence
    def _meta(self) -> dict[str, Any]:
        keys = ("dim", "kind", "fp16", "nlist", "nprobe", "train_sample_size", "hnsw_m", "ef_construction")
        meta = {key: getattr(self, key) for key in keys}
        meta.update(
            ef_search=self.ef_search,
            query_chunk_size=self.query_chunk_size,
            seed=self.seed,
            num_entities=self.num_entities,
            max_vectors_per_entity=self.max_vectors_per_entity,
        )
        return meta

    def save(self, path: str | Path) -> Path:
        """Write ``index.faiss`` (CPU copy), ``faiss_meta.json`` and ``vector_to_entity.npy`` into folder ``path``."""
        if self.index is None:
            raise ValueError("save on an empty FaissIndex: call add(vectors) first")
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        _faiss().write_index(self._cpu_index(), str(folder / INDEX_FILE))
        (folder / META_FILE).write_text(json.dumps(self._meta(), indent=2))
        np.save(folder / MAP_FILE, self.vector_to_entity)
        return folder

    @classmethod
    def load(
        cls,
        path: str | Path,
        use_gpu: bool | None = None,
        nprobe: int | None = None,
        ef_search: int | None = None,
        num_entities: int | None = None,
    ) -> FaissIndex:
        """Read a folder written by :meth:`save` (moved to a GPU per ``use_gpu``, as in the constructor).

        ``nprobe`` / ``ef_search`` (search-time settings) replace the saved ones when given. The index, its
        vector -> entity map and ``num_entities`` (the caller's row count, when given) must agree: else a
        :class:`~hf_models.atomic.CorruptFolderError` naming the folder.
        """
        folder = Path(path)
        missing = [name for name in (INDEX_FILE, META_FILE, MAP_FILE) if not (folder / name).exists()]
        if missing:
            raise FileNotFoundError(f"{folder} is not a saved FaissIndex: missing {missing}")
        meta = json.loads((folder / META_FILE).read_text())
        saved_count = meta.pop("num_entities")
        max_vectors = meta.pop("max_vectors_per_entity")
        self = cls(**meta, use_gpu=use_gpu)
        index = _faiss().read_index(str(folder / INDEX_FILE))
        self.on_gpu = self._want_gpu()
        self.index = self._to_gpu(index) if self.on_gpu else index
        self.vector_to_entity = np.load(folder / MAP_FILE)
        rows = saved_count if num_entities is None else num_entities  # the caller's entity rows, when given
        mapped = self.vector_to_entity
        if (
            saved_count != rows
            or index.ntotal != len(mapped)
            or (len(mapped) and (int(mapped.min()) < 0 or int(mapped.max()) >= saved_count))
        ):
            from ..atomic import CorruptFolderError

            raise CorruptFolderError(
                f"{folder}: {INDEX_FILE} holds {index.ntotal} vectors, {MAP_FILE} maps {len(mapped)} to entities "
                f"0..{int(mapped.max()) if len(mapped) else -1}, {META_FILE} records {saved_count} entities and the "
                f"index {rows}: the files do not belong together; rebuild the index"
            )
        self.num_entities, self.max_vectors_per_entity = saved_count, max_vectors
        self.set_search_params(nprobe=nprobe, ef_search=ef_search)
        return self
