"""Kill mid-epoch and resume: same final metrics and weights as an uninterrupted run (negatives restored too)."""

import pytest
import torch
from transformers import TrainerCallback

from hf_models.training.checkpoints import load_negatives, negatives_problem
from hf_models.training.mining import MinedNegatives
from hf_models.training.trainer import NEGATIVES_NAME, NCETrainer

from .test_trainer import make_model, tiny_args


class Kill(TrainerCallback):
    def __init__(self, at_step: int):
        self.at_step = at_step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.at_step:
            raise KeyboardInterrupt("simulated kill")


def run(tmp_path, tiny_bert_dir, tiny_el, name, callbacks=(), resume=None, group=False, **overrides):
    tokenizer, entities, splits = tiny_el
    args = tiny_args(
        tmp_path / name,
        save_strategy="steps",
        save_steps=3,
        eval_strategy="no",
        seed=3,
        group_batches_by_world=group,
        **overrides,
    )
    trainer = NCETrainer(
        make_model(tiny_bert_dir),
        args,
        splits["train"],
        entities,
        eval_mentions=splits["val"],
        callbacks=list(callbacks),
    )
    trainer.train(resume_from_checkpoint=resume)
    return trainer


@pytest.mark.parametrize("group", [False, True], ids=["uniform-batches", "world-batches"])
def test_kill_and_resume_matches_uninterrupted(tmp_path, tiny_bert_dir, tiny_el, group):
    full = run(
        tmp_path, tiny_bert_dir, tiny_el, "full", group=group
    )  # 20 mentions / 4 = 5 steps/epoch, 2 epochs
    assert full.mining_callback.history == [0, 1]

    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, tiny_bert_dir, tiny_el, "killed", callbacks=[Kill(at_step=8)], group=group)
    checkpoint = tmp_path / "killed" / "run" / "checkpoint-6"  # one step into epoch 1
    assert (checkpoint / NEGATIVES_NAME).exists()

    resumed = run(tmp_path, tiny_bert_dir, tiny_el, "killed", resume=str(checkpoint), group=group)
    assert resumed.mining_callback.history == [], "the epoch in progress must reuse its saved negatives"
    for (name, a), (_, b) in zip(
        full.model.state_dict().items(), resumed.model.state_dict().items(), strict=True
    ):
        assert torch.allclose(a, b, atol=1e-6), name
    assert resumed.evaluate() == pytest.approx(full.evaluate())


def test_resume_refuses_negatives_mined_for_another_run(tmp_path, tiny_bert_dir, tiny_el):
    """Negatives are stored by row: resuming with other mentions, entities, K or sampler settings is an error naming
    the file and what differs (or, with --resume_remine_negatives, a re-mined epoch), never silent misuse."""
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, tiny_bert_dir, tiny_el, "killed", callbacks=[Kill(at_step=8)])
    checkpoint = tmp_path / "killed" / "run" / "checkpoint-6"
    assert load_negatives(checkpoint).fingerprint["num_negatives"] == 3
    with pytest.raises(ValueError, match=r"checkpoint-6/negatives\.pt: .*num_negatives: saved 3, this run 5"):
        run(tmp_path, tiny_bert_dir, tiny_el, "killed", resume=str(checkpoint), num_candidates=6)
    with pytest.raises(ValueError, match=r"negatives: saved 'hard', this run 'random'"):
        run(tmp_path, tiny_bert_dir, tiny_el, "killed", resume=str(checkpoint), negatives="random")
    remined = run(
        tmp_path,
        tiny_bert_dir,
        tiny_el,
        "killed",
        resume=str(checkpoint),
        num_candidates=6,
        resume_remine_negatives=True,
    )
    assert remined.mining_callback.history == [1]  # the epoch in progress, re-mined with K = 6
    assert remined.store.current.ids.shape[1] == 5


def test_negatives_without_fingerprint_are_checked_by_shape() -> None:
    expected = {"num_mentions": 4, "num_negatives": 2, "num_entities": 10}
    old = MinedNegatives(epoch=0, ids=torch.tensor([[1, 2]] * 4), log_probs=torch.zeros(4, 2))
    assert negatives_problem(old, expected) is None
    assert "[4, 2], this run needs [5, 2]" in negatives_problem(old, {**expected, "num_mentions": 5})
    assert "entity row 2, this run has 2 entities" in negatives_problem(old, {**expected, "num_entities": 2})


def test_mining_interval_zero_mines_once_and_resume_keeps_those_negatives(tmp_path, tiny_bert_dir, tiny_el):
    """--mining_interval 0: the initial model's negatives serve every epoch; a kill + resume in epoch 1 ends with
    the uninterrupted run's weights (the carried-over negatives are saved with the checkpoint)."""
    full = run(tmp_path, tiny_bert_dir, tiny_el, "once", mining_interval=0)
    assert full.mining_callback.history == [0]
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, tiny_bert_dir, tiny_el, "once-killed", callbacks=[Kill(at_step=8)], mining_interval=0)
    checkpoint = tmp_path / "once-killed" / "run" / "checkpoint-6"
    resumed = run(tmp_path, tiny_bert_dir, tiny_el, "once-killed", resume=str(checkpoint), mining_interval=0)
    assert resumed.mining_callback.history == []
    for (name, a), (_, b) in zip(
        full.model.state_dict().items(), resumed.model.state_dict().items(), strict=True
    ):
        assert torch.allclose(a, b, atol=1e-6), name
    every = run(tmp_path, tiny_bert_dir, tiny_el, "every")
    assert every.mining_callback.history == [0, 1]
    assert not torch.equal(every.store.current.ids, full.store.current.ids)  # epoch 1 re-mined vs kept


def test_mining_interval_schedule():
    from hf_models.training.callbacks import NegativeMiningCallback
    from hf_models.training.collator import NegativesStore

    def schedule(interval: int) -> list[int]:
        return [e for e in range(6) if NegativeMiningCallback(None, NegativesStore(), interval).due(e)]

    assert schedule(1) == list(range(6)) and schedule(2) == [0, 2, 4] and schedule(0) == [0]
    with pytest.raises(ValueError, match="mining interval must be >= 0"):
        NegativeMiningCallback(None, NegativesStore(), -1)
