"""Trainer callbacks: re-mine negatives at the start of every epoch (Section 6.3)."""

from __future__ import annotations

import logging
import math
from typing import Protocol

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from .collator import NegativesStore
from .mining import MinedNegatives

logger = logging.getLogger(__name__)


class NegativeSource(Protocol):
    def mine(self, epoch: int) -> MinedNegatives: ...


def epoch_index(state: TrainerState) -> int:
    """The 0-based epoch that is starting (or, after a mid-epoch resume, that is in progress)."""
    return int(math.floor((state.epoch or 0.0) + 1e-6))


class NegativeMiningCallback(TrainerCallback):
    """At the start of EVERY epoch (the first too) draw each mention's negatives with the current model.

    After a mid-epoch resume the trainer restores the negatives saved with the checkpoint, which belong to the
    epoch in progress: they are kept instead of being re-mined with the mid-epoch model.
    """

    def __init__(self, source: NegativeSource, store: NegativesStore) -> None:
        self.source = source
        self.store = store
        self.history: list[int] = []  # epochs mined by this callback (for inspection and tests)

    def on_epoch_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        epoch = epoch_index(state)
        if self.store.current is not None and self.store.current.epoch == epoch:
            logger.info("epoch %d: keeping the negatives restored from the checkpoint", epoch)
            return control
        logger.info("epoch %d: mining negatives with the current model", epoch)
        self.store.current = self.source.mine(epoch)
        self.history.append(epoch)
        return control


class FixedNegatives:
    """A negative source that returns the same negatives every epoch (reranker training on a candidate file)."""

    def __init__(self, negatives: MinedNegatives) -> None:
        self.negatives = negatives

    def mine(self, epoch: int) -> MinedNegatives:
        return MinedNegatives(epoch=epoch, ids=self.negatives.ids, log_probs=self.negatives.log_probs)
