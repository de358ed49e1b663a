"""EntityIndex search backends on synthetic representations: FAISS flat == exact (dual, multi-m), IVF/HNSW recall,
som's first-token shortlist + exact rescoring, and save/load."""

from __future__ import annotations

import pytest
import torch
from transformers import BertConfig

from hf_models import DualConfig, DualEncoderModel, MultiConfig, MultiVectorModel, SomConfig, SumOfMaxModel
from hf_models.index.entity_index import EntityIndex, WorldEntities, topk_recall
from hf_models.modeling.scoring import Representation

BACKBONE = BertConfig(
    vocab_size=64, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32
).to_dict()


def clustered(num: int, length: int, dim: int = 32, seed: int = 0) -> Representation:
    """[num, length, dim] vectors around 50 centres (what trained encoders look like), ragged masks."""
    generator = torch.Generator().manual_seed(seed)
    centres = torch.randn(50, dim, generator=generator)
    pick = torch.randint(0, 50, (num, length), generator=generator)
    vectors = centres[pick] + 0.5 * torch.randn(num, length, dim, generator=generator)
    lengths = torch.randint(1, length + 1, (num,), generator=generator)
    mask = torch.arange(length)[None] < lengths[:, None]
    return Representation(vectors=vectors.masked_fill(~mask[..., None], 0.0), mask=mask)


def index_with(model, rep: Representation, **kwargs) -> EntityIndex:
    """An EntityIndex holding `rep` as world "w" (skipping the encoder: backends only see representations).

    Exact fp32 scoring unless a test asks otherwise: these tests compare backends, not precisions (on a CPU with
    native bf16, ``score_dtype auto`` scores multi-vector worlds in bf16; tests/test_score_precision.py bounds that).
    """
    kwargs.setdefault("score_dtype", "float32")
    index = EntityIndex(model, show_progress=False, **kwargs)
    entry = WorldEntities(entity_ids=[f"e{i}" for i in range(len(rep))], representation=rep)
    entry.faiss_index = index._build_faiss(rep)
    index.worlds["w"] = entry
    return index


@pytest.mark.parametrize("length", [1, 4], ids=["dual", "multi-4"])
def test_faiss_flat_equals_exact(length):
    if length == 1:
        model = DualEncoderModel(DualConfig(mention_encoder=BACKBONE))
    else:
        model = MultiVectorModel(MultiConfig(m=length, mention_encoder=BACKBONE))
    entities, mentions = clustered(3000, length), clustered(50, 1, seed=1)
    exact_scores, exact_rows = index_with(model, entities).search("w", mentions, 64)
    flat_scores, flat_rows = index_with(model, entities, backend="faiss").search("w", mentions, 64)
    torch.testing.assert_close(flat_scores, exact_scores, rtol=1e-5, atol=1e-4)
    assert topk_recall(flat_rows, exact_rows) == 1.0


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_approximate_recall_at_64(kind):
    model = MultiVectorModel(MultiConfig(m=2, mention_encoder=BACKBONE))
    entities, mentions = clustered(4000, 2), clustered(100, 1, seed=2)
    _, exact_rows = index_with(model, entities).search("w", mentions, 64)
    _, rows = index_with(model, entities, backend="faiss", faiss_kind=kind).search("w", mentions, 64)
    recall = topk_recall(rows, exact_rows)
    print(f"\n{kind} (faiss defaults) recall@64 vs exact, 4000 multi-2 entities, 100 mentions: {recall:.3f}")
    assert recall > 0.9


def test_som_shortlist_rescoring():
    model = SumOfMaxModel(SomConfig(mention_encoder=BACKBONE))
    entities, mentions = clustered(600, 16), clustered(40, 12, seed=3)
    exact_scores, exact_rows = index_with(model, entities).search("w", mentions, 64)
    whole = index_with(model, entities, shortlist_size=600)  # shortlist = the whole world: exhaustive
    scores, rows = whole.search("w", mentions, 64)
    assert topk_recall(rows, exact_rows) == 1.0
    torch.testing.assert_close(scores, exact_scores, rtol=1e-5, atol=1e-4)
    for size in (64, 128, 256):
        _, rows = index_with(model, entities, shortlist_size=size).search("w", mentions, 64)
        print(
            f"\nsom first-token shortlist {size}/600 -> recall@64 vs exhaustive som: {topk_recall(rows, exact_rows):.3f}"
        )


def test_rescore_a_given_shortlist_and_save_load(tmp_path):
    model = SumOfMaxModel(SomConfig(mention_encoder=BACKBONE))
    entities, mentions = clustered(200, 8), clustered(10, 6, seed=4)
    stored = Representation(vectors=entities.vectors.half(), mask=entities.mask)  # an fp16 store
    index = index_with(model, stored, shortlist_size=32, store_dtype=torch.float16)
    given = torch.stack([torch.randperm(200)[:20] for _ in range(10)])  # e.g. a dual retriever's top 20
    given[0, 5:] = -1  # a short shortlist
    scores, rows = index.rescore("w", mentions, given, 8)
    full = index.score("w", mentions)
    assert set(rows[0, :5].tolist()) == set(given[0, :5].tolist()) and (rows[0, 5:] == -1).all()
    torch.testing.assert_close(scores[1:], full[1:].gather(1, rows[1:]), rtol=1e-5, atol=1e-4)

    index.save(tmp_path)
    loaded = EntityIndex(model, show_progress=False, shortlist_size=32, score_dtype="float32").load(tmp_path)
    assert loaded.worlds["w"].representation.vectors.dtype == torch.float16
    for got, expected in zip(loaded.search("w", mentions, 8), index.search("w", mentions, 8), strict=True):
        torch.testing.assert_close(got, expected)
