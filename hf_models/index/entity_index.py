"""The one component that encodes entities once and scores mentions against them.

Mining (every epoch), evaluation and linking all go through :class:`EntityIndex`: it encodes each world's
entities (sharded across Accelerate processes and gathered), keeps their representations in memory (optionally
in fp16), and scores a batch of mentions against a world either as full rows (what the samplers need) or as a
running top-k (what retrieval needs), chunked over entities so memory stays bounded. Dot-product scores (dual,
multi-m) can be served by FAISS instead of the exact chunked products. Other scores (som) can search a shortlist:
the ``shortlist_size`` best entities by the first-token vectors ``E_1(x)^T F_1(y)`` (a FAISS index), rescored
exactly (:meth:`EntityIndex.rescore` also rescores any caller-given shortlist, e.g. a dual retriever's).
:meth:`EntityIndex.save` / :meth:`EntityIndex.load` persist the encoded worlds (see docs/linking.md).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch

from ..modeling.scoring import Representation
from .encoding import (  # noqa: F401  (re-exported: the encoding helpers used to live here)
    EncodeFn,
    autocast_for,
    cpu_has_fast_bf16,
    encode_in_batches,
    model_state_key,
    resolve_encode_dtype,
)
from .index_storage import WorldEntities, load_worlds, save_worlds
from .sharding import gather_rows, shard_bounds

logger = logging.getLogger(__name__)


class EntityIndex:
    """Encode a world's entities once; score or search a batch of mentions against them.

    Args:
        model: a retriever exposing `encode_mentions`, `encode_entities` and `score_all` (see docs/design.md).
        accelerator: an `accelerate.Accelerator`; with N processes the entity encoding is sharded 1/N per
            process and gathered, so every process ends with the full table. None = single process.
        batch_size: encoder batch size in full-width rows: with ``max_tokens`` None, each length-sorted batch
            holds at most ``batch_size x T`` padded tokens (T = the input width), so short rows fill bigger batches.
        max_tokens: explicit token budget per encoder batch (rows x longest row); None = ``batch_size x T``.
        score_dtype: dtype of the scoring products: "float32" (exact), "bfloat16" / "float16" (low-precision
            products, fp32 accumulation), or "auto": the encoding's autocast dtype when the query side has several
            vectors (som, genpoly-m: [m x m'] products per pair dominate), float32 otherwise (dual, multi-m,
            poly-m: one query vector, cheap, and exactly what FAISS returns). Measured exactness: benchmarks/README.md.
        encode_dtype: "auto" (bf16 autocast on GPUs and on CPUs with AMX), "float32", "bfloat16", "float16".
        store_dtype: dtype of the stored entity representations (float16 halves memory).
        chunk_size: entities scored per chunk (bounds memory at N x chunk_size scores).
        backend: "exact" (chunked products, any architecture) or "faiss" (dual and multi-m only; top-k search).
        faiss_kind: "flat" | "ivf" | "hnsw" when backend="faiss" (also the kind of the shortlist index).
        shortlist_size: with backend="exact", search only the ``shortlist_size`` best entities by the first-token
            score ``E_1(x)^T F_1(y)`` (a FAISS index of each entity's first vector) and rescore them exactly with
            the model (som's candidate pre-filter). None = exhaustive. Needs leftmost reductions on both sides.
        faiss_options: extra keyword arguments of :class:`~hf_models.index.faiss_backend.FaissIndex` (nlist, nprobe,
            hnsw_m, ef_search, use_gpu, ...).
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
        shortlist_size: int | None = None,
        faiss_options: dict | None = None,
        max_tokens: int | None = None,
        score_dtype: str = "auto",
    ) -> None:
        if backend not in ("exact", "faiss"):
            raise ValueError(f"backend must be 'exact' or 'faiss', got {backend!r}")
        if shortlist_size is not None:
            _check_shortlist(model.config, backend, shortlist_size)
        if backend == "faiss" and not _is_dot_product(model.config):
            raise ValueError(
                f"backend='faiss' needs a dot-product score (dual or multi-m); architecture "
                f"{model.config.architecture!r} uses {model.config.num_query_vectors} query vectors, "
                f"attention {model.config.attention!r}. Use backend='exact'."
            )
        self.model = model
        self.accelerator = accelerator
        self.batch_size = batch_size
        self.max_tokens = max_tokens
        self.device = accelerator.device if accelerator is not None else next(model.parameters()).device
        self.autocast_dtype = resolve_encode_dtype(encode_dtype, self.device)
        self.score_dtype = resolve_score_dtype(score_dtype, model.config, self.autocast_dtype)
        self.store_dtype = store_dtype
        self.chunk_size = chunk_size
        self.backend = backend
        self.faiss_kind = faiss_kind
        self.show_progress = show_progress
        self.shortlist_size = shortlist_size
        self.faiss_options = dict(faiss_options or {})
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
            max_tokens=self.max_tokens,
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
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, desc: str = "encoding entities"
    ) -> Representation:
        """Encode [E, T] entities: each process encodes its 1/N contiguous shard, then all-gather (``desc``: the
        progress bar's label)."""
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
                    desc,
                )
            else:  # more processes than rows: contribute an empty shard of the right shape
                probe = self._encode(self.model.encode_entities, input_ids[:1], attention_mask[:1], "probe")
                local = Representation(vectors=probe.vectors[:0], mask=probe.mask[:0])
        finally:
            self.model.train(was_training)
        if self.num_processes == 1:
            return local
        return gather_rows(self.accelerator, local, n_rows)

    def add_world(
        self, world: str, entity_ids: Sequence[str], input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> WorldEntities:
        """Encode one world's entities and store them, replacing any previous encoding of the world.

        Encode once per model state: when the world is already stored, encoded by the model in its current
        state (same weights, see :func:`~hf_models.index.encoding.model_state_key`) from the same entity ids and token
        ids, the stored encoding is reused (evaluation and the next epoch's mining at the same step share it).
        Worlds encoded by an earlier model state are dropped first (they can never be reused).
        """
        if len(entity_ids) == 0:
            raise ValueError(
                f"world {world!r} has no entities: cannot build an index over an empty knowledge base"
            )
        if len(entity_ids) != input_ids.shape[0]:
            raise ValueError(
                f"world {world!r}: {len(entity_ids)} entity ids but input_ids has shape {tuple(input_ids.shape)}"
            )
        state = model_state_key(self.model)
        cached = self.encoded_world(world, entity_ids, input_ids, attention_mask, state)
        if cached is not None:
            logger.debug("world %r: reusing its encoding (same model state and inputs)", world)
            return cached
        stale = [name for name, entry in self.worlds.items() if entry.source and entry.source[0] != state]
        for name in stale:  # encoded by an earlier model state: free them before encoding
            del self.worlds[name]
        rep = self.encode_entities_sharded(input_ids, attention_mask, f"encoding entities ({world})")
        entry = WorldEntities(
            entity_ids=list(entity_ids), representation=rep, source=(state, input_ids, attention_mask)
        )
        entry.faiss_index = self._build_faiss(rep)
        self.worlds[world] = entry
        return entry

    def encoded_world(
        self,
        world: str,
        entity_ids: Sequence[str],
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        state: tuple | None = None,
    ) -> WorldEntities | None:
        """The stored encoding of ``world`` if the model in its current state encoded it from exactly these
        entities, else None (collective under Accelerate: every process gets the same answer).

        ``state`` is :func:`~hf_models.index.encoding.model_state_key` of the model when the caller already has it.
        """
        state = model_state_key(self.model) if state is None else state
        cached = self.worlds.get(world)
        same = cached is not None and _same_source(cached, entity_ids, state, input_ids, attention_mask)
        return cached if self._all_processes_agree(same) else None

    def _all_processes_agree(self, flag: bool) -> bool:
        """``flag`` on every process (encoding is collective: all reuse, or all encode)."""
        if self.num_processes == 1:
            return flag
        value = torch.tensor([int(flag)], device=self.accelerator.device)
        return bool(self.accelerator.gather(value).min())

    def _build_faiss(self, rep: Representation):
        """The world's FAISS index: all vectors (backend="faiss"), first vectors (shortlist), or None."""
        if self.backend != "faiss" and self.shortlist_size is None:
            return None
        from .faiss_backend import FaissIndex

        if self.backend != "faiss":  # shortlist: one vector per entity, F_1(y)
            rep = Representation(vectors=rep.vectors[:, :1], mask=rep.mask[:, :1])
        index = FaissIndex(dim=rep.vectors.shape[-1], kind=self.faiss_kind, **self.faiss_options)
        index.add(rep.vectors.float(), mask=rep.mask)
        return index

    # ----------------------------------------------------------------- scoring
    def entity_chunks(self, world: str) -> Iterator[tuple[int, int, Representation]]:
        """Yield (start, end, representation) chunks of a world's entities, cast to the score dtype."""
        rep = self.worlds[world].representation
        for start in range(0, rep.vectors.shape[0], self.chunk_size):
            end = min(start + self.chunk_size, rep.vectors.shape[0])
            yield start, end, rep[start:end].to(self.device, self.score_dtype)

    @torch.no_grad()
    def score(self, world: str, mentions: Representation) -> torch.Tensor:
        """Full score rows of N mentions against every entity of `world` -> [N, E] float32 (CPU)."""
        mentions = mentions.to(self.device, self.score_dtype)
        rows = []
        for _, _, chunk in self.entity_chunks(world):
            rows.append(self.model.score_all(mentions, chunk).float().cpu())  # [N, chunk]
        return torch.cat(rows, dim=1)

    @torch.no_grad()
    def search(self, world: str, mentions: Representation, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-k entities of `world` for each mention -> (scores [N, k'], row indices [N, k']), k' = min(k, E)."""
        entry = self.worlds[world]
        k = min(k, len(entry))
        if entry.faiss_index is not None and self.backend != "faiss":  # shortlist, then exact rescoring
            _, rows = self.shortlist(world, mentions, max(k, self.shortlist_size or k))
            return self.rescore(world, mentions, rows, k)
        if entry.faiss_index is not None:
            scores, ids = entry.faiss_index.search(mentions.vectors[:, 0].float(), k)
            return torch.as_tensor(scores), torch.as_tensor(ids).long()
        mentions = mentions.to(self.device, self.score_dtype)
        best_scores = best_ids = None
        for start, _, chunk in self.entity_chunks(world):
            scores = self.model.score_all(mentions, chunk).float()  # [N, chunk]
            ids = torch.arange(start, start + scores.shape[1], device=scores.device).expand_as(scores)
            if best_scores is not None:
                scores, ids = torch.cat([best_scores, scores], 1), torch.cat([best_ids, ids], 1)
            best_scores, pos = scores.topk(min(k, scores.shape[1]), dim=1)
            best_ids = ids.gather(1, pos)
        return best_scores.cpu(), best_ids.cpu()

    @torch.no_grad()
    def shortlist(self, world: str, mentions: Representation, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The ``size`` best entities by the first-token score ``E_1(x)^T F_1(y)`` -> (scores, rows) [N, size']."""
        entry = self.worlds[world]
        if entry.faiss_index is None or self.backend == "faiss":
            raise ValueError("shortlist needs an index built with shortlist_size set (and backend='exact')")
        scores, rows = entry.faiss_index.search(mentions.vectors[:, 0].float(), min(size, len(entry)))
        return torch.as_tensor(scores), torch.as_tensor(rows).long()

    @torch.no_grad()
    def rescore(
        self, world: str, mentions: Representation, rows: torch.Tensor, k: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Score each mention exactly against its own shortlist ``rows`` [N, S] (-1 = none) and keep the top k.

        Returns (scores [N, k'], rows [N, k']) with k' = min(k, S); slots without a candidate hold (-inf, -1).
        """
        entry = self.worlds[world]
        num_mentions, size = rows.shape
        k = min(k, size)
        per_chunk = max(1, self.chunk_size // max(size, 1))  # bound memory at ~chunk_size scored pairs
        out_scores, out_rows = [], []
        for start in range(0, num_mentions, per_chunk):
            block = rows[start : start + per_chunk]
            valid = block >= 0
            candidates = entry.representation.index_select(block.clamp(min=0).reshape(-1))
            scores = (
                self.model.score_pairs(
                    mentions[start : start + per_chunk].to(self.device, self.score_dtype),
                    candidates.to(self.device, self.score_dtype),
                )
                .float()
                .cpu()
            )  # [B, S]
            scores = scores.masked_fill(~valid, float("-inf"))
            top, pos = scores.topk(k, dim=1)
            out_scores.append(top)
            out_rows.append(torch.where(torch.isfinite(top), block.gather(1, pos), -1))
        return torch.cat(out_scores), torch.cat(out_rows)

    # ------------------------------------------------------------- persistence
    def save(self, directory: str | Path) -> Path:
        """Write every world's entity ids, representation (in the store dtype) and FAISS index to ``directory``,
        atomically (layout and checks: :func:`~hf_models.index.index_storage.save_worlds`)."""
        settings = {
            "backend": self.backend,
            "faiss_kind": self.faiss_kind,
            "shortlist_size": self.shortlist_size,
            "store_dtype": str(self.store_dtype).removeprefix("torch."),
        }
        return save_worlds(self.worlds, directory, settings)

    def load(self, directory: str | Path, verify_checksums: bool = True) -> EntityIndex:
        """Read worlds written by :meth:`save` into ``self.worlds``, checked against the manifest
        (:func:`~hf_models.index.index_storage.load_worlds`). The saved FAISS indices are reused when this index searches
        with FAISS; otherwise they are rebuilt or skipped as this index's settings say."""
        worlds, meta = load_worlds(directory, self.show_progress, verify_checksums)
        for world, (entry, sub) in worlds.items():
            entry.faiss_index = self._load_faiss(sub / "faiss", entry.representation, meta)
            self.worlds[world] = entry
        return self

    def _load_faiss(self, path: Path, rep: Representation, meta: dict):
        same_kind = (meta["backend"], meta["faiss_kind"], meta.get("shortlist_size") is not None) == (
            self.backend,
            self.faiss_kind,
            self.shortlist_size is not None,
        )
        if same_kind and path.exists():
            from .faiss_backend import FaissIndex

            options = self.faiss_options
            return FaissIndex.load(
                path,
                use_gpu=options.get("use_gpu"),
                nprobe=options.get("nprobe"),
                ef_search=options.get("ef_search"),
                num_entities=len(rep),
            )
        return self._build_faiss(rep)


def resolve_score_dtype(score_dtype: str, config, autocast_dtype: torch.dtype | None) -> torch.dtype:
    """Map "auto" | "float32" | "bfloat16" | "float16" to the dtype scoring products run in (see EntityIndex)."""
    if score_dtype in ("float32", "bfloat16", "float16"):
        return getattr(torch, score_dtype)
    if score_dtype != "auto":
        raise ValueError(f"score_dtype must be auto, float32, bfloat16 or float16, got {score_dtype!r}")
    one_query_vector = getattr(config, "num_query_vectors", 1) == 1  # dual, multi-m, poly-m: cheap, exact
    return torch.float32 if one_query_vector or autocast_dtype is None else autocast_dtype


def _same_source(
    entry: WorldEntities, entity_ids: Sequence[str], state: tuple, input_ids: torch.Tensor, mask: torch.Tensor
) -> bool:
    if entry.source is None:
        return False
    old_state, old_ids, old_mask = entry.source
    return (
        old_state == state
        and entry.entity_ids == list(entity_ids)
        and old_ids.shape == input_ids.shape
        and torch.equal(old_ids, input_ids)
        and torch.equal(old_mask, mask)
    )


def topk_recall(approx_rows: torch.Tensor, exact_rows: torch.Tensor) -> float:
    """Mean fraction of each row's exact top-k ids (``exact_rows`` [N, k]) found in ``approx_rows`` [N, k']."""
    hits = [
        len(set(a) & set(e)) / max(len(e), 1)
        for a, e in zip(approx_rows.tolist(), exact_rows.tolist(), strict=True)
    ]
    return sum(hits) / max(len(hits), 1)


def _check_shortlist(config, backend: str, size: int) -> None:
    """The first-token pre-filter needs E_1(x) and F_1(y): leftmost reductions on both sides, backend exact."""
    if backend != "exact":
        raise ValueError(
            "shortlist_size is the exact backend's pre-filter; with backend='faiss' leave it None"
        )
    if size <= 0:
        raise ValueError(f"shortlist_size must be positive, got {size}")
    if config.query_reduction != "leftmost" or config.key_reduction != "leftmost":
        raise ValueError(
            f"shortlist_size needs first-token vectors on both sides; architecture {config.architecture!r} "
            f"reduces with {config.query_reduction!r} / {config.key_reduction!r}"
        )


def _is_dot_product(config) -> bool:
    """dual and multi-m: one mention vector (leftmost, mean or span), leftmost entity vectors (or one mean vector), hard
    (max) attention."""
    return (
        config.direction == "mention_to_entity"
        and config.num_query_vectors == 1
        and config.query_reduction in ("leftmost", "mean", "span")
        and config.key_reduction in ("leftmost", "mean")
        and config.num_key_vectors is not None
        and (config.attention == "hard" or config.num_key_vectors == 1)
    )
