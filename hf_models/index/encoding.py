"""Batched encoding of token rows into :class:`Representation` tables: length-sorted, token-budgeted, bf16-aware.

:func:`encode_in_batches` is what :class:`~hf_models.index.entity_index.EntityIndex` (mining, evaluation, linking) runs
over every world's entities and every chunk of mentions. Rows are ordered by length (longest first), cut into
batches under a *token budget* (rows x the batch's longest row), each batch trimmed to its longest row, and the
results are written back in the caller's row order into one preallocated table (no per-batch concatenation).
Short texts therefore fill large batches and never pay for a long neighbour's padding.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from functools import lru_cache

import torch

from ..modeling.scoring import Representation
from ..progress import tqdm

EncodeFn = Callable[[torch.Tensor, torch.Tensor], Representation]


@lru_cache(maxsize=1)
def cpu_has_fast_bf16() -> bool:
    """True when the CPU has native bf16 dot products: AMX-BF16 tiles or AVX512-BF16 (``vdpbf16ps``).

    Without either, bf16 products of the torch 2.13 CPU wheel fall back to ATen's reference GEMM: on an AVX2-only
    AMD EPYC a bf16 [4096 x 384] @ [384 x 1536] product runs at ~1 GFLOP/s vs ~100 GFLOP/s in fp32, MiniLM encoding
    under bf16 autocast was ~6x SLOWER than fp32 (256 x 32 tokens, 42 s vs 7 s) and training ~13x slower, so
    "auto" keeps fp32 there. With AVX512-BF16 (an AMD EPYC with avx512_bf16, no AMX) MiniLM encoding of 512 wsd_dev
    glosses at 64 wordpieces ran 3.2x FASTER in bf16 autocast than in fp32 (35 vs 11 rows/s, one thread).
    """
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


def length_sorted_batches(lengths: torch.Tensor, max_tokens: int) -> list[torch.Tensor]:
    """Cut rows into batches by length, longest first, each holding at most ``max_tokens`` padded tokens.

    Args:
        lengths: [N] real tokens per row.
        max_tokens: budget of one batch, counted as rows x the batch's longest row (a row longer than the
            budget still gets a batch of its own).

    Returns:
        row indices per batch; together they cover every row exactly once. The first row of each batch is its
        longest, and the first batch holds the longest row overall.
    """
    if max_tokens <= 0:
        raise ValueError(f"max_tokens must be positive, got {max_tokens}")
    order = torch.sort(lengths.long(), descending=True, stable=True).indices  # [N]
    widths = lengths.long()[order].clamp(min=1).tolist()
    batches, start = [], 0
    while start < len(widths):
        rows = max(1, max_tokens // widths[start])
        batches.append(order[start : start + rows])
        start += rows
    return batches


def encode_in_batches(
    encode_fn: EncodeFn,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    *,
    batch_size: int,
    device: torch.device,
    autocast_dtype: torch.dtype | None = None,
    store_dtype: torch.dtype = torch.float32,
    max_tokens: int | None = None,
    inference_mode: bool = True,
    desc: str = "encoding",
    show_progress: bool = True,
) -> Representation:
    """Encode [N, T] token ids -> Representation on CPU, rows in the input order.

    Rows are length-sorted and batched under a budget of ``max_tokens`` padded tokens per batch (default
    ``batch_size * T``: never more memory than ``batch_size`` full-width rows); each batch is trimmed to its
    longest row. The column axis is as wide as the widest batch needs: 1 for dual, m for leftmost-m / code
    reductions, the longest sequence for all-token (som) sides. Never wider: a padded dual would lose the
    one-matmul path. ``inference_mode=False`` runs the encoder under ``torch.no_grad`` instead.
    """
    n_rows, full_width = input_ids.shape  # input_ids [N, T]
    if n_rows == 0:
        raise ValueError("nothing to encode: got 0 rows")
    lengths = attention_mask.sum(dim=1)  # [N]
    batches = length_sorted_batches(lengths, max_tokens or batch_size * full_width)
    vectors = mask = None  # the output table [N, L, H] / [N, L], allocated from the first (widest) batch
    for rows in tqdm(batches, desc=desc, disable=not show_progress or len(batches) < 2, leave=False):
        width = max(int(lengths[rows[0]]), 1)
        ids, row_mask = (
            input_ids[rows, :width].to(device),
            attention_mask[rows, :width].to(device),
        )  # [b, width]
        # The encoder runs in inference mode; the table it fills is an ordinary tensor (callers may edit it).
        no_grad = torch.inference_mode() if inference_mode else torch.no_grad()
        with no_grad, autocast_for(device, autocast_dtype):
            rep = encode_fn(ids, row_mask)
        with torch.no_grad():
            part = rep.vectors.to("cpu", store_dtype)  # [b, L_b, H]
            if vectors is None or part.shape[1] > vectors.shape[1]:
                vectors, mask = _widen(vectors, mask, n_rows, part)
            vectors[rows, : part.shape[1]] = part
            mask[rows, : part.shape[1]] = rep.mask.to("cpu")
    return Representation(vectors=vectors, mask=mask)


def _widen(
    vectors: torch.Tensor | None, mask: torch.Tensor | None, n_rows: int, part: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """A zero table [n_rows, L, H] wide enough for ``part`` [b, L, H], keeping what ``vectors`` already holds."""
    new_vectors = part.new_zeros((n_rows, *part.shape[1:]))
    new_mask = torch.zeros(n_rows, part.shape[1], dtype=torch.bool)
    if vectors is not None:
        new_vectors[:, : vectors.shape[1]] = vectors
        new_mask[:, : mask.shape[1]] = mask
    return new_vectors, new_mask


def model_state_key(model: torch.nn.Module) -> tuple:
    """A key that changes whenever the model's weights change: per parameter, its storage, its in-place version
    counter (bumped by optimizer steps and ``load_state_dict``) and its float64 sum (catches edits through
    ``.data``, which bypass the counter). Cost: one pass over the weights, negligible next to any encoding.
    """
    params = [p.detach() for p in model.parameters()]
    with torch.no_grad():
        sums = torch.stack([p.sum(dtype=torch.float64) for p in params]).tolist() if params else []
    return tuple((p.data_ptr(), p._version, total) for p, total in zip(params, sums, strict=True))
