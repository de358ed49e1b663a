"""Kill mid-epoch and resume: same final metrics and weights as an uninterrupted run (negatives restored too)."""

import pytest
import torch
from transformers import TrainerCallback

from hf_models.trainer import NEGATIVES_NAME, NCETrainer

from .test_trainer import make_model, tiny_args


class Kill(TrainerCallback):
    def __init__(self, at_step: int):
        self.at_step = at_step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.at_step:
            raise KeyboardInterrupt("simulated kill")


def run(tmp_path, tiny_bert_dir, tiny_el, name, callbacks=(), resume=None, group=False):
    tokenizer, entities, splits = tiny_el
    args = tiny_args(
        tmp_path / name,
        save_strategy="steps",
        save_steps=3,
        eval_strategy="no",
        seed=3,
        group_batches_by_world=group,
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
