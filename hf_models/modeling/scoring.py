"""Pure tensor functions of the general score function, eq. (9) of Zhang & Stratos (2021).

One equation, one function:

* :func:`code_reduction` -- the poly-encoder reduction ``K = E(x) Soft(E(x)^T O)`` (Section 4.2).
* :func:`span_token_mask` -- the mention's own tokens (between its markers), averaged by the "span" reduction;
* :func:`mean_reduction` -- one vector, the mean of the unmasked tokens (sentence-transformers' mean pooling; an
  extension of eq. (9)'s reductions, not in the paper).
* :func:`cosine_vectors` -- the L2-normalized (optionally scaled) vectors of the cosine similarity option.
* :func:`general_score` -- eq. (9) for paired inputs (each mention against its own C candidates).
* :func:`.all_pairs.all_pairs_score` (its own file) -- eq. (9) for every (query, key) pair of two sets, chunked.

Eq. (9) reads ``s = 1_m^T Q_m^T K_m' Attn(K_m'^T Q_m)``; as in every instance of Section 4.2 (and Appendix B's
genpoly-m), each query column t is scored against its own attended key, i.e.
``s = sum_t Q_t^T K Attn(K^T Q_t)``. Both :func:`general_score` and :func:`.all_pairs.all_pairs_score` compute the
query-key interaction ``A[t, t'] = Q_t^T K_t'`` and hand it to the single reduction :func:`_reduce_interaction`.

This file is copied into saved model folders (``trust_remote_code``): it imports only torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

ATTENTIONS = ("soft", "hard")


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


def span_token_mask(input_ids: torch.Tensor, mask: torch.Tensor, start_id: int, end_id: int) -> torch.Tensor:
    """The tokens of the mention itself: those after the first ``start_id`` marker and before the next ``end_id``.

    The "span" reduction averages these (:func:`mean_reduction` over this mask): the mention's own contextual
    token embeddings, as word-sense and entity-linking bi-encoders represent a marked word (not in the paper). A row
    without a marked, non-empty span keeps its whole ``mask`` (it is then reduced like "mean").

    Args:
        input_ids: token ids [N, T]; mask [N, T] (False = padding).

    Returns:
        bool [N, T].
    """
    _check(
        input_ids.shape == mask.shape,
        "input_ids and mask must both be [N, T]",
        input_ids=input_ids,
        mask=mask,
    )
    mask = mask.bool()
    started = (input_ids == start_id).long().cumsum(dim=1) > 0  # [N, T] at or after the first start marker
    ended = ((input_ids == end_id) & started).long().cumsum(dim=1) > 0  # [N, T] at or after its end marker
    span = started & ~ended & (input_ids != start_id) & mask  # [N, T]
    return torch.where(span.any(dim=1, keepdim=True), span, mask)


def cosine_vectors(vectors: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """``scale * v / ||v||`` for every vector [..., H] (zero vectors stay zero): inner products of such vectors are
    ``scale`` times cosine similarities (the "cosine" similarity option; not in the paper)."""
    return torch.nn.functional.normalize(vectors, p=2.0, dim=-1) * scale
