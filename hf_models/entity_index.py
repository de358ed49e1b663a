"""The one component that encodes entities once and scores mentions against them.

Mining (every epoch), evaluation and linking all go through :class:`EntityIndex`: it encodes each world's
entities (sharded across Accelerate processes and gathered), keeps their representations in memory (optionally
in fp16), and scores a batch of mentions against a world either as full rows (what the samplers need) or as a
running top-k (what retrieval needs), chunked over entities so memory stays bounded. Dot-product scores (dual,
multi-m) can be served by FAISS instead of the exact chunked products.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache

import torch
from tqdm.auto import tqdm

from .scoring import Representation

logger = logging.getLogger(__name__)

EncodeFn = Callable[[torch.Tensor, torch.Tensor], Representation]


@lru_cache(maxsize=1)
def cpu_has_fast_bf16() -> bool:
    """True when the CPU advertises native bf16 matrix units (AMX-BF16 or AVX512-BF16)."""
    try:
        with open("/proc/cpuinfo") as handle:
            flags = handle.read()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def resolve_encode_dtype(encode_dtype: str, device: torch.device) -> torch.dtype | None:
    """Map "auto" | "float32" | "bfloat16" | "float16" to an autocast dtype (None = no autocast)."""
    if encode_dtype == "float32":
        return None
    if encode_dtype in ("bfloat16", "float16"):
        return getattr(torch, encode_dtype)
    if encode_dtype != "auto":
        raise ValueError(f"encode_dtype must be auto, float32, bfloat16 or float16, got {encode_dtype!r}")
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if cpu_has_fast_bf16() else None


def autocast_for(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


@torch.no_grad()
def encode_in_batches(
    encode_fn: EncodeFn,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    *,
    batch_size: int,
    device: torch.device,
    autocast_dtype: torch.dtype | None = None,
    store_dtype: torch.dtype = torch.float32,
    desc: str = "encoding",
    show_progress: bool = True,
) -> Representation:
    """Encode [N, T] token ids in batches (each batch trimmed to its longest row) -> Representation on CPU."""
    n_rows, seq_len = input_ids.shape  # [N, T]
    parts: list[Representation] = []
    starts = range(0, n_rows, batch_size)
    for start in tqdm(starts, desc=desc, disable=not show_progress or len(starts) < 2, leave=False):
        ids = input_ids[start : start + batch_size]
        mask = attention_mask[start : start + batch_size]
        width = max(int(mask.sum(1).max()), 1)
        with autocast_for(device, autocast_dtype):
            rep = encode_fn(ids[:, :width].to(device), mask[:, :width].to(device))
        parts.append(Representation(vectors=rep.vectors.to("cpu", store_dtype), mask=rep.mask.to("cpu")))
    if not parts:
        raise ValueError("nothing to encode: got 0 rows")
    return Representation.cat(parts).pad_to(seq_len)


def shard_bounds(n_rows: int, num_shards: int, shard: int) -> tuple[int, int]:
    """Contiguous [start, end) rows of one shard; every shard but the last has ceil(n/num_shards) rows."""
    per = math.ceil(n_rows / num_shards)
    return min(shard * per, n_rows), min((shard + 1) * per, n_rows)


def gather_rows(accelerator, rep: Representation, n_rows: int) -> Representation:
    """All-gather each process's contiguous shard of rows (see `shard_bounds`) into the full [n_rows] table."""
    per = math.ceil(n_rows / accelerator.num_processes)
    local = _pad_rows(rep, per)
    vectors = accelerator.gather(local.vectors.float().to(accelerator.device)).cpu()  # [P*per, L, H]
    mask = accelerator.gather(local.mask.to(torch.uint8).to(accelerator.device)).cpu().bool()
    return Representation(vectors=vectors[:n_rows].to(rep.vectors.dtype), mask=mask[:n_rows])


def _pad_rows(rep: Representation, rows: int) -> Representation:
    extra = rows - rep.vectors.shape[0]
    if extra <= 0:
        return rep
    vectors = torch.cat([rep.vectors, rep.vectors.new_zeros((extra, *rep.vectors.shape[1:]))])
    mask = torch.cat([rep.mask, rep.mask.new_zeros((extra, *rep.mask.shape[1:]))])
    return Representation(vectors=vectors, mask=mask)


@dataclass
class WorldEntities:
    """One world's entities: their ids (row order), representations, and an optional FAISS index."""

    entity_ids: list[str]
    representation: Representation  # vectors [E, L, H] (store dtype), mask [E, L]
    faiss_index: object | None = None

    def __len__(self) -> int:
        return len(self.entity_ids)


class EntityIndex:
    """Encode a world's entities once; score or search a batch of mentions against them.

    Args:
        model: a retriever exposing `encode_mentions`, `encode_entities` and `score_all` (see docs/design.md).
        accelerator: an `accelerate.Accelerator`; with N processes the entity encoding is sharded 1/N per
            process and gathered, so every process ends with the full table. None = single process.
        batch_size: encoder batch size.
        encode_dtype: "auto" (bf16 autocast on GPUs and on CPUs with native bf16), "float32", "bfloat16".
        store_dtype: dtype of the stored entity representations (float16 halves memory).
        chunk_size: entities scored per chunk (bounds memory at N x chunk_size scores).
        backend: "exact" (chunked products, any architecture) or "faiss" (dual and multi-m only; top-k search).
        faiss_kind: "flat" | "ivf" | "hnsw" when backend="faiss".
    """

    def __init__(
        self,
        model,
        accelerator=None,
        *,
        batch_size: int = 64,
        encode_dtype: str = "auto",
        store_dtype: torch.dtype = torch.float32,
        chunk_size: int = 4096,
        backend: str = "exact",
        faiss_kind: str = "flat",
        show_progress: bool = True,
    ) -> None:
        if backend not in ("exact", "faiss"):
            raise ValueError(f"backend must be 'exact' or 'faiss', got {backend!r}")
        if backend == "faiss" and not _is_dot_product(model.config):
            raise ValueError(
                f"backend='faiss' needs a dot-product score (dual or multi-m); architecture "
                f"{model.config.architecture!r} uses {model.config.num_query_vectors} query vectors, "
                f"attention {model.config.attention!r}. Use backend='exact'."
            )
        self.model = model
        self.accelerator = accelerator
        self.batch_size = batch_size
        self.device = accelerator.device if accelerator is not None else next(model.parameters()).device
        self.autocast_dtype = resolve_encode_dtype(encode_dtype, self.device)
        self.store_dtype = store_dtype
        self.chunk_size = chunk_size
        self.backend = backend
        self.faiss_kind = faiss_kind
        self.show_progress = show_progress
        self.worlds: dict[str, WorldEntities] = {}

    # ---------------------------------------------------------------- encoding
    @property
    def num_processes(self) -> int:
        return 1 if self.accelerator is None else self.accelerator.num_processes

    @property
    def process_index(self) -> int:
        return 0 if self.accelerator is None else self.accelerator.process_index

    def _encode(self, encode_fn: EncodeFn, input_ids, attention_mask, desc: str) -> Representation:
        return encode_in_batches(
            encode_fn,
            input_ids,
            attention_mask,
            batch_size=self.batch_size,
            device=self.device,
            autocast_dtype=self.autocast_dtype,
            store_dtype=self.store_dtype,
            desc=desc,
            show_progress=self.show_progress and self.process_index == 0,
        )

    def encode_mentions(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> Representation:
        """Encode mentions on this process only (callers shard mentions themselves)."""
        was_training = self.model.training
        self.model.eval()
        try:
            return self._encode(self.model.encode_mentions, input_ids, attention_mask, "encoding mentions")
        finally:
            self.model.train(was_training)

    def encode_entities_sharded(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> Representation:
        """Encode [E, T] entities: each process encodes its 1/N contiguous shard, then all-gather."""
        n_rows = input_ids.shape[0]
        start, end = shard_bounds(n_rows, self.num_processes, self.process_index)
        was_training = self.model.training
        self.model.eval()
        try:
            if end > start:
                local = self._encode(
                    self.model.encode_entities,
                    input_ids[start:end],
                    attention_mask[start:end],
                    "encoding entities",
                )
            else:  # more processes than rows: contribute an empty shard of the right shape
                probe = self._encode(self.model.encode_entities, input_ids[:1], attention_mask[:1], "probe")
                local = Representation(vectors=probe.vectors[:0], mask=probe.mask[:0])
        finally:
            self.model.train(was_training)
        if self.num_processes == 1:
            return local
        local = local.pad_to(input_ids.shape[1])
        return gather_rows(self.accelerator, local, n_rows)

    def add_world(
        self, world: str, entity_ids: Sequence[str], input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> WorldEntities:
        """(Re-)encode one world's entities and store them (replacing any previous encoding)."""
        if len(entity_ids) == 0:
            raise ValueError(
                f"world {world!r} has no entities: cannot build an index over an empty knowledge base"
            )
        if len(entity_ids) != input_ids.shape[0]:
            raise ValueError(
                f"world {world!r}: {len(entity_ids)} entity ids but input_ids has shape {tuple(input_ids.shape)}"
            )
        rep = self.encode_entities_sharded(input_ids, attention_mask)
        entry = WorldEntities(entity_ids=list(entity_ids), representation=rep)
        if self.backend == "faiss":
            entry.faiss_index = self._build_faiss(rep)
        self.worlds[world] = entry
        return entry

    def _build_faiss(self, rep: Representation):
        from .faiss_backend import FaissIndex

        index = FaissIndex(dim=rep.vectors.shape[-1], kind=self.faiss_kind)
        index.add(rep.vectors.float(), mask=rep.mask)
        return index

    # ----------------------------------------------------------------- scoring
    def entity_chunks(self, world: str) -> Iterator[tuple[int, int, Representation]]:
        """Yield (start, end, representation) chunks of a world's entities, upcast to float32."""
        rep = self.worlds[world].representation
        for start in range(0, rep.vectors.shape[0], self.chunk_size):
            end = min(start + self.chunk_size, rep.vectors.shape[0])
            yield start, end, rep[start:end].to(self.device, torch.float32)

    @torch.no_grad()
    def score(self, world: str, mentions: Representation) -> torch.Tensor:
        """Full score rows of N mentions against every entity of `world` -> [N, E] float32 (CPU)."""
        mentions = mentions.to(self.device, torch.float32)
        rows = []
        for _, _, chunk in self.entity_chunks(world):
            rows.append(self.model.score_all(mentions, chunk).float().cpu())  # [N, chunk]
        return torch.cat(rows, dim=1)

    @torch.no_grad()
    def search(self, world: str, mentions: Representation, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-k entities of `world` for each mention -> (scores [N, k'], row indices [N, k']), k' = min(k, E)."""
        entry = self.worlds[world]
        k = min(k, len(entry))
        if entry.faiss_index is not None:
            scores, ids = entry.faiss_index.search(mentions.vectors[:, 0].float(), k)
            return torch.as_tensor(scores), torch.as_tensor(ids).long()
        mentions = mentions.to(self.device, torch.float32)
        best_scores = best_ids = None
        for start, _, chunk in self.entity_chunks(world):
            scores = self.model.score_all(mentions, chunk).float()  # [N, chunk]
            ids = torch.arange(start, start + scores.shape[1], device=scores.device).expand_as(scores)
            if best_scores is not None:
                scores, ids = torch.cat([best_scores, scores], 1), torch.cat([best_ids, ids], 1)
            best_scores, pos = scores.topk(min(k, scores.shape[1]), dim=1)
            best_ids = ids.gather(1, pos)
        return best_scores.cpu(), best_ids.cpu()


def map_chunks_sharded(
    accelerator, num_chunks: int, fn: Callable[[int], object], desc: str
) -> dict[int, object]:
    """Run `fn(c)` for chunk c on process c mod N, then gather every process's results -> {c: result}."""
    rank = 0 if accelerator is None else accelerator.process_index
    world_size = 1 if accelerator is None else accelerator.num_processes
    mine = range(rank, num_chunks, world_size)
    results = {c: fn(c) for c in tqdm(mine, desc=desc, disable=rank != 0 or len(mine) < 2, leave=False)}
    if world_size == 1:
        return results
    from accelerate.utils import gather_object

    merged: dict[int, object] = {}
    for part in gather_object([results]):
        merged.update(part)
    return merged


def _is_dot_product(config) -> bool:
    """dual and multi-m: one mention vector, leftmost entity vectors, hard (max) attention."""
    return (
        config.direction == "mention_to_entity"
        and config.num_query_vectors == 1
        and config.query_reduction == "leftmost"
        and config.key_reduction == "leftmost"
        and config.num_key_vectors is not None
        and (config.attention == "hard" or config.num_key_vectors == 1)
    )
