"""hf_models.analysis.bias_probe: Appendix C's label space, the probe's ||b(theta)|| and the GradientBiasCallback."""

from __future__ import annotations

import copy
import math
from unittest.mock import MagicMock

import pytest
import torch
from transformers import TrainerControl, TrainerState

from hf_models.analysis.bias import cross_entropy, exact_gradient_bias, gradient_bias
from hf_models.analysis.bias_probe import (
    PARTNER_CONTAINS,
    PARTNER_RANDOM,
    BiasProbe,
    GradientBiasCallback,
    build_label_space,
    trainable_parameters,
)
from hf_models.modeling.modeling_retriever import MODEL_BY_ARCHITECTURE
from hf_models.training.trainer import NCETrainer
from hf_models.training.training_args import NCETrainingArguments

# ------------------------------------------------------------------------------------------- label space


def test_label_space_golds_then_partners():
    surfaces = ["Unix", "kernel", "tank"]
    worlds = ["a", "a", "b"]
    golds = ["a0", "a0", "b0"]  # two mentions share a gold
    entity_ids = ["a0", "a1", "a2", "a3", "b0", "b1"]
    entity_worlds = ["a", "a", "a", "a", "b", "b"]
    texts = ["gold", "about UNIX systems", "the Linux Kernel", "nothing", "gold", "a tank in the b world"]
    space = build_label_space(
        surfaces, worlds, golds, entity_ids, entity_worlds, texts, num_mentions=3, seed=0
    )
    assert sorted(space.mention_indices) == [0, 1, 2]
    labels = [entity_ids[i] for i in space.entity_indices]
    assert labels[:2] == list(dict.fromkeys(golds[m] for m in space.mention_indices))  # distinct golds first
    assert len(labels) == len(set(labels)) == 5  # 2 distinct golds + 3 partners <= 2P
    assert [labels[g] for g in space.gold.tolist()] == [golds[m] for m in space.mention_indices]
    partners = dict(zip(space.mention_indices, labels[2:], strict=True))
    assert partners == {0: "a1", 1: "a2", 2: "b1"}  # case-insensitive containment, same world
    assert space.partner_kinds == [PARTNER_CONTAINS] * 3
    again = build_label_space(surfaces, worlds, golds, entity_ids, entity_worlds, texts, 3, seed=0)
    assert again.entity_indices == space.entity_indices  # seeded


def test_label_space_falls_back_to_random_entity_of_same_world():
    space = build_label_space(
        ["zzz"], ["a"], ["a0"], ["a0", "a1", "b0"], ["a", "a", "b"], ["x", "y", "zzz"], num_mentions=5, seed=1
    )
    assert space.num_mentions == 1 and space.entity_indices == [0, 1]  # b0 contains it but is another world
    assert space.partner_kinds == [PARTNER_RANDOM]


# ---------------------------------------------------------------------------------------------- probe


@pytest.fixture(scope="module")
def tiny_dual(tiny_bert_dir):
    torch.manual_seed(0)
    return MODEL_BY_ARCHITECTURE["dual"].from_encoder(str(tiny_bert_dir))


@pytest.fixture(scope="module")
def trained_dual(tiny_dual):
    """The tiny dual encoder after 10 Adam steps of J_CE on ``tiny_probe()``: spread-out scores, so hard and
    random negatives differ (at random init every score is nearly equal)."""
    model = copy.deepcopy(tiny_dual).eval()
    probe, optimizer = tiny_probe(), torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(10):
        loss = cross_entropy(probe.scores(model), probe.gold)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model


def tiny_probe(num_mentions: int = 2, num_labels: int = 4, length: int = 8) -> BiasProbe:
    """P mentions and Y entities of random in-vocabulary tokens ([CLS] ... [SEP]), golds 0..P-1."""
    generator = torch.Generator().manual_seed(0)

    def tokens(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        ids = torch.randint(40, 100, (n, length), generator=generator)
        ids[:, 0], ids[:, -1] = 2, 3
        return ids, torch.ones(n, length, dtype=torch.long)

    return BiasProbe(*tokens(num_mentions), *tokens(num_labels), torch.arange(num_mentions))


def direct_scores(model, probe: BiasProbe) -> torch.Tensor:
    mentions = model.encode_mentions(probe.mention_input_ids, probe.mention_attention_mask)
    entities = model.encode_entities(probe.entity_input_ids, probe.entity_attention_mask)
    return model.score_all(mentions, entities)  # [P, Y]


@pytest.mark.parametrize("strategy", ["random", "hard", "mixed"])
def test_estimate_equals_gradient_bias_on_the_same_scores(tiny_dual, strategy):
    probe = tiny_probe()
    tiny_dual.train()
    result = probe.estimate(tiny_dual, strategy, num_negatives=2, num_draws=30, hard_fraction=0.5, seed=3)
    assert tiny_dual.training  # mode restored
    tiny_dual.eval()
    direct = gradient_bias(
        lambda: direct_scores(tiny_dual, probe), trainable_parameters(tiny_dual), probe.gold, strategy,
        2, 30, torch.Generator().manual_seed(3), hard_fraction=0.5,
    )  # fmt: skip
    tiny_dual.train()
    assert math.isclose(result.ce_loss, direct.ce_loss, rel_tol=1e-6)
    assert math.isclose(result.nce_loss, direct.nce_loss, rel_tol=1e-6)
    assert torch.allclose(result.bias, direct.bias, atol=1e-6)
    assert result.bias_norm > 0


@pytest.mark.parametrize(("strategy", "proposal"), [("random", "uniform"), ("hard", "model")])
def test_many_draws_approach_exact_enumeration(trained_dual, strategy, proposal):
    """P = 2, Y = 4, K = 3: Monte Carlo over 20000 draws vs ``exact_gradient_bias`` (sequential sampling without
    replacement, gold excluded, from the uniform / model proposal: what random / hard draw). Measured error
    over seeds: 1-2 %."""
    probe = tiny_probe()
    estimate = probe.estimate(trained_dual, strategy, num_negatives=2, num_draws=20_000, seed=1)
    trained_dual.eval()
    exact = exact_gradient_bias(
        lambda: direct_scores(trained_dual, probe), trainable_parameters(trained_dual), probe.gold, 2, "sequential",
        proposal,
    )  # fmt: skip
    trained_dual.train()
    assert exact.bias.norm() > 1e-4
    assert math.isclose(estimate.nce_loss, exact.nce_loss, rel_tol=0.01)
    assert (estimate.bias - exact.bias).norm() < 0.05 * exact.bias.norm()


def test_probe_from_training_tables_indexes_the_label_space(tiny_el):
    _, entities, splits = tiny_el
    probe = BiasProbe.from_training_tables(splits["train"], entities, num_mentions=5, seed=0)
    assert probe.num_mentions == 5 and 5 < probe.num_labels <= 10
    assert probe.entity_input_ids.shape[1] == entities.input_ids.shape[1]
    gold_tokens = probe.entity_input_ids[probe.gold]  # the gold rows carry the gold entities' tokens
    assert all(any(torch.equal(row, e) for e in entities.input_ids) for row in gold_tokens)


# ------------------------------------------------------------------------------------------- callback


def test_callback_logs_with_the_runs_settings(tiny_dual, tmp_path):
    log = MagicMock()
    callback = GradientBiasCallback(tiny_probe(num_labels=4), log_fn=log, num_draws=5)
    args = NCETrainingArguments(
        output_dir=str(tmp_path), negatives="mixed", hard_percent=25.0, num_candidates=64, use_cpu=True
    )
    assert callback.settings(args) == ("mixed", 3, 0.25)  # K - 1 capped below |Y| = 4
    tiny_dual.train()
    callback.on_evaluate(args, TrainerState(), TrainerControl(), model=tiny_dual)
    assert tiny_dual.training
    (record,), _ = log.call_args
    assert set(record) == {"bias_norm", "bias_ce_loss", "bias_nce_loss"}
    assert all(math.isfinite(v) for v in record.values())


def test_callback_logs_bias_norm_during_nce_training(tiny_bert_dir, tiny_el, tmp_path):
    _, entities, splits = tiny_el
    args = NCETrainingArguments(
        output_dir=str(tmp_path / "run"), negatives="hard", num_candidates=4, num_train_epochs=1,
        per_device_train_batch_size=20, eval_strategy="epoch", save_strategy="no", logging_steps=1,
        report_to="none", use_cpu=True, seed=7, eval_top_k=8, mining_batch_size=16, encode_dtype="float32",
        disable_tqdm=True,
    )  # fmt: skip
    torch.manual_seed(0)
    model = MODEL_BY_ARCHITECTURE["dual"].from_encoder(str(tiny_bert_dir))
    trainer = NCETrainer(model, args, splits["train"], entities, eval_mentions=splits["val"])
    callback = GradientBiasCallback.from_trainer(trainer, num_mentions=4, num_draws=5)
    trainer.add_callback(callback)
    trainer.train()
    logged = [r for r in trainer.state.log_history if "bias_norm" in r]
    assert len(logged) == len(callback.history) == 1
    assert math.isfinite(logged[0]["bias_norm"]) and logged[0]["bias_norm"] > 0
    assert math.isfinite(logged[0]["bias_nce_loss"]) and math.isfinite(logged[0]["bias_ce_loss"])
