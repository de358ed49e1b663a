"""NCETrainer + NegativeMiningCallback: mining every epoch with the current model, world-local negatives."""

import copy
import json

import pytest
import torch
from transformers import TrainerCallback

from hf_models.index.entity_index import EntityIndex
from hf_models.modeling.modeling_retriever import MODEL_BY_ARCHITECTURE
from hf_models.training.mining import NegativeMiner
from hf_models.training.trainer import NCETrainer
from hf_models.training.training_args import NCETrainingArguments


def tiny_args(tmp_path, **overrides) -> NCETrainingArguments:
    values = dict(
        output_dir=str(tmp_path / "run"),
        negatives="hard",
        num_candidates=4,
        num_train_epochs=2,
        per_device_train_batch_size=4,
        per_device_eval_batch_size=4,
        learning_rate=1e-3,
        eval_strategy="epoch",
        save_strategy="no",
        logging_steps=1,
        report_to="none",
        use_cpu=True,
        seed=7,
        eval_top_k=8,
        mining_batch_size=8,
        mining_chunk_size=4,
        encode_dtype="float32",
        disable_tqdm=True,
    )
    values.update(overrides)
    return NCETrainingArguments(**values)


class Snapshots(TrainerCallback):
    """Record the model weights at every epoch end and the negatives in use at every step."""

    def __init__(self, trainer):
        self.trainer, self.weights, self.negatives = trainer, {}, {}

    def on_epoch_end(self, args, state, control, model=None, **kwargs):
        self.weights[round(state.epoch)] = copy.deepcopy(model.state_dict())

    def on_step_begin(self, args, state, control, **kwargs):
        current = self.trainer.store.current
        self.negatives.setdefault(current.epoch, current.ids.clone())


def make_model(tiny_bert_dir, architecture="som"):
    torch.manual_seed(0)
    return MODEL_BY_ARCHITECTURE[architecture].from_encoder(str(tiny_bert_dir))


def test_mining_every_epoch_uses_current_model_and_stays_in_world(tmp_path, tiny_bert_dir, tiny_el):
    tokenizer, entities, splits = tiny_el
    trainer = NCETrainer(
        make_model(tiny_bert_dir), tiny_args(tmp_path), splits["train"], entities, eval_mentions=splits["val"]
    )
    snapshots = Snapshots(trainer)
    trainer.add_callback(snapshots)
    trainer.train()
    assert trainer.mining_callback.history == [0, 1]
    assert not torch.equal(snapshots.negatives[0], snapshots.negatives[1]), (
        "negatives did not change with the model"
    )

    # The epoch-1 negatives are exactly what the miner draws with the weights at the end of epoch 0.
    replay = make_model(tiny_bert_dir)
    replay.load_state_dict(snapshots.weights[1])
    miner = NegativeMiner(
        EntityIndex(replay, encode_dtype="float32", show_progress=False),
        splits["train"],
        entities,
        strategy="hard",
        num_negatives=3,
        seed=7,
        chunk_size=4,
    )
    assert torch.equal(miner.mine(1).ids, snapshots.negatives[1])

    train = splits["train"]
    for negatives in snapshots.negatives.values():
        for i in range(len(train)):
            row = negatives[i].tolist()
            assert int(train.gold_rows[i]) not in row, "gold drawn as a negative"
            assert len(set(row)) == len(row), "duplicate negative"
            assert {entities.worlds[r] for r in row} == {train.worlds[i]}, "negative from another world"
    metrics = trainer.evaluate()
    assert 0.0 <= metrics["eval_recall@8"] <= 100.0
    assert "eval_unnormalized_accuracy" in metrics and "eval_LOW_OVERLAP/accuracy" in metrics


@pytest.mark.parametrize("negatives", ["random", "mixed", "topk"])
def test_other_strategies_train(tmp_path, tiny_bert_dir, tiny_el, negatives):
    tokenizer, entities, splits = tiny_el
    args = tiny_args(tmp_path, negatives=negatives, num_train_epochs=1, eval_strategy="no", hard_percent=50)
    trainer = NCETrainer(make_model(tiny_bert_dir, "dual"), args, splits["train"], entities)
    output = trainer.train()
    assert torch.isfinite(torch.tensor(output.training_loss))


def test_adjusted_loss_uses_log_probs(tmp_path, tiny_bert_dir, tiny_el):
    tokenizer, entities, splits = tiny_el
    args = tiny_args(tmp_path, loss="adjusted", num_train_epochs=1, eval_strategy="no")
    trainer = NCETrainer(make_model(tiny_bert_dir, "dual"), args, splits["train"], entities)
    output = trainer.train()
    assert torch.isfinite(torch.tensor(output.training_loss))


def test_bad_arguments():
    with pytest.raises(ValueError, match="negatives"):
        NCETrainingArguments(output_dir="x", negatives="semi-hard", use_cpu=True)
    with pytest.raises(ValueError, match="hard_percent"):
        NCETrainingArguments(output_dir="x", negatives="mixed", hard_percent=150, use_cpu=True)


def test_qualitative_report_and_candidate_file_round_trip(tmp_path, tiny_bert_dir, tiny_el):
    from hf_models.index.evaluation import (
        qualitative_report,
        read_candidate_file,
        retrieve,
        write_candidate_file,
    )

    tokenizer, entities, splits = tiny_el
    val = splits["val"]
    rankings = {
        name: retrieve(
            EntityIndex(make_model(tiny_bert_dir, arch), encode_dtype="float32"), val, entities, k=5
        )
        for name, arch in (("som", "som"), ("dual", "dual"))
    }
    report = qualitative_report(val, entities, rankings, num_examples=3, top=4)
    assert report.count("## Mention") == 3 and "| rank | som | dual |" in report
    gold_title = entities.titles[int(val.gold_rows[0])]
    assert gold_title in qualitative_report(val, entities, rankings, num_examples=len(val))

    path = write_candidate_file(tmp_path / "c.jsonl", rankings["som"], val, entities)
    back = read_candidate_file(path, val, entities)
    assert torch.equal(back.rows, rankings["som"].rows)
    assert all(entities.worlds[r] == val.worlds[i] for i, row in enumerate(back.rows.tolist()) for r in row)

    lines = path.read_text().splitlines()
    first = json.loads(lines[0])
    bad = {
        "already has candidates on line": [
            *lines,
            lines[0],
        ],  # a repeated mention: the last line once won silently
        "more than once": [
            json.dumps({**first, "candidates": first["candidates"][:1] * 2, "scores": [0.0, 0.0]})
        ],
        "needs mention_id, candidates and scores": [json.dumps({"mention_id": first["mention_id"]})],
    }
    for message, body in bad.items():
        path.write_text(
            "\n".join(body + lines[1:] if message != "already has candidates on line" else body) + "\n"
        )
        with pytest.raises(ValueError, match=f"c\\.jsonl:\\d+: .*{message}"):
            read_candidate_file(path, val, entities)


@pytest.mark.parametrize(("architecture", "width"), [("dual", 1), ("multi", 8), ("som", None)])
def test_index_stores_reduced_width(tiny_bert_dir, tiny_el, architecture, width):
    """A dual entity is stored as ONE vector (not padded to the sequence length): the one-matmul path applies."""
    tokenizer, entities, splits = tiny_el
    index = EntityIndex(make_model(tiny_bert_dir, architecture), encode_dtype="float32", show_progress=False)
    rep = index.add_world("alpha", *entities.world_subset("alpha")).representation
    longest = int(entities.attention_mask[entities.rows_by_world["alpha"]].sum(1).max())
    assert rep.vectors.shape[1] == (width or longest)
