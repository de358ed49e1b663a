"""The pure eq. (9) functions against literal per-pair loops (float64, random tensors, padding)."""

from __future__ import annotations

import pytest
import torch

from hf_models.modeling.all_pairs import (
    BYTES_PER_BLOCK_ELEMENT,
    DEFAULT_MAX_BLOCK_ELEMENTS,
    GPU_MAX_BLOCK_ELEMENTS,
    _length_groups,
    all_pairs_score,
    max_block_elements,
)
from hf_models.modeling.scoring import Representation, code_reduction, general_score

H = 8


def _random_side(rows: int, length: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """vectors [rows, length, H] and a right-padded mask with at least one real column per row."""
    vectors = torch.randn(rows, length, H, generator=generator, dtype=torch.float64)
    lengths = torch.randint(1, length + 1, (rows,), generator=generator)
    mask = torch.arange(length)[None, :] < lengths[:, None]
    return vectors, mask


def reference_pair(
    q: torch.Tensor, qm: torch.Tensor, k: torch.Tensor, km: torch.Tensor, attention: str
) -> float:
    """sum over real query columns t of Q_t^T K Attn(K^T Q_t), written column by column."""
    keys = [k[j] for j in range(k.shape[0]) if km[j]]
    total = 0.0
    for t in range(q.shape[0]):
        if not qm[t]:
            continue
        logits = torch.stack([q[t] @ key for key in keys])  # [m'_real]
        weights = (
            torch.softmax(logits, 0)
            if attention == "soft"
            else torch.nn.functional.one_hot(logits.argmax(), len(keys))
        )
        attended = sum(w * key for w, key in zip(weights, keys, strict=True))  # K Attn(K^T Q_t)
        total += float(q[t] @ attended)
    return total


@pytest.mark.parametrize("attention", ["soft", "hard"])
@pytest.mark.parametrize(("m", "m_key"), [(1, 1), (1, 4), (3, 5), (4, 1)])
def test_general_and_all_pairs_match_reference(attention: str, m: int, m_key: int) -> None:
    gen = torch.Generator().manual_seed(m * 10 + m_key)
    query, qmask = _random_side(3, m, gen)
    key, kmask = _random_side(5, m_key, gen)
    expected = torch.tensor(
        [
            [reference_pair(query[n], qmask[n], key[e], kmask[e], attention) for e in range(5)]
            for n in range(3)
        ],
        dtype=torch.float64,
    )
    for chunk_size in (None, 1, 2):
        got = all_pairs_score(query, qmask, key, kmask, attention, chunk_size=chunk_size)
        torch.testing.assert_close(got, expected, atol=1e-10, rtol=1e-10)
    paired = general_score(
        query, qmask, key[None].expand(3, -1, -1, -1), kmask[None].expand(3, -1, -1), attention
    )  # every query against all 5 keys as its candidates
    torch.testing.assert_close(paired, expected, atol=1e-10, rtol=1e-10)


def _all_pairs_and_paired(query, qmask, key, kmask, attention: str, chunk_size: int) -> list:
    """[(scores [N, E], (query grad, key grad))] of all_pairs_score and of general_score over every key as a
    candidate, each backpropagating the same weights 0, 1, 2, ... (upstream gradients above 1)."""
    n, e = query.shape[0], key.shape[0]
    out = []
    for paired in (False, True):
        q, k = query.clone().requires_grad_(), key.clone().requires_grad_()
        if paired:
            got = general_score(
                q, qmask, k[None].expand(n, -1, -1, -1), kmask[None].expand(n, -1, -1), attention
            )
        else:
            got = all_pairs_score(q, qmask, k, kmask, attention, chunk_size=chunk_size)
        (got * torch.arange(n * e, dtype=got.dtype).view(n, e)).sum().backward()
        out.append((got.detach(), (q.grad, k.grad)))
    return out


@pytest.mark.parametrize("attention", ["soft", "hard"])
def test_length_grouped_queries_give_the_paired_scores_and_gradients(attention: str) -> None:
    """Enough ragged queries for several length groups: scores and gradients equal the paired path's, in order."""
    gen = torch.Generator().manual_seed(11)
    query, qmask = _random_side(100, 12, gen)
    key, kmask = _random_side(7, 6, gen)
    order = torch.sort(qmask.sum(1), descending=True, stable=True).indices
    groups = _length_groups(order, qmask.sum(1)[order].tolist())
    assert len(groups) > 1 and torch.equal(torch.cat(groups), order)
    assert all(len(g) >= 32 for g in groups[:-1])
    (scores, grads), (paired_scores, paired_grads) = _all_pairs_and_paired(
        query, qmask, key, kmask, attention, 3
    )
    torch.testing.assert_close(scores, paired_scores, atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(grads, paired_grads)


def test_length_groups_keep_full_width_queries_together() -> None:
    order = torch.arange(80)
    assert [len(g) for g in _length_groups(order, [16] * 80)] == [80]
    # a group closes after >= 32 rows, at the first row at most 0.75 x the group's widest: rows 40 and 72 here
    widths = [40] * 40 + [30] * 10 + [10] * 30
    assert [len(g) for g in _length_groups(order, widths)] == [40, 32, 8]
    assert _length_groups(order[:0], []) == []


@pytest.mark.parametrize("scale", [1.0, 1e100])
def test_hard_attention_is_sum_of_max(scale: float) -> None:
    """Also with interactions of ~1e200: a padded key (pre-filled inside the product) never wins the max."""
    gen = torch.Generator().manual_seed(1)
    query, qmask = _random_side(2, 4, gen)
    key, kmask = _random_side(3, 6, gen)
    query, key = query * scale, key * scale
    dots = torch.einsum("nqh,ekh->neqk", query, key).masked_fill(~kmask[None, :, None, :], -torch.inf)
    expected = (dots.amax(-1) * qmask[:, None, :]).sum(-1)
    torch.testing.assert_close(all_pairs_score(query, qmask, key, kmask, "hard"), expected)


def test_interaction_block_budget_is_larger_on_a_gpu_within_its_free_memory(monkeypatch) -> None:
    assert max_block_elements(torch.device("cpu")) == DEFAULT_MAX_BLOCK_ELEMENTS
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (80 * 2**30, 80 * 2**30))
    assert max_block_elements(torch.device("cuda")) == GPU_MAX_BLOCK_ELEMENTS > DEFAULT_MAX_BLOCK_ELEMENTS
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (2 * 2**30, 16 * 2**30))
    assert max_block_elements(torch.device("cuda")) == 2 * 2**30 // BYTES_PER_BLOCK_ELEMENT


@pytest.mark.parametrize("attention", ["soft", "hard"])
def test_empty_sides_give_empty_or_zero_scores(attention: str) -> None:
    gen = torch.Generator().manual_seed(4)
    key, kmask = _random_side(3, 4, gen)
    query = key[:0].clone().requires_grad_()
    none = all_pairs_score(query, kmask[:0], key, kmask, attention)
    assert none.shape == (0, 3)
    none.sum().backward()  # an empty batch still backpropagates (zero gradient)
    assert query.grad is not None and query.grad.shape == (0, 4, H)
    narrow = all_pairs_score(key[:, :0], kmask[:, :0], key, kmask, attention)  # queries of width 0
    assert torch.equal(narrow, torch.zeros(3, 3, dtype=narrow.dtype))
    for keyless in (  # keys of width 0, both paths
        all_pairs_score(key, kmask, key[:, :0], kmask[:, :0], attention),
        general_score(
            key,
            kmask,
            key[None, :, :0].expand(3, -1, -1, -1),
            kmask[None, :, :0].expand(3, -1, -1),
            attention,
        ),
    ):
        assert torch.equal(keyless, torch.zeros(3, 3, dtype=keyless.dtype))


def test_fp16_keeps_masked_keys_out_of_the_max_below_its_range() -> None:
    """fp16 cannot hold a value below every real interaction, so its masked keys take the masking pass."""
    query = torch.full((1, 1, H), -40.0)
    key = torch.stack([torch.full((2, H), 120.0)])  # [1 key, 2 columns, H]; the second column is padding
    key_mask = torch.tensor([[True, False]])
    got = all_pairs_score(query.half(), torch.ones(1, 1, dtype=torch.bool), key.half(), key_mask, "hard")
    assert got.item() == -38400.0  # 8 x -40 x 120, not the padding's value


@pytest.mark.parametrize("attention", ["soft", "hard"])
def test_all_pairs_gradients_equal_the_paired_path(attention: str) -> None:
    """Upstream gradients above 1 (a loss scale, weights) once met the masking fill in the soft path: NaN."""
    gen = torch.Generator().manual_seed(5)
    query, qmask = _random_side(3, 4, gen)
    key, kmask = _random_side(5, 6, gen)
    (_, grads), (_, paired_grads) = _all_pairs_and_paired(query, qmask, key, kmask, attention, 2)
    torch.testing.assert_close(grads, paired_grads)


@pytest.mark.parametrize("attention", ["soft", "hard"])
def test_padding_cannot_change_scores(attention: str) -> None:
    gen = torch.Generator().manual_seed(2)
    query, qmask = _random_side(3, 4, gen)
    key, kmask = _random_side(4, 5, gen)
    base = all_pairs_score(query, qmask, key, kmask, attention)
    garbage_q = query.masked_fill(~qmask[..., None], 1e6)  # huge values under the padding
    garbage_k = key.masked_fill(~kmask[..., None], float("nan"))
    torch.testing.assert_close(all_pairs_score(garbage_q, qmask, garbage_k, kmask, attention), base)
    longer_q, longer_k = Representation(query, qmask).pad_to(7), Representation(key, kmask).pad_to(9)
    torch.testing.assert_close(
        all_pairs_score(longer_q.vectors, longer_q.mask, longer_k.vectors, longer_k.mask, attention), base
    )


def test_fully_masked_key_contributes_zero_and_no_nan_gradient() -> None:
    query = torch.randn(2, 3, H, dtype=torch.float64, requires_grad=True)
    key = torch.randn(2, 2, 4, H, dtype=torch.float64, requires_grad=True)
    kmask = torch.ones(2, 2, 4, dtype=torch.bool)
    kmask[0, 1] = False  # one candidate with no real column
    scores = general_score(query, torch.ones(2, 3, dtype=torch.bool), key, kmask, "soft")
    assert scores[0, 1] == 0
    scores.sum().backward()
    assert torch.isfinite(query.grad).all() and torch.isfinite(key.grad).all()


def test_code_reduction_matches_loop() -> None:
    gen = torch.Generator().manual_seed(3)
    hidden, mask = _random_side(3, 6, gen)
    codes = torch.randn(4, H, generator=gen, dtype=torch.float64)
    got = code_reduction(hidden.masked_fill(~mask[..., None], 7.0), mask, codes)  # [3, 4, H]
    for n in range(3):
        tokens = hidden[n][mask[n]]  # [T_real, H]
        for j in range(4):
            weights = torch.softmax(tokens @ codes[j], 0)  # Soft(E(x)^T O)_j
            torch.testing.assert_close(got[n, j], weights @ tokens)


def test_shape_mismatches_raise_with_shapes() -> None:
    q, qm = torch.zeros(2, 3, H), torch.ones(2, 3, dtype=torch.bool)
    with pytest.raises(ValueError, match=r"\(2, 3, 8\).*\(2, 4, 5, 7\)"):
        general_score(q, qm, torch.zeros(2, 4, 5, 7), torch.ones(2, 4, 5, dtype=torch.bool), "soft")
    with pytest.raises(ValueError, match=r"\(3, 4, 5, 8\)"):
        general_score(q, qm, torch.zeros(3, 4, 5, H), torch.ones(3, 4, 5, dtype=torch.bool), "soft")
    with pytest.raises(ValueError, match=r"query_mask \(2, 2\)"):
        all_pairs_score(q, torch.ones(2, 2, dtype=torch.bool), torch.zeros(4, 1, H), torch.ones(4, 1), "hard")
    with pytest.raises(ValueError, match=r"codes \(4, 7\)"):
        code_reduction(q, qm, torch.zeros(4, 7))
    with pytest.raises(ValueError, match="attention"):
        all_pairs_score(q, qm, q, qm, "medium")


def test_representation_helpers() -> None:
    rep = Representation(torch.arange(24.0).view(3, 2, 4), torch.tensor([[1, 1], [1, 0], [1, 1]]))
    assert rep.mask.dtype == torch.bool and len(rep) == 3
    assert torch.equal(rep.index_select(torch.tensor([2, 0])).vectors, rep.vectors[[2, 0]])
    assert rep[1].vectors.shape == (1, 2, 4)
    both = Representation.cat([rep, rep.pad_to(3)])
    assert both.vectors.shape == (6, 3, 4) and not both.mask[:, 2].any()
    assert rep.to(torch.float16).vectors.dtype == torch.float16
    assert rep.view(3, 1).vectors.shape == (3, 1, 2, 4)
