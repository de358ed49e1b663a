"""Eq. (9) of Zhang & Stratos (2021) for every (query, key) pair of two sets: the chunked all-pairs engine.

:func:`all_pairs_score` is what scores mentions against a whole world (mining, evaluation, linking). It computes the
same interactions as :func:`.scoring.general_score` and hands them to the same reduction
(:func:`.scoring._reduce_interaction`), but as few large matrix products: queries grouped by length, keys visited
longest first in chunks bounded by :func:`max_block_elements`, masked keys pushed below every real interaction
inside the product itself.

This file is copied into saved model folders (``trust_remote_code``): it imports only torch and ``scoring``.
"""

from __future__ import annotations

import torch

from .scoring import _accumulable, _check, _check_attention, _reduce_interaction

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
