"""The options beyond the paper added to beat the sentence-transformers baseline (issue 14).

mean reduction, cosine similarity with a scale, and candidate sets shared across the batch.
"""

from __future__ import annotations

import pytest
import torch

from hf_models import DualConfig, DualEncoderModel, PolyConfig, RetrieverConfig, SomConfig, SumOfMaxModel
from hf_models.modeling.losses import shared_candidate_scores
from hf_models.modeling.scoring import mean_reduction
from hf_models.training.trainer import NCETrainer

from .test_models import batch_inputs, make_batch
from .test_trainer import tiny_args


def test_mean_reduction_equals_a_hand_written_mean_over_unmasked_tokens(tiny_bert_dir):
    torch.manual_seed(0)
    model = DualEncoderModel.from_encoder(
        str(tiny_bert_dir), query_reduction="mean", key_reduction="mean"
    ).eval()
    ids, mask = make_batch([6, 3, 9], seed=3)
    with torch.no_grad():
        rep = model.encode_mentions(ids, mask)
        hidden = model.mention_encoder(input_ids=ids, attention_mask=mask).last_hidden_state
    for i, length in enumerate([6, 3, 9]):
        expected = hidden[i, :length].mean(dim=0)  # only the unmasked tokens
        torch.testing.assert_close(rep.vectors[i, 0], expected, rtol=1e-5, atol=1e-6)
    assert rep.vectors.shape == (3, 1, hidden.shape[-1])
    # the pure function on its own, with an all-padding row
    hidden = torch.randn(2, 4, 5)
    mask = torch.tensor([[1, 1, 0, 0], [0, 0, 0, 0]])
    out = mean_reduction(hidden, mask)
    torch.testing.assert_close(out[0, 0], hidden[0, :2].mean(0))
    assert torch.equal(out[1, 0], torch.zeros(5))


def test_mean_reduction_is_refused_where_it_does_not_apply():
    with pytest.raises(ValueError, match="num_query_vectors"):
        RetrieverConfig(query_reduction="mean", num_query_vectors=4)
    with pytest.raises(ValueError, match="num_key_vectors: 'mean'"):
        SomConfig(key_reduction="mean")


@pytest.mark.parametrize("reduction", ["leftmost", "mean"])
def test_cosine_scores_lie_in_minus_scale_to_scale(tiny_bert_dir, reduction):
    torch.manual_seed(0)
    scale = 7.0
    model = DualEncoderModel.from_encoder(
        str(tiny_bert_dir),
        query_reduction=reduction,
        key_reduction=reduction,
        similarity="cosine",
        similarity_scale=scale,
    ).eval()
    inputs = batch_inputs()
    with torch.no_grad():
        scores = model(**inputs).scores  # [3, 3]
        mentions = model.encode_mentions(inputs["mention_input_ids"], inputs["mention_attention_mask"])
        entities = model.encode_entities(
            inputs["entity_input_ids"].reshape(9, -1), inputs["entity_attention_mask"].reshape(9, -1)
        )
    assert scores.abs().max() <= scale + 1e-4
    # = scale * cosine of the raw (unnormalized) reduced vectors
    dot = DualEncoderModel(DualConfig(**{**model.config.to_dict(), "similarity": "dot"})).eval()
    dot.load_state_dict(model.state_dict())
    with torch.no_grad():
        raw_m = dot.encode_mentions(inputs["mention_input_ids"], inputs["mention_attention_mask"]).vectors[
            :, 0
        ]
        raw_e = dot.encode_entities(
            inputs["entity_input_ids"].reshape(9, -1), inputs["entity_attention_mask"].reshape(9, -1)
        ).vectors[:, 0]
    cosine = torch.nn.functional.cosine_similarity(raw_m[:, None], raw_e.view(3, 3, -1), dim=-1)
    torch.testing.assert_close(scores, scale * cosine, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(entities.vectors.norm(dim=-1), torch.ones(9, 1), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(mentions.vectors.norm(dim=-1), torch.full((3, 1), scale), rtol=1e-5, atol=1e-5)


def test_cosine_is_refused_with_soft_attention():
    with pytest.raises(ValueError, match="similarity"):
        PolyConfig(similarity="cosine")


def test_shared_candidates_mask_golds_and_repeats_and_put_the_gold_first():
    # B = 3 mentions, C = 3 candidates; entity 5 is the gold of mentions 0 and 2; entity 9 appears twice
    candidate_ids = torch.tensor([[5, 9, 1], [7, 5, 9], [5, 2, 3]])
    all_scores = torch.arange(27, dtype=torch.float).view(3, 9)  # score = slot index + 9 * mention
    scores = shared_candidate_scores(all_scores, candidate_ids)
    flat = candidate_ids.reshape(-1)
    for b in range(3):
        assert scores[b, 0] == all_scores[b, b * 3]  # own gold first
        others = [s for s in range(9) if s != b * 3]  # remaining slots, batch order
        finite_ids = []
        for column, slot in enumerate(others, start=1):
            value = scores[b, column]
            if torch.isfinite(value):
                assert value == all_scores[b, slot]
                finite_ids.append(int(flat[slot]))
        gold = int(candidate_ids[b, 0])
        assert gold not in finite_ids  # never its own gold as a negative
        assert len(finite_ids) == len(set(finite_ids))  # a shared candidate counted once
        assert len(finite_ids) <= 3 * 3 - 1
        assert set(finite_ids) == set(flat.tolist()) - {gold}  # every other distinct entity of the batch


def test_shared_candidates_train_step_sees_at_most_bk_minus_one_negatives(tmp_path, tiny_bert_dir, tiny_el):
    tokenizer, entities, splits = tiny_el
    torch.manual_seed(0)
    model = DualEncoderModel.from_encoder(str(tiny_bert_dir), similarity="cosine", similarity_scale=10.0)
    args = tiny_args(tmp_path, share_candidates=True, num_train_epochs=1, eval_strategy="no")
    trainer = NCETrainer(model, args, splits["train"], entities)
    trainer.store.current = trainer.mining_callback.source.mine(0)
    batch = trainer.data_collator([{"mention_index": i} for i in range(4)])
    assert batch["candidate_ids"].shape == (4, 4)
    out = model(**batch, share_candidates=True)
    assert out.scores.shape == (4, 16)
    gold = batch["candidate_ids"][:, 0]
    for b in range(4):
        finite = torch.isfinite(out.scores[b, 1:]).sum().item()
        distinct = set(batch["candidate_ids"].reshape(-1).tolist()) - {int(gold[b])}
        assert finite == len(distinct) <= 4 * 4 - 1
    out.loss.backward()
    assert model.mention_encoder.embeddings.word_embeddings.weight.grad is not None
    trainer.train()  # a full (one-epoch) run goes through compute_loss
    assert trainer.state.global_step > 0


def test_shared_candidates_refuse_the_adjusted_loss(tmp_path):
    with pytest.raises(ValueError, match="share_candidates"):
        tiny_args(tmp_path, share_candidates=True, loss="adjusted", negatives="hard")


def test_som_takes_cosine_and_shares_candidates(tiny_bert_dir):
    torch.manual_seed(0)
    model = SumOfMaxModel.from_encoder(str(tiny_bert_dir), similarity="cosine", similarity_scale=5.0).eval()
    inputs = batch_inputs()
    ids = torch.arange(9).view(3, 3)
    out = model(**inputs, candidate_ids=ids, share_candidates=True)
    assert out.scores.shape == (3, 9) and torch.isfinite(out.loss)
    paired = model(**inputs).scores  # [3, 3]
    torch.testing.assert_close(out.scores[:, 0], paired[:, 0], rtol=1e-4, atol=1e-4)


def test_reduction_auto_reads_the_sentence_transformers_pooling_config(tmp_path, tiny_bert_dir):
    import json

    from hf_models.recipes.model_setup import sentence_transformers_pooling
    from hf_models.recipes.recipe_args import resolve_encoder

    assert (
        sentence_transformers_pooling(resolve_encoder("embedded")) == "mean"
    )  # all-MiniLM-L6-v2: mean pooling
    assert sentence_transformers_pooling(str(tiny_bert_dir)) == "leftmost"  # a plain transformers checkpoint
    (tmp_path / "1_Pooling").mkdir()
    (tmp_path / "modules.json").write_text(json.dumps([{"type": "x.Pooling", "path": "1_Pooling"}]))
    (tmp_path / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_cls_token": True}))
    assert sentence_transformers_pooling(str(tmp_path)) == "leftmost"
    (tmp_path / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_max_tokens": True}))
    with pytest.raises(ValueError, match="1_Pooling/config.json"):
        sentence_transformers_pooling(str(tmp_path))


@pytest.mark.parametrize(
    ("flags", "warned"),
    [
        ("flags : avx2 fma", True),
        ("flags : avx512f avx512_bf16", False),
        ("flags : amx_bf16 amx_tile", False),
    ],
)
def test_cpu_bf16_training_is_warned_about_without_native_bf16(tmp_path, caplog, monkeypatch, flags, warned):
    """--bf16 on a CPU: warned where bf16 products fall back to the reference GEMM (AVX2 only), not where the CPU
    has AVX512-BF16 or AMX (there bf16 autocast training is faster than fp32)."""
    import builtins
    import io
    import logging

    from hf_models.index.encoding import cpu_has_fast_bf16
    from hf_models.recipes import recipe

    cpu_has_fast_bf16.cache_clear()
    real_open = builtins.open
    monkeypatch.setattr(
        builtins,
        "open",
        lambda file, *a, **k: (
            io.StringIO(flags) if str(file) == "/proc/cpuinfo" else real_open(file, *a, **k)
        ),
    )
    with caplog.at_level(logging.WARNING, logger="hf_models.recipes.recipe"):
        recipe.warn_cpu_bf16_training(tiny_args(tmp_path, bf16=True))
    cpu_has_fast_bf16.cache_clear()  # the next caller reads this machine's flags again
    assert ("--bf16 false" in caplog.text) == warned
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="hf_models.recipes.recipe"):
        recipe.warn_cpu_bf16_training(tiny_args(tmp_path, bf16=False))
    assert caplog.text == ""


@pytest.mark.parametrize("model_class", [DualEncoderModel, SumOfMaxModel])
def test_shared_candidates_encode_each_entity_once_with_the_same_loss_and_gradients(
    tiny_bert_dir, model_class
):
    torch.manual_seed(0)
    model = model_class.from_encoder(str(tiny_bert_dir), similarity="cosine", similarity_scale=5.0).eval()
    inputs = batch_inputs()  # eval(): no dropout, so the two computations see the same network
    # mention 1's hard negative is mention 0's gold and mention 2 shares mention 0's negative: 7 distinct of 9 slots
    ids = torch.tensor([[10, 11, 12], [13, 10, 14], [15, 11, 16]])
    for b, c, src_b, src_c in [(1, 1, 0, 0), (2, 1, 0, 1)]:  # equal ids carry equal inputs
        for key in ("entity_input_ids", "entity_attention_mask"):
            inputs[key][b, c] = inputs[key][src_b, src_c]
    calls = []
    hook = model.entity_encoder.register_forward_hook(
        lambda m, args, kw, out: calls.append(kw["input_ids"].shape[0]), with_kwargs=True
    )
    out = model(**inputs, candidate_ids=ids, share_candidates=True)
    hook.remove()
    assert calls == [7]  # each distinct entity encoded once
    out.loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    # reference: every one of the B x C slots encoded separately, then the same masking
    mentions = model.encode_mentions(inputs["mention_input_ids"], inputs["mention_attention_mask"])
    entities = model.encode_entities(
        inputs["entity_input_ids"].reshape(9, -1), inputs["entity_attention_mask"].reshape(9, -1)
    )
    reference = shared_candidate_scores(model.score_all(mentions, entities), ids)
    torch.testing.assert_close(out.scores, reference, rtol=1e-5, atol=1e-5)
    loss = torch.nn.functional.cross_entropy(reference, torch.zeros(3, dtype=torch.long))
    torch.testing.assert_close(out.loss, loss, rtol=1e-5, atol=1e-6)
    loss.backward()
    for name, param in model.named_parameters():
        if name in grads:
            torch.testing.assert_close(grads[name], param.grad, rtol=1e-4, atol=1e-6, msg=name)


def test_freeze_word_embeddings_keeps_the_tables_and_trains_the_rest(tmp_path, tiny_bert_dir, tiny_el):
    from hf_models.training.trainer import freeze_word_embeddings

    tokenizer, entities, splits = tiny_el
    torch.manual_seed(0)
    model = DualEncoderModel.from_encoder(str(tiny_bert_dir))  # two encoders: two tables
    before = {name: param.detach().clone() for name, param in model.named_parameters()}
    args = tiny_args(tmp_path, freeze_word_embeddings=True, num_train_epochs=1, eval_strategy="no")
    trainer = NCETrainer(model, args, splits["train"], entities)
    trainer.train()
    tables = [name for name in before if "word_embeddings" in name]
    assert len(tables) == 2
    for name, param in model.named_parameters():
        if name in tables:
            assert not param.requires_grad and torch.equal(param, before[name]), name
    changed = {name for name, param in model.named_parameters() if not torch.equal(param, before[name])}
    assert any("position_embeddings" in name for name in changed)
    assert any("mention_encoder.encoder.layer" in name for name in changed)
    assert any("entity_encoder.encoder.layer" in name for name in changed)
    shared = DualEncoderModel.from_encoder(str(tiny_bert_dir), shared_encoder=True)
    table = shared.mention_encoder.get_input_embeddings().weight
    assert freeze_word_embeddings(shared) == table.numel()  # one table, counted once
    with pytest.raises(ValueError, match="freeze_word_embeddings"):
        freeze_word_embeddings(torch.nn.Linear(2, 2))


def test_world_batches_are_one_world_each_seeded_and_cover_every_mention(tmp_path, tiny_bert_dir, tiny_el):
    from hf_models.training.collator import WorldBatchSampler

    tokenizer, entities, splits = tiny_el
    train = splits["train"]
    sampler = WorldBatchSampler(train, batch_size=3, seed=5)
    batches = sampler.batches()
    assert sorted(torch.cat(batches).tolist()) == list(range(len(train)))  # every mention once
    assert list(sampler) == torch.cat(batches).tolist() and len(sampler) == len(train)
    by_world = train.indices_by_world()
    full = sum(len(idx) // 3 for idx in by_world.values())
    assert full > 0
    for batch in batches[:full]:  # the full batches come first, one world each
        assert len(batch) == 3 and len({train.worlds[i] for i in batch.tolist()}) == 1
    assert all(len(b) == 3 for b in batches[:-1])  # batch boundaries fall on the groups
    assert [b.tolist() for b in WorldBatchSampler(train, 3, seed=5).batches()] == [
        b.tolist() for b in batches
    ]
    sampler.set_epoch(1)
    assert [b.tolist() for b in sampler.batches()] != [b.tolist() for b in batches]  # reshuffled per epoch
    with pytest.raises(ValueError, match="batch_size"):
        WorldBatchSampler(train, batch_size=0, seed=5)
    model = DualEncoderModel.from_encoder(str(tiny_bert_dir), similarity="cosine")
    args = tiny_args(
        tmp_path, group_batches_by_world=True, share_candidates=True, num_train_epochs=1, eval_strategy="no"
    )
    trainer = NCETrainer(model, args, train, entities)
    assert isinstance(trainer._get_train_sampler(), WorldBatchSampler)
    trainer.train()
    assert trainer.state.global_step == -(-len(train) // 4)


def test_resuming_with_another_freeze_word_embeddings_names_the_flag(tmp_path, tiny_bert_dir, tiny_el):
    tokenizer, entities, splits = tiny_el
    common = dict(num_train_epochs=1, eval_strategy="no", save_strategy="steps", save_steps=1, max_steps=1)
    torch.manual_seed(0)
    model = DualEncoderModel.from_encoder(str(tiny_bert_dir))
    NCETrainer(model, tiny_args(tmp_path, **common), splits["train"], entities).train()
    torch.manual_seed(0)
    model = DualEncoderModel.from_encoder(str(tiny_bert_dir))
    args = tiny_args(tmp_path, freeze_word_embeddings=True, **{**common, "max_steps": 2})
    trainer = NCETrainer(model, args, splits["train"], entities)
    with pytest.raises(ValueError, match=r"checkpoint-1: .*--freeze_word_embeddings"):
        trainer.train(resume_from_checkpoint=True)


@pytest.mark.parametrize("size", [2, 3, 4])
def test_world_batches_stay_one_world_per_device_on_two_processes(tiny_el, size):
    """Accelerate deals the DataLoader's batches round-robin to N processes: each device batch is still one group
    of the sampler (one world for the full ones), set_epoch reaches the sampler through the shard, and the two
    processes together see every batch of the epoch exactly once (plus Accelerate's even_batches fill-ups)."""
    from accelerate.data_loader import prepare_data_loader
    from torch.utils.data import DataLoader

    from hf_models.training.collator import WorldBatchSampler

    _, _, splits = tiny_el
    train = splits["train"]
    reference = WorldBatchSampler(train, batch_size=size, seed=5)
    reference.set_epoch(1)
    expected = [b.tolist() for b in reference.batches()]
    seen: list[list[int]] = []
    for rank in range(2):
        sampler = WorldBatchSampler(train, batch_size=size, seed=5)
        loader = DataLoader(range(len(train)), batch_size=size, sampler=sampler)
        shard = prepare_data_loader(loader, num_processes=2, process_index=rank, put_on_device=False)
        shard.set_epoch(1)
        assert sampler.epoch == 1, "set_epoch must reach the WorldBatchSampler through Accelerate's shard"
        got = [batch.tolist() for batch in shard]
        own = expected[rank::2]
        assert len(got) >= len(own), f"rank {rank}: batches lost"
        # even_batches may top a short last batch up from the epoch's start, or add one to the rank with fewer
        for mine, batch in zip(got[: len(own)], own, strict=True):
            assert mine[: len(batch)] == batch, f"rank {rank}: not every other batch of the epoch"
            seen.append(mine[: len(batch)])  # what the shard gave, less any even_batches top-up
    assert sorted(i for batch in seen for i in batch) == list(range(len(train)))
    one_world = [b for b in expected if len({train.worlds[i] for i in b}) == 1]
    assert len(one_world) >= sum(len(idx) // size for idx in train.indices_by_world().values()) > 0
