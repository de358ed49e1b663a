"""Trainer callbacks: re-mine negatives at the start of every epoch (Section 6.3)."""

from __future__ import annotations

import logging
import math
from dataclasses import replace
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
    """At the start of every ``interval``-th epoch (the first too) draw each mention's negatives with the current
    model; in the epochs between, the last mined negatives are kept. ``interval`` 1 is the paper (Section 6.3:
    every epoch); 0 mines once, before the first epoch, with the initial model.

    After a resume the trainer restores the negatives saved with the checkpoint: those of the epoch in progress
    are kept instead of being re-mined with the mid-epoch model, and at the start of an epoch that is not due for
    mining they are carried over as the uninterrupted run would.
    """

    def __init__(self, source: NegativeSource, store: NegativesStore, interval: int = 1) -> None:
        if interval < 0:
            raise ValueError(f"mining interval must be >= 0 (0: mine once), got {interval}")
        self.source = source
        self.store = store
        self.interval = interval
        self.history: list[int] = []  # epochs mined by this callback (for inspection and tests)

    def due(self, epoch: int) -> bool:
        """Whether the negatives of ``epoch`` are mined afresh (else the previous epoch's are kept)."""
        return epoch == 0 if self.interval == 0 else epoch % self.interval == 0

    def on_epoch_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        epoch = epoch_index(state)
        current = self.store.current
        if current is not None and current.epoch == epoch:
            logger.info("epoch %d: keeping the negatives restored from the checkpoint", epoch)
            return control
        if current is not None and not self.due(epoch):
            logger.info(
                "epoch %d: keeping the previous epoch's negatives (mining_interval %d)", epoch, self.interval
            )
            self.store.current = replace(current, epoch=epoch)
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
