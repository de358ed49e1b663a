"""Pure tensor functions of the general score function, eq. (9) of Zhang & Stratos (2021).

One equation, one function:

* :func:`code_reduction` -- the poly-encoder reduction ``K = E(x) Soft(E(x)^T O)`` (Section 4.2).
* :func:`mean_reduction` -- one vector, the mean of the unmasked tokens (sentence-transformers' mean pooling; an
  extension of eq. (9)'s reductions, not in the paper).
* :func:`cosine_vectors` -- the L2-normalized (optionally scaled) vectors of the cosine similarity option.
* :func:`general_score` -- eq. (9) for paired inputs (each mention against its own C candidates).
* :func:`all_pairs_score` -- eq. (9) for every (query, key) pair of two sets, chunked.

Eq. (9) reads ``s = 1_m^T Q_m^T K_m' Attn(K_m'^T Q_m)``; as in every instance of Section 4.2 (and Appendix B's
genpoly-m), each query column t is scored against its own attended key, i.e.
``s = sum_t Q_t^T K Attn(K^T Q_t)``. Both :func:`general_score` and :func:`all_pairs_score` compute the query-key
interaction ``A[t, t'] = Q_t^T K_t'`` and hand it to the single reduction :func:`_reduce_interaction`.

This file is copied into saved model folders (``trust_remote_code``): it imports only torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

ATTENTIONS = ("soft", "hard")

# Upper bound on the elements of one [N, chunk, m, m'] interaction block when the chunk size is automatic
# (2**24 float32 values = 64 MiB; soft attention needs a few fp32 temporaries of that size). On a GPU the block may
# be up to 16x larger (2**28 values: 512 MiB in bf16, ~4 GiB of temporaries for soft attention), so that each chunk
# is one large matrix product, but never more than free memory / BYTES_PER_BLOCK_ELEMENT. A model's
# ``score_chunk_size`` (entities per chunk) overrides both.
DEFAULT_MAX_BLOCK_ELEMENTS = 2**24
GPU_MAX_BLOCK_ELEMENTS = 2**28
BYTES_PER_BLOCK_ELEMENT = 64  # ~4 fp32 temporaries of soft attention, x 4 headroom


def max_block_elements(device: torch.device) -> int:
    """The automatic interaction-block budget for ``device`` (see ``DEFAULT_MAX_BLOCK_ELEMENTS``)."""
    if device.type != "cuda" or not torch.cuda.is_available():
        return DEFAULT_MAX_BLOCK_ELEMENTS
    free, _ = torch.cuda.mem_get_info(device)
    return max(DEFAULT_MAX_BLOCK_ELEMENTS, min(GPU_MAX_BLOCK_ELEMENTS, free // BYTES_PER_BLOCK_ELEMENT))


@dataclass
class Representation:
    """One side of the score after reduction: ``vectors`` [N, L, H] and ``mask`` [N, L] (True = real column).

    dual keeps L=1, multi-m's entity side L=m, som all tokens, the poly mention side m codes.
    """

    vectors: torch.Tensor  # [N, L, H]
    mask: torch.Tensor  # [N, L] bool

    def __post_init__(self) -> None:
        if self.vectors.dim() < 3 or self.mask.shape != self.vectors.shape[:-1]:
            raise ValueError(
                f"Representation needs vectors [..., L, H] and mask [..., L]; got vectors "
                f"{tuple(self.vectors.shape)} and mask {tuple(self.mask.shape)}"
            )
        if self.mask.dtype != torch.bool:
            self.mask = self.mask.bool()

    def __len__(self) -> int:
        return self.vectors.shape[0]

    def __getitem__(self, index: int | slice | torch.Tensor) -> Representation:
        """Rows ``index`` (an int keeps the row axis)."""
        if isinstance(index, int):
            index = slice(index, index + 1 if index != -1 else None)
        return Representation(vectors=self.vectors[index], mask=self.mask[index])

    def index_select(self, index: torch.Tensor) -> Representation:
        """Rows ``index`` [K] -> Representation [K, L, H]."""
        index = index.to(self.vectors.device)
        return Representation(
            vectors=self.vectors.index_select(0, index), mask=self.mask.index_select(0, index)
        )

    def to(self, *args, **kwargs) -> Representation:
        """Move / cast the vectors like ``Tensor.to``; the mask only follows the device."""
        vectors = self.vectors.to(*args, **kwargs)
        return Representation(vectors=vectors, mask=self.mask.to(vectors.device))

    def view(self, *leading: int) -> Representation:
        """Reshape the row axes, e.g. [B*C, L, H] -> [B, C, L, H] with ``view(B, C)``."""
        length, hidden = self.vectors.shape[-2:]
        return Representation(
            vectors=self.vectors.reshape(*leading, length, hidden), mask=self.mask.reshape(*leading, length)
        )

    def pad_to(self, length: int) -> Representation:
        """Right-pad the column axis to ``length`` (mask False on the padding)."""
        extra = length - self.vectors.shape[-2]
        if extra <= 0:
            return self
        vectors = torch.nn.functional.pad(self.vectors, (0, 0, 0, extra))  # [..., length, H]
        mask = torch.nn.functional.pad(self.mask, (0, extra), value=False)  # [..., length]
        return Representation(vectors=vectors, mask=mask)

    @staticmethod
    def cat(reps: Sequence[Representation]) -> Representation:
        """Concatenate rows, right-padding the column axis to the longest."""
        length = max(rep.vectors.shape[-2] for rep in reps)
        padded = [rep.pad_to(length) for rep in reps]
        return Representation(
            vectors=torch.cat([rep.vectors for rep in padded]), mask=torch.cat([rep.mask for rep in padded])
        )


def _check(condition: bool, message: str, **tensors: torch.Tensor) -> None:
    """Raise ValueError(message + every tensor's shape) unless ``condition``."""
    if not condition:
        shapes = ", ".join(f"{name} {tuple(t.shape)}" for name, t in tensors.items())
        raise ValueError(f"{message}; got {shapes}")


def _check_attention(attention: str) -> None:
    if attention not in ATTENTIONS:
        raise ValueError(f"attention must be one of {ATTENTIONS}, got {attention!r}")


def _reduce_interaction(
    interaction: torch.Tensor,
    query_mask: torch.Tensor,
    key_mask: torch.Tensor,
    attention: str,
    keys_masked: bool = False,
) -> torch.Tensor:
    """The attention-and-sum part of eq. (9) on precomputed interactions ``A[.., t, t'] = Q_t^T K_t'`` (consumed).

    interaction [..., m, m'], query_mask broadcastable to [..., m], key_mask broadcastable to [..., m'] -> [...].
    Column t scores ``sum_t' Attn(A_t)_t' A_tt'`` (soft: softmax over unmasked keys; hard: the max over unmasked
    keys). Masked keys are never attended, masked query columns (and columns with no unmasked key) contribute 0.
    A low-precision (bf16/fp16) interaction is reduced with fp32 accumulation: the max is exact in any dtype, the
    softmax and the sum over query columns run in fp32; the result is fp32 then. ``keys_masked``: the caller already
    put a very negative finite value at every masked key (:func:`_key_product`), so no masking pass is made.
    """
    attended = interaction
    key_valid = key_mask.unsqueeze(-2)  # [..., 1, m']
    if not keys_masked:
        # In place: the interaction is a temporary of the caller (this saves a full-size copy and its page faults).
        attended = interaction.masked_fill_(~key_valid, torch.finfo(interaction.dtype).min)  # [..., m, m']
    if attention == "hard":  # keys of width 0 have no max: their columns are 0 (dropped below anyway)
        best = attended.amax(dim=-1) if attended.shape[-1] else attended.new_zeros(attended.shape[:-1])
        column = _accumulable(best)  # [..., m]
    else:  # masked keys get weight exactly 0; the value they weight is 0 too, so no gradient ever meets the fill
        attended = _accumulable(attended)
        values = torch.where(
            key_valid, attended, torch.zeros((), dtype=attended.dtype, device=attended.device)
        )
        column = (attended.softmax(dim=-1) * values).sum(dim=-1)  # [..., m]
    column_valid = query_mask & key_mask.any(dim=-1, keepdim=True)  # [..., m]
    return torch.where(column_valid, column, torch.zeros_like(column)).sum(dim=-1)  # [...]


def _accumulable(values: torch.Tensor) -> torch.Tensor:
    """bf16 / fp16 -> fp32 (the dtype sums accumulate in); other dtypes unchanged."""
    return values.float() if values.dtype in (torch.bfloat16, torch.float16) else values


def general_score(
    query: torch.Tensor,
    query_mask: torch.Tensor,
    key: torch.Tensor,
    key_mask: torch.Tensor,
    attention: str,
) -> torch.Tensor:
    """Eq. (9) for paired inputs: ``s = sum_t Q_t^T K Attn(K^T Q_t)`` for each query and each of its C keys.

    Args:
        query: Q_m [B, m, H]; query_mask [B, m] (False = padding column, contributes 0).
        key: K_m' [B, C, m', H]; key_mask [B, C, m'] (False = padding, never attended).
        attention: "soft" (softmax) or "hard" (one-hot argmax, i.e. sum-of-max).

    Returns:
        scores [B, C].
    """
    _check_attention(attention)
    _check(
        query.dim() == 3 and key.dim() == 4,
        "general_score needs query [B, m, H] and key [B, C, m', H]",
        query=query,
        key=key,
    )
    batch, num_query, hidden = query.shape
    _check(
        key.shape[0] == batch and key.shape[-1] == hidden,
        "general_score: query and key disagree on B or H",
        query=query,
        key=key,
    )
    _check(
        query_mask.shape == (batch, num_query),
        "query_mask must be [B, m]",
        query=query,
        query_mask=query_mask,
    )
    _check(key_mask.shape == key.shape[:-1], "key_mask must be [B, C, m']", key=key, key_mask=key_mask)
    interaction = torch.einsum("bqh,bckh->bcqk", query, key)  # [B, C, m, m']
    return _reduce_interaction(
        interaction, query_mask.bool()[:, None, :], key_mask.bool(), attention
    )  # [B, C]


def _auto_chunk_size(num_query_rows: int, num_query: int, num_key: int, max_elements: int) -> int:
    """Keys per chunk so that one [N, chunk, m, m'] interaction block holds at most ``max_elements`` values."""
    return max(1, max_elements // max(1, num_query_rows * num_query * num_key))


def _with_mask_coordinate(vectors: torch.Tensor, column: torch.Tensor) -> torch.Tensor:
    """[R, L, H] vectors and one extra coordinate per vector ``column`` [R, L] -> [R L, H'] rows, H' = H + 1..8.

    The extra coordinate is followed by zeros up to a multiple of 8 (tensor-core friendly shapes); the product of two
    such rows is the product of the originals plus the product of their extra coordinates.
    """
    rows, width, hidden = vectors.shape
    extra = vectors.new_zeros(rows, width, 8 - hidden % 8)
    extra[..., 0] = column
    return torch.cat([vectors, extra], dim=-1).reshape(rows * width, hidden + extra.shape[-1])


def _prefills_masked_keys(dtype: torch.dtype) -> bool:
    """Whether masked keys can be pushed below every real interaction inside the product (-max/2 of the dtype):
    yes for fp32 / fp64 / bf16 (max ~1e38 or more); not for fp16 (max 65,504), which keeps the masking pass."""
    return torch.finfo(dtype).max > 1e30


def _key_product(
    query_rows: torch.Tensor, shape: tuple[int, int], key: torch.Tensor, key_mask: torch.Tensor, prefill: bool
) -> torch.Tensor:
    """All interactions ``Q_t^T K_t'`` of N queries and c keys as ONE matrix product.

    query_rows [N m, H'] (the queries through :func:`_with_mask_coordinate` with extra coordinate 1), shape (N, m),
    key [c, m', H], key_mask [c, m'] -> [N, c, m, m'] (a transposed view of [N, m, c, m']). A key's extra
    coordinate is 0, or -max/2 of the dtype where masked (``prefill``, see :func:`_prefills_masked_keys`), so real interactions
    are unchanged (+ 1 x 0) and every masked one is a very negative finite value straight out of the product: the
    reduction needs no masking pass over the block, and each chunk is one large product.
    """
    c, width, _ = key.shape
    # whatever the padding holds (NaN too) never reaches the block
    key = key.masked_fill(~key_mask[..., None], 0.0)
    column = key.new_zeros(key_mask.shape)  # [c, m'], in the key's dtype
    if prefill:
        column.masked_fill_(~key_mask, -0.5 * torch.finfo(key.dtype).max)
    key_rows = _with_mask_coordinate(key, column)  # [c m', H']
    return (query_rows @ key_rows.T).view(shape[0], shape[1], c, width).transpose(1, 2)  # [N, c, m, m']


def _used_widths(mask: torch.Tensor) -> torch.Tensor:
    """Per row [N, L] -> [N]: one past the last real column (0 for an all-padding row)."""
    if mask.shape[-1] == 0:
        return torch.zeros(mask.shape[0], dtype=torch.long, device=mask.device)
    positions = torch.arange(1, mask.shape[-1] + 1, device=mask.device)  # [L]
    return (mask.long() * positions).amax(dim=-1)


def all_pairs_score(
    query: torch.Tensor,
    query_mask: torch.Tensor,
    key: torch.Tensor,
    key_mask: torch.Tensor,
    attention: str,
    chunk_size: int | None = None,
) -> torch.Tensor:
    """Eq. (9) for every (query, key) pair, chunked over the keys so memory stays bounded.

    Padding costs (almost) nothing: the queries are grouped by length (:func:`_length_groups`), each group trimmed to
    its longest query, and the keys are visited in order of length (longest first), each chunk trimmed to its
    longest key; the scores come back in the input order.
    Under autocast (bf16/fp16) the interactions are low-precision products reduced with fp32 accumulation
    (:func:`_reduce_interaction`).

    Args:
        query: [N, m, H]; query_mask [N, m].
        key: [E, m', H]; key_mask [E, m'].
        attention: "soft" or "hard".
        chunk_size: keys per chunk; None picks, per chunk, as many keys as keep its [N, chunk, m, width] block
            within :func:`max_block_elements` values (more on a GPU).

    Returns:
        scores [N, E]. With m = m' = 1 this is a plain masked matmul (the dual encoder).
    """
    _check_attention(attention)
    _check(
        query.dim() == 3 and key.dim() == 3,
        "all_pairs_score needs query [N, m, H] and key [E, m', H]",
        query=query,
        key=key,
    )
    _check(
        query.shape[-1] == key.shape[-1], "all_pairs_score: query and key disagree on H", query=query, key=key
    )
    _check(
        query_mask.shape == query.shape[:-1], "query_mask must be [N, m]", query=query, query_mask=query_mask
    )
    _check(key_mask.shape == key.shape[:-1], "key_mask must be [E, m']", key=key, key_mask=key_mask)
    query_mask, key_mask = query_mask.bool(), key_mask.bool()
    if query.shape[1] == 1 and key.shape[1] == 1:  # dual: E_1(x)^T F_1(y)
        valid = query_mask[:, :1] & key_mask[:, 0][None, :]  # [N, E]
        scores = query[:, 0] @ key[:, 0].T  # [N, E]
        return torch.where(valid, scores, torch.zeros_like(scores))
    if chunk_size is not None and chunk_size <= 0:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    if key.shape[0] == 0:
        return _accumulable(query.new_zeros(query.shape[0], 0))
    if torch.is_autocast_enabled(query.device.type):  # cast once here, not in every chunk's product
        dtype = torch.get_autocast_dtype(query.device.type)
        query, key = query.to(dtype), key.to(dtype)
    if query.shape[0] == 0:  # nothing to score; keep the graph (a caller may backpropagate an empty loss)
        return _accumulable(query.new_zeros(0, key.shape[0]) + 0 * (query.sum() + key.sum()))
    keys = _KeyOrder(
        key, key_mask, chunk_size, _prefills_masked_keys(key.dtype), max_block_elements(query.device)
    )
    query_widths = _used_widths(query_mask)  # [N]
    query_order = torch.sort(query_widths, descending=True, stable=True).indices  # [N], longest queries first
    groups = _length_groups(query_order, query_widths[query_order].tolist())
    if len(groups) == 1:  # e.g. full-width queries: score them in place, no gather
        return keys.score(query, query_mask, attention)[:, _inverse(keys.order)]  # [N, E], input order
    parts = [keys.score(query[rows], query_mask[rows], attention) for rows in groups]  # [n_g, E], key order
    return torch.cat(parts)[_inverse(query_order)][:, _inverse(keys.order)]  # [N, E], input order


def _inverse(order: torch.Tensor) -> torch.Tensor:
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(len(order), device=order.device)
    return inverse


def _length_groups(order: torch.Tensor, widths: list[int], min_rows: int = 32, shrink: float = 0.75) -> list:
    """Cut rows sorted by width (longest first) into groups, each trimmed later to its own widest row: a group
    closes once it has ``min_rows`` rows (enough for an efficient product) and the next row is at most ``shrink``
    x its widest. Full-width queries make one group; ragged ones stop paying for the longest's padding."""
    groups, start = [], 0
    for i in range(1, len(widths) + 1):
        if i == len(widths) or (i - start >= min_rows and widths[i] <= shrink * widths[start]):
            groups.append(order[start:i])
            start = i
    return groups


class _KeyOrder:
    """The keys of :func:`all_pairs_score` visited longest first, each chunk trimmed to its longest key."""

    def __init__(self, key, key_mask, chunk_size: int | None, prefill: bool, budget: int) -> None:
        self.key, self.key_mask, self.chunk_size = key, key_mask, chunk_size
        self.prefill, self.budget = prefill, budget  # prefill: else the reduction masks the keys itself
        widths = _used_widths(key_mask)  # [E]
        self.order = torch.sort(widths, descending=True, stable=True).indices  # [E]
        self.widths = widths[self.order].tolist()

    def score(self, query: torch.Tensor, query_mask: torch.Tensor, attention: str) -> torch.Tensor:
        """Queries [n, m, H] / [n, m] -> [n, E] with the keys in ``self.order``."""
        used = max(int(_used_widths(query_mask).max()), 1)
        query, query_mask = query[:, :used], query_mask[:, :used]  # [n, m_used, H]
        query_rows = _with_mask_coordinate(
            query.masked_fill(~query_mask[..., None], 0.0), torch.ones_like(query[..., 0])
        )  # [n m_used, H'], built once; padded columns zeroed (scores dropped, no NaN reaches a gradient)
        parts, start = [], 0
        while start < len(self.widths):
            width = max(self.widths[start], 1)
            rows = self.chunk_size or _auto_chunk_size(query.shape[0], used, width, self.budget)
            index = self.order[start : start + rows]
            block_key, block_mask = self.key[index, :width], self.key_mask[index, :width]  # [c, width, (H)]
            # [n, c, m_used, width]
            interaction = _key_product(query_rows, query.shape[:2], block_key, block_mask, self.prefill)
            parts.append(
                _reduce_interaction(
                    interaction,
                    query_mask[:, None, :],
                    block_mask[None, :, :],
                    attention,
                    keys_masked=self.prefill,
                )  # [n, c]
            )
            start += rows
        return torch.cat(parts, dim=1)


def code_reduction(hidden: torch.Tensor, mask: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """The poly-encoder reduction ``K_m = E(x) Soft(E(x)^T O)`` (Section 4.2), softmax over unmasked tokens.

    Args:
        hidden: token embeddings E(x) [N, T, H]; mask [N, T] (False = padding, never attended).
        codes: learned code embeddings O [m, H].

    Returns:
        [N, m, H]: column j is the attention-weighted average of the tokens for code j (zeros for an empty row).
    """
    _check(
        hidden.dim() == 3 and codes.dim() == 2,
        "code_reduction needs hidden [N, T, H] and codes [m, H]",
        hidden=hidden,
        codes=codes,
    )
    _check(
        hidden.shape[-1] == codes.shape[-1],
        "code_reduction: hidden and codes disagree on H",
        hidden=hidden,
        codes=codes,
    )
    _check(mask.shape == hidden.shape[:-1], "mask must be [N, T]", hidden=hidden, mask=mask)
    valid = mask.bool()[:, :, None]  # [N, T, 1]
    logits = torch.einsum("nth,mh->ntm", hidden, codes)  # [N, T, m]
    logits = logits.masked_fill(~valid, torch.finfo(logits.dtype).min)
    weights = logits.softmax(dim=1) * valid  # [N, T, m]; an all-padding row gets weight 0 everywhere
    return torch.einsum("ntm,nth->nmh", weights, hidden.masked_fill(~valid, 0.0))  # [N, m, H]


def mean_reduction(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean pooling: one vector per row, the average of its unmasked token embeddings (not in the paper).

    sentence-transformers' default pooling, offered as a third reduction of eq. (9) beside "leftmost" and "codes"
    (``query_reduction`` / ``key_reduction`` = "mean" with m = 1).

    Args:
        hidden: token embeddings [N, T, H]; mask [N, T] (False = padding, excluded from the mean).

    Returns:
        [N, 1, H] (zeros for an all-padding row).
    """
    _check(hidden.dim() == 3, "mean_reduction needs hidden [N, T, H]", hidden=hidden)
    _check(mask.shape == hidden.shape[:-1], "mask must be [N, T]", hidden=hidden, mask=mask)
    valid = mask.bool()[:, :, None]  # [N, T, 1]
    total = hidden.masked_fill(~valid, 0.0).sum(dim=1, keepdim=True)  # [N, 1, H]
    count = valid.sum(dim=1, keepdim=True).clamp(min=1).to(hidden.dtype)  # [N, 1, 1]
    return total / count


def cosine_vectors(vectors: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """``scale * v / ||v||`` for every vector [..., H] (zero vectors stay zero): inner products of such vectors are
    ``scale`` times cosine similarities (the "cosine" similarity option; not in the paper)."""
    return torch.nn.functional.normalize(vectors, p=2.0, dim=-1) * scale
