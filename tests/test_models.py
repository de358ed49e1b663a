"""Every architecture of Section 4.2 / 6.2 / Appendix B against a per-example loop over its formula.

The reference encodes each sequence alone and UNPADDED, so agreement with the padded batch also shows that
padding cannot change a score.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from hf_models import (
    MODEL_BY_ARCHITECTURE,
    JointRerankerModel,
    RetrieverConfig,
    RetrieverModel,
    config_for,
)

M = 3  # the size of poly-m, multi-m and genpoly-m in these tests
SIZED = ("poly", "multi", "genpoly")
ARCHITECTURES = tuple(MODEL_BY_ARCHITECTURE)
CLS, PAD = 2, 0


def build(architecture: str, path: Path, **kwargs) -> RetrieverModel:
    """A retriever of `architecture` from the tiny backbone (m=M where the architecture has a size)."""
    if architecture in SIZED:
        kwargs.setdefault("m", M)
    return MODEL_BY_ARCHITECTURE[architecture].from_encoder(str(path), **kwargs)


def make_batch(lengths: list[int], seed: int, vocab: int = 100) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ids [N, max(lengths)] starting with [CLS], and their attention mask."""
    gen = torch.Generator().manual_seed(seed)
    width = max(lengths)
    ids = torch.randint(15, vocab, (len(lengths), width), generator=gen)
    ids[:, 0] = CLS
    mask = (torch.arange(width)[None, :] < torch.tensor(lengths)[:, None]).long()
    return ids.masked_fill(mask == 0, PAD), mask


MENTION_LENGTHS = [6, 4, 9]
ENTITY_LENGTHS = [[5, 2, 7], [8, 3, 4], [2, 6, 5]]  # [B=3][C=3]; length 2 < M exercises leftmost masking


def batch_inputs() -> dict[str, torch.Tensor]:
    m_ids, m_mask = make_batch(MENTION_LENGTHS, seed=0)
    e_ids, e_mask = make_batch([n for row in ENTITY_LENGTHS for n in row], seed=1)
    return {
        "mention_input_ids": m_ids,
        "mention_attention_mask": m_mask,
        "entity_input_ids": e_ids.view(3, 3, -1),
        "entity_attention_mask": e_mask.view(3, 3, -1),
    }


# ---------------------------------------------------------------------- the paper's formulas, one pair at a time
def _tokens(encoder, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """E(x) of ONE sequence, unpadded: [T_real, H]."""
    real = ids[mask.bool()][None]
    return encoder(input_ids=real, attention_mask=torch.ones_like(real)).last_hidden_state[0]


def _codes_keys(E: torch.Tensor, codes: torch.Tensor) -> list[torch.Tensor]:
    """K_m = E(x) Soft(E(x)^T O): one key per code."""
    return [torch.softmax(E @ code, 0) @ E for code in codes]


def _context(keys: list[torch.Tensor], f: torch.Tensor) -> torch.Tensor:
    """C_m(x, y) = K_m Soft(K_m^T f)."""
    weights = torch.softmax(torch.stack([k @ f for k in keys]), 0)
    return sum(w * k for w, k in zip(weights, keys, strict=True))


def reference_score(architecture: str, model: RetrieverModel, E: torch.Tensor, F: torch.Tensor) -> float:
    if architecture == "dual":  # E_1(x)^T F_1(y)
        return float(E[0] @ F[0])
    if architecture == "poly":  # F_1(y)^T C_m(x, y)
        return float(F[0] @ _context(_codes_keys(E, model.codes), F[0]))
    if architecture == "multi":  # max_{t<=m} E_1(x)^T F_t(y)
        return max(float(E[0] @ F[t]) for t in range(min(M, len(F))))
    if architecture == "som":  # sum_t max_t' E_t(x)^T F_t'(y)
        return sum(max(float(e @ f) for f in F) for e in E)
    if architecture == "genpoly":  # 1_m^T F_{1:m}(y)^T C_m(x, y)
        keys = _codes_keys(E, model.codes)
        return sum(float(F[t] @ _context(keys, F[t])) for t in range(min(M, len(F))))
    raise AssertionError(architecture)


@pytest.fixture(scope="module")
def models(tiny_bert_dir) -> dict[str, RetrieverModel]:
    torch.manual_seed(0)
    return {name: build(name, tiny_bert_dir).double().eval() for name in ARCHITECTURES}


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_paired_and_all_pairs_match_reference(models, architecture: str) -> None:
    model, inputs = models[architecture], batch_inputs()
    m_ids, m_mask = inputs["mention_input_ids"], inputs["mention_attention_mask"]
    e_ids, e_mask = inputs["entity_input_ids"].flatten(0, 1), inputs["entity_attention_mask"].flatten(0, 1)
    with torch.no_grad():
        E = [_tokens(model.mention_encoder, m_ids[i], m_mask[i]) for i in range(3)]
        F = [_tokens(model.entity_encoder, e_ids[j], e_mask[j]) for j in range(9)]
        expected = torch.tensor([[reference_score(architecture, model, e, f) for f in F] for e in E]).double()
        paired = model(**inputs).scores  # [3, 3]: mention i against its candidates 3i..3i+2
        all_pairs = model.score_all(
            model.encode_mentions(m_ids, m_mask), model.encode_entities(e_ids, e_mask), 2
        )
    diagonal_blocks = torch.stack([expected[i, 3 * i : 3 * i + 3] for i in range(3)])
    torch.testing.assert_close(paired, diagonal_blocks, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(all_pairs, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_padding_cannot_change_scores(models, architecture: str) -> None:
    model, inputs = models[architecture], batch_inputs()
    with torch.no_grad():
        base = model(**inputs).scores
        noisy = dict(inputs)
        for key in ("mention", "entity"):
            ids, mask = inputs[f"{key}_input_ids"], inputs[f"{key}_attention_mask"]
            noisy[f"{key}_input_ids"] = torch.where(mask.bool(), ids, torch.randint_like(ids, 15, 100))
        torch.testing.assert_close(model(**noisy).scores, base, atol=1e-10, rtol=1e-10)
        wider = {k: torch.nn.functional.pad(v, (0, 5)) for k, v in inputs.items()}  # 5 more padding columns
        torch.testing.assert_close(model(**wider).scores, base, atol=1e-8, rtol=1e-8)


def test_joint_matches_reference(tiny_bert_dir) -> None:
    model = JointRerankerModel.from_encoder(str(tiny_bert_dir)).double().eval()
    ids, mask = make_batch([7, 4, 9, 5], seed=3)
    types = (torch.arange(ids.shape[1])[None] >= 3).long() * mask
    with torch.no_grad():
        scores = model(ids.view(2, 2, -1), mask.view(2, 2, -1), types.view(2, 2, -1)).scores
        expected = []
        for i in range(4):
            real = mask[i].bool()
            hidden = model.encoder(
                input_ids=ids[i][real][None], token_type_ids=types[i][real][None]
            ).last_hidden_state  # E([CLS] x [SEP] y)
            expected.append(float(model.head.weight[0] @ hidden[0, 0] + model.head.bias[0]))  # w^T E_1 + b
    torch.testing.assert_close(scores, torch.tensor(expected).double().view(2, 2), atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------------- training
def _train(model, inputs: dict[str, torch.Tensor], steps: int = 4) -> tuple[float, float]:
    """A few AdamW steps (no weight decay, so only parameters with a gradient move) -> (loss before, after)."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)

    def eval_loss() -> float:
        model.eval()
        with torch.no_grad():
            return float(model(**inputs).loss)

    before = eval_loss()
    model.train()
    for _ in range(steps):
        optimizer.zero_grad()
        model(**inputs).loss.backward()
        optimizer.step()
    return before, eval_loss()


def _assert_trains(model, inputs: dict[str, torch.Tensor]) -> None:
    start = {name: p.detach().clone() for name, p in model.named_parameters()}
    before, after = _train(model, inputs)
    assert after < before, (before, after)
    # Every parameter influences the score: the backbones have no pooler (add_pooling_layer=False), so none is
    # excluded; embeddings move in the rows the batch uses.
    frozen = [name for name, p in model.named_parameters() if torch.equal(p, start[name])]
    assert not frozen, frozen


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_training_step_lowers_nce_loss_and_moves_every_parameter(tiny_bert_dir, architecture: str) -> None:
    torch.manual_seed(0)
    model = build(architecture, tiny_bert_dir)
    assert not any("pooler" in name for name, _ in model.named_parameters())
    _assert_trains(model, batch_inputs())


def test_joint_training_step(tiny_bert_dir) -> None:
    torch.manual_seed(0)
    ids, mask = make_batch([7, 4, 9, 5, 6, 8], seed=4)
    _assert_trains(
        JointRerankerModel.from_encoder(str(tiny_bert_dir)),
        {"pair_input_ids": ids.view(2, 3, -1), "pair_attention_mask": mask.view(2, 3, -1)},
    )


# ---------------------------------------------------------------------- structure and bad input
def test_shared_encoder_is_one_module(tiny_bert_dir) -> None:
    shared = build("som", tiny_bert_dir, shared_encoder=True)
    separate = build("som", tiny_bert_dir)
    assert shared.entity_encoder is shared.mention_encoder
    assert separate.entity_encoder is not separate.mention_encoder
    assert torch.equal(
        separate.entity_encoder.embeddings.word_embeddings.weight,
        shared.mention_encoder.embeddings.word_embeddings.weight,
    )
    assert 2 * shared.num_parameters() == separate.num_parameters()


def test_codes_only_where_a_side_reduces_with_codes(models) -> None:
    assert models["poly"].codes.shape == (M, 32) and models["genpoly"].codes.shape == (M, 32)
    assert all(models[name].codes is None for name in ("dual", "multi", "som"))
    assert models["poly"].encode_mentions(*make_batch([4, 6], seed=5)).vectors.shape == (2, M, 32)
    assert models["multi"].encode_entities(*make_batch([2, 6], seed=5)).mask.tolist() == [
        [True, True, False],
        [True, True, True],
    ]


def test_adjusted_loss_through_forward(models) -> None:
    model, inputs = models["dual"], batch_inputs()
    log_probs = torch.log(torch.full((3, 2), 0.25, dtype=torch.float64))
    with torch.no_grad():
        plain = model(**inputs, negative_log_probs=log_probs)
        adjusted = model(**inputs, negative_log_probs=log_probs, loss="adjusted")
    shifted = plain.scores - torch.tensor([0.0, 1.0, 1.0]).double() * torch.log(torch.tensor(2 * 0.25))
    torch.testing.assert_close(plain.loss, -plain.scores.log_softmax(1)[:, 0].mean())  # eq. (11) by default
    torch.testing.assert_close(adjusted.loss, -shifted.log_softmax(1)[:, 0].mean())
    with pytest.raises(ValueError, match="negative_log_probs"):
        model(**inputs, loss="adjusted")


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"architecture": "trident"}, "architecture"),
        ({"architecture": "multi", "m": 0}, "m"),
        ({"architecture": "som", "num_query_vectors": -1}, "num_query_vectors"),
        ({"architecture": "poly", "attention": "hard"}, "attention"),
        ({"architecture": "dual", "direction": "sideways"}, "direction"),
        ({"architecture": "dual", "key_reduction": "median"}, "key_reduction"),
        ({"architecture": "dual", "key_reduction": "codes", "num_key_vectors": 1}, "key_reduction"),
        ({"architecture": "genpoly", "m": None, "num_key_vectors": None}, "num_key_vectors"),
    ],
)
def test_bad_config_raises_naming_the_field(kwargs: dict, field: str) -> None:
    architecture = kwargs.pop("architecture")
    with pytest.raises(ValueError, match=field):
        if architecture == "trident":
            config_for(architecture)
        else:
            config_for(architecture, **kwargs)
    if architecture == "trident":
        with pytest.raises(ValueError, match=field):
            RetrieverConfig(architecture=architecture)


def test_mismatched_hidden_sizes_raise(tiny_bert_dir) -> None:
    from transformers import BertConfig

    small, large = BertConfig(hidden_size=32).to_dict(), BertConfig(hidden_size=64).to_dict()
    with pytest.raises(ValueError, match="entity_encoder.*hidden_size"):
        config_for("dual", mention_encoder=small, entity_encoder=large)


def test_bad_forward_shapes_raise(models) -> None:
    inputs = batch_inputs()
    inputs["entity_input_ids"] = inputs["entity_input_ids"].flatten(0, 1)
    with pytest.raises(ValueError, match=r"\(3, 9\).*\(9, 8\)"):
        models["dual"](**inputs)


def test_from_encoder_dispatch_and_presets(tiny_bert_dir) -> None:
    model = RetrieverModel.from_encoder(str(tiny_bert_dir), architecture="multi", m=2)
    assert type(model).__name__ == "MultiVectorModel" and model.config.num_key_vectors == 2
    poly = config_for("poly", 5)
    assert (poly.direction, poly.num_query_vectors, poly.num_key_vectors, poly.attention) == (
        "entity_to_mention",
        1,
        5,
        "soft",
    )
    assert poly.side("mention") == ("codes", 5) and poly.side("entity") == ("leftmost", 1)
    genpoly = config_for("genpoly", 4)
    assert (genpoly.num_query_vectors, genpoly.num_key_vectors) == (4, 4)
    som = config_for("som")
    assert (som.num_query_vectors, som.num_key_vectors, som.attention) == (None, None, "hard")
