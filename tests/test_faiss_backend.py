"""FaissIndex (hf_models/index/faiss_backend.py) against exact torch top-k: flat exact, ivf/hnsw recall, multi-vector."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("faiss")

from hf_models.index.faiss_backend import FaissIndex, first_hit_per_entity  # noqa: E402


def clustered(num: int, dim: int, num_clusters: int, seed: int, noise: float = 0.3) -> torch.Tensor:
    """Synthetic vectors around random unit centers (what trained encoders look like, roughly)."""
    generator = torch.Generator().manual_seed(seed)
    centers = torch.nn.functional.normalize(torch.randn(num_clusters, dim, generator=generator), dim=-1)
    assign = torch.randint(num_clusters, (num,), generator=generator)
    return centers[assign] + noise * torch.randn(num, dim, generator=generator) / dim**0.5


def exact_entity_scores(
    queries: torch.Tensor, vectors: torch.Tensor, mask: torch.Tensor | None
) -> torch.Tensor:
    """Brute-force max over each entity's valid vectors: queries [N, H], vectors [E, m, H] -> [N, E]."""
    if vectors.dim() == 2:
        return queries @ vectors.T
    scores = torch.einsum("nh,emh->nem", queries, vectors)
    if mask is not None:
        scores = scores.masked_fill(~mask[None], float("-inf"))
    return scores.max(dim=-1).values


def assert_exact_topk(scores: np.ndarray, ids: np.ndarray, full: torch.Tensor, k: int) -> None:
    """Scores equal the exact top-k (1e-5) and every returned id really has its score (ids equal up to ties)."""
    expected_scores, expected_ids = full.topk(k, dim=1)
    np.testing.assert_allclose(scores, expected_scores.numpy(), atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(np.take_along_axis(full.numpy(), ids, axis=1), scores, atol=1e-5, rtol=1e-5)
    assert all(len(set(row)) == k for row in ids.tolist()), "duplicate entities in a row"
    assert (ids == expected_ids.numpy()).mean() > 0.99


def recall_at_k(ids: np.ndarray, exact_ids: np.ndarray) -> float:
    return float(
        np.mean(
            [len(set(a) & set(b)) / len(b) for a, b in zip(ids.tolist(), exact_ids.tolist(), strict=True)]
        )
    )


def test_flat_single_vector_equals_torch_topk():
    entities, queries = clustered(3000, 48, 20, seed=0), clustered(70, 48, 20, seed=1)
    index = FaissIndex(48, "flat", query_chunk_size=32).add(entities)
    scores, ids = index.search(queries, 64)
    assert scores.shape == ids.shape == (70, 64) and ids.dtype == np.int64
    assert_exact_topk(scores, ids, queries @ entities.T, 64)


def test_flat_multi_vector_equals_bruteforce_max():
    generator = torch.Generator().manual_seed(2)
    vectors = clustered(600 * 4, 32, 10, seed=2).view(600, 4, 32)
    mask = torch.rand(600, 4, generator=generator) < 0.7
    mask[:, 0] = True  # every entity keeps its first vector ...
    mask[5] = False  # ... but one has none: it can never be returned
    vectors = vectors.masked_fill(~mask[..., None], 0.0)  # what the model stores at padded columns
    queries = clustered(40, 32, 10, seed=3)
    index = FaissIndex(32, "flat").add(vectors, mask=mask)
    assert len(index) == 600 and index.num_vectors == int(mask.sum()) and index.max_vectors_per_entity == 4
    scores, ids = index.search(queries, 50)
    full = exact_entity_scores(queries, vectors, mask)
    assert_exact_topk(scores, ids, full, 50)
    assert not (ids == 5).any()


def test_multi_vector_dominant_entity_still_returns_k_distinct():
    """One entity owns all the best vectors: the result must still hold k distinct entities."""
    query = torch.zeros(1, 16)
    query[0, 0] = 1.0
    vectors = torch.randn(30, 8, 16) * 0.01
    vectors[7, :, 0] = torch.linspace(10, 3, 8)  # entity 7: the 8 best vectors
    vectors[3, 2, 0] = 2.0
    index = FaissIndex(16, "flat").add(vectors)
    scores, ids = index.search(query, 5)
    assert ids[0, 0] == 7 and ids[0, 1] == 3 and len(set(ids[0].tolist())) == 5
    np.testing.assert_allclose(scores[0, :2], [10.0, 2.0], atol=1e-3)
    assert_exact_topk(scores, ids, exact_entity_scores(query, vectors, None), 5)


def test_first_hit_expands_when_hits_are_short():
    scores = np.array([[5.0, 4.0, 3.0, -np.inf]], dtype=np.float32)
    entity_ids = np.array([[2, 2, 1, -1]])
    top_scores, top_ids, found = first_hit_per_entity(scores, entity_ids, 3)
    assert found.tolist() == [2]
    assert top_ids.tolist() == [[2, 1, -1]] and top_scores[0, 2] == -np.inf


@pytest.mark.parametrize(
    ("kind", "kwargs", "floor"),
    [
        ("ivf", {"nlist": 64, "nprobe": 16}, 0.9),
        ("hnsw", {"hnsw_m": 32, "ef_construction": 200, "ef_search": 256}, 0.9),
    ],
)
@pytest.mark.parametrize("multi", [False, True])
def test_approximate_recall_at_64(kind, kwargs, floor, multi):
    num, m = (4000, 1) if not multi else (1500, 3)
    vectors = clustered(num * m, 64, 50, seed=4).view(num, m, 64)
    queries = clustered(100, 64, 50, seed=5)
    exact_ids = exact_entity_scores(queries, vectors, None).topk(64, dim=1).indices.numpy()
    index = FaissIndex(64, kind, **kwargs).add(vectors if multi else vectors[:, 0])
    _, ids = index.search(queries, 64)
    recall = recall_at_k(ids, exact_ids)
    print(f"{kind} multi={multi} recall@64 vs exact: {recall:.4f}")
    assert recall >= floor
    assert all(len(set(row)) == 64 for row in ids.tolist())


@pytest.mark.parametrize("kind", ["flat", "ivf", "hnsw"])
def test_fp16_storage_close_to_exact(kind):
    entities, queries = clustered(2000, 32, 20, seed=6), clustered(20, 32, 20, seed=7)
    index = FaissIndex(32, kind, fp16=True, nprobe=64).add(entities.half())  # fp16 torch input accepted
    scores, ids = index.search(queries, 10)
    full = queries @ entities.T
    np.testing.assert_allclose(np.take_along_axis(full.numpy(), ids, axis=1), scores, atol=5e-3)
    assert index.nbytes() < FaissIndex(32, kind).add(entities).nbytes()


@pytest.mark.parametrize("kind", ["flat", "ivf", "hnsw"])
def test_save_load_round_trip(tmp_path, kind):
    vectors, queries = clustered(800 * 2, 24, 8, seed=8).view(800, 2, 24), clustered(15, 24, 8, seed=9)
    mask = torch.ones(800, 2, dtype=torch.bool)
    mask[::3, 1] = False
    index = FaissIndex(24, kind, nprobe=4, ef_search=40).add(vectors, mask=mask)
    before = index.search(queries, 12)
    loaded = FaissIndex.load(index.save(tmp_path / kind))
    assert (loaded.kind, loaded.nprobe, loaded.ef_search, len(loaded)) == (kind, 4, 40, 800)
    after = loaded.search(queries, 12)
    np.testing.assert_array_equal(before[1], after[1])
    np.testing.assert_allclose(before[0], after[0])
    tuned = FaissIndex.load(tmp_path / kind, nprobe=2, ef_search=20)  # search-time settings given at load win
    assert (tuned.nprobe, tuned.ef_search) == (2, 20)


def test_load_refuses_files_that_do_not_belong_together(tmp_path):
    from hf_models.atomic import CorruptFolderError

    folder = FaissIndex(8).add(torch.randn(10, 2, 8)).save(tmp_path / "index")
    with pytest.raises(CorruptFolderError, match="index 7: the files do not belong together"):
        FaissIndex.load(folder, num_entities=7)  # the caller's entity rows
    mapping = np.load(folder / "vector_to_entity.npy")
    np.save(folder / "vector_to_entity.npy", mapping[:10])  # truncated: 20 vectors, 10 mapped
    with pytest.raises(CorruptFolderError, match="holds 20 vectors, vector_to_entity.npy maps 10"):
        FaissIndex.load(folder)


def test_add_in_parts_continues_entity_rows():
    entities, queries = clustered(500, 16, 5, seed=10), clustered(8, 16, 5, seed=11)
    index = FaissIndex(16).add(entities[:200]).add(entities[200:].numpy())
    scores, ids = index.search(queries, 500)  # k = everything
    assert_exact_topk(scores, ids, queries @ entities.T, 500)
    assert index.search(queries, 10_000)[1].shape == (8, 500)  # k clamped to the number of entities


def test_bad_inputs_raise_clear_errors(tmp_path):
    index = FaissIndex(32)
    with pytest.raises(ValueError, match="empty FaissIndex"):
        index.search(torch.randn(2, 32), 3)
    with pytest.raises(ValueError, match="dimension 16 but the index has dimension 32"):
        index.add(torch.randn(5, 16))
    index.add(torch.randn(5, 32))
    with pytest.raises(ValueError, match="dimension 31 but the index has dimension 32"):
        index.search(torch.randn(2, 31), 3)
    with pytest.raises(ValueError, match="k must be positive"):
        index.search(torch.randn(2, 32), 0)
    with pytest.raises(ValueError, match="mask must be"):
        FaissIndex(32).add(torch.randn(5, 2, 32), mask=torch.ones(5, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="kind must be one of"):
        FaissIndex(32, "lsh")
    with pytest.raises(ValueError, match="nlist=50"):
        FaissIndex(32, "ivf", nlist=50).add(torch.randn(10, 32))
    with pytest.raises(FileNotFoundError, match="not a saved FaissIndex"):
        FaissIndex.load(tmp_path)
