"""Gradient bias of hard-negative NCE measured on a real retriever (Zhang & Stratos, 2021, Section 3.1, App. C).

Appendix C measures b(theta) = grad J_CE(theta) - grad J_HARD(theta) (Section 3.1) for a dual encoder on Zeshel:
sample 64 mentions, take as the whole label space Y the 128 entities made of their golds plus, for each mention,
one entity whose description contains the mention; J_CE (eq. 2) normalises over Y, J_HARD (eq. 5) over K = 8
candidates (gold + 7 negatives drawn random / hard / mixed) averaged over 500 negative draws.

- :func:`build_label_space` / :func:`label_space_from_datasets`: that label space, on any tables of the repo's
  schema (docs/design.md).
- :class:`BiasProbe`: the probe mentions' and label-space entities' token tensors + gold positions; turns any
  ``RetrieverModel`` into the differentiable ``score_fn() -> [P, Y]`` that :func:`hf_models.analysis.bias.gradient_bias`
  consumes, and estimates ||b(theta)||.
- :class:`GradientBiasCallback`: opt-in ``TrainerCallback`` that logs ``bias_norm``, ``bias_ce_loss`` and
  ``bias_nce_loss`` for the run's own negative strategy at every evaluation (docs/bias.md).

Cost of one estimate: one forward pass of P mentions + Y entities WITH the autograd graph kept (activation
memory of a P + Y batch), two backward passes (grad J_CE, then grad J_HARD) and three flat vectors of the
model's size (grad J_CE, grad J_HARD, b). The ``num_draws`` Monte-Carlo negative draws only touch the [P, Y]
score matrix and are negligible next to the encoder passes.
"""

from __future__ import annotations

import contextlib
import logging
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from ..index.tables import EntityTable, MentionTable
from .bias import GradientBias, ScoreFn, cross_entropy, gradient_bias

logger = logging.getLogger(__name__)

PARTNER_CONTAINS = "contains"  # an entity whose description contains the mention surface
PARTNER_RANDOM = "random"  # no such entity left: a random other entity of the mention's world
PARTNER_NONE = "none"  # the world has no entity left to add


# ------------------------------------------------------------------------------------------- label space


@dataclass
class LabelSpace:
    """The label space Y of Appendix C over some mention / entity sequences (indices into them).

    mention_indices: the P sampled mentions (positions in the mention sequences), in sampling order.
    entity_indices: the Y label-space entities (positions in the entity sequences): first the distinct golds in
        mention order, then the partners in mention order. Y <= 2P (see :func:`build_label_space`).
    gold: LongTensor [P], position of each sampled mention's gold in ``entity_indices``.
    partner_kinds: [P] how each mention's partner was chosen (``contains`` / ``random`` / ``none``).
    """

    mention_indices: list[int]
    entity_indices: list[int]
    gold: torch.Tensor  # [P]
    partner_kinds: list[str] = field(default_factory=list)

    @property
    def num_mentions(self) -> int:
        return len(self.mention_indices)

    @property
    def num_labels(self) -> int:
        return len(self.entity_indices)

    def summary(self) -> dict[str, int]:
        """Sizes and how the partners were found (for reports)."""
        return {
            "num_mentions": self.num_mentions,
            "num_labels": self.num_labels,
            "num_golds": len(set(self.gold.tolist())),
            **{
                f"partners_{kind}": self.partner_kinds.count(kind)
                for kind in (PARTNER_CONTAINS, PARTNER_RANDOM, PARTNER_NONE)
            },
        }


def _entities_by_world(entity_worlds: Sequence[str]) -> dict[str, list[int]]:
    by_world: dict[str, list[int]] = {}
    for index, world in enumerate(entity_worlds):
        by_world.setdefault(world, []).append(index)
    return by_world


def _pick_partner(
    surface: str,
    candidates: list[int],
    lowered_texts: Sequence[str] | None,
    taken: set[int],
    rng: random.Random,
) -> tuple[int | None, str]:
    """One entity of the mention's world not in ``taken``: a seeded choice among those whose (lower-cased)
    description contains the (lower-cased, stripped) surface, else a seeded random one, else None."""
    free = [e for e in candidates if e not in taken]
    if not free:
        return None, PARTNER_NONE
    needle = surface.strip().lower()
    if lowered_texts is not None and needle:
        matches = [e for e in free if needle in lowered_texts[e]]
        if matches:
            return rng.choice(matches), PARTNER_CONTAINS
    return rng.choice(free), PARTNER_RANDOM


def build_label_space(
    mention_surfaces: Sequence[str],
    mention_worlds: Sequence[str],
    gold_entity_ids: Sequence[str],
    entity_ids: Sequence[str],
    entity_worlds: Sequence[str],
    entity_texts: Sequence[str] | None,
    num_mentions: int = 64,
    seed: int = 0,
) -> LabelSpace:
    """Appendix C's label space: P = ``num_mentions`` seeded mentions, their golds and one partner each.

    Exactly:

    1. ``random.Random(seed).sample`` picks P = min(num_mentions, N) distinct mentions (in that order).
    2. Y starts with their golds, deduplicated (two mentions may share a gold), in mention order.
    3. For each sampled mention in order, one partner not yet in Y is added: an entity of the mention's world
       whose raw description (``entity_texts``, case-insensitive substring match) contains the mention surface,
       chosen uniformly (same seeded generator) among the matches; if none is left (or ``entity_texts`` is
       None), a uniformly chosen other entity of the same world; if the world has no entity left, nothing.

    Hence |Y| <= 2P, with equality when the golds are distinct and every world has enough entities.
    Returns a :class:`LabelSpace` of indices into the given sequences.
    """
    if num_mentions < 1:
        raise ValueError(f"num_mentions must be >= 1, got {num_mentions}")
    row_of = {entity_id: index for index, entity_id in enumerate(entity_ids)}
    missing = sorted({g for g in gold_entity_ids if g not in row_of})
    if missing:
        raise ValueError(f"{len(missing)} gold entity id(s) missing from the entities, e.g. {missing[:3]}")
    rng = random.Random(seed)
    mention_indices = rng.sample(range(len(mention_surfaces)), min(num_mentions, len(mention_surfaces)))
    entity_indices: list[int] = []
    position: dict[int, int] = {}
    for m in mention_indices:
        g = row_of[gold_entity_ids[m]]
        if g not in position:
            position[g] = len(entity_indices)
            entity_indices.append(g)
    gold = torch.tensor([position[row_of[gold_entity_ids[m]]] for m in mention_indices], dtype=torch.long)
    by_world = _entities_by_world(entity_worlds)
    lowered = None if entity_texts is None else [text.lower() for text in entity_texts]
    kinds = []
    for m in mention_indices:
        partner, kind = _pick_partner(
            mention_surfaces[m], by_world.get(mention_worlds[m], []), lowered, set(position), rng
        )
        kinds.append(kind)
        if partner is not None:
            position[partner] = len(entity_indices)
            entity_indices.append(partner)
    space = LabelSpace(mention_indices, entity_indices, gold, kinds)
    logger.info("label space (App. C): %s", space.summary())
    return space


def label_space_from_datasets(mentions, entities, num_mentions: int = 64, seed: int = 0) -> LabelSpace:
    """:func:`build_label_space` over raw processed tables (``datasets.Dataset`` or dicts of columns):
    mentions with ``mention``/``world``/``label_id``, entities with ``entity_id``/``world``/``text``."""
    return build_label_space(
        list(mentions["mention"]),
        list(mentions["world"]),
        list(mentions["label_id"]),
        list(entities["entity_id"]),
        list(entities["world"]),
        list(entities["text"]),
        num_mentions,
        seed,
    )


# ------------------------------------------------------------------------------------------------- probe


def trainable_parameters(model: nn.Module) -> list[torch.Tensor]:
    """Parameters with ``requires_grad`` (those the scores do not use, e.g. BERT's pooler, get zero gradient
    in ``hf_models.analysis.bias.flat_grad`` and so do not change ||b||)."""
    return [p for p in model.parameters() if p.requires_grad]


@contextlib.contextmanager
def evaluation_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode (no dropout: b(theta) is a deterministic function of theta) with grads on; restores the mode."""
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            yield
    finally:
        model.train(was_training)


@dataclass
class BiasProbe:
    """Fixed inputs for measuring b(theta) on a label space (Appendix C).

    mention_input_ids / mention_attention_mask: [P, T] the probe mentions.
    entity_input_ids / entity_attention_mask: [Y, T'] the whole label space Y.
    gold: [P] position of each mention's gold among the Y entities.
    """

    mention_input_ids: torch.Tensor  # [P, T]
    mention_attention_mask: torch.Tensor  # [P, T]
    entity_input_ids: torch.Tensor  # [Y, T']
    entity_attention_mask: torch.Tensor  # [Y, T']
    gold: torch.Tensor  # [P]

    def __post_init__(self) -> None:
        if self.gold.shape != (self.mention_input_ids.shape[0],):
            raise ValueError(
                f"gold must be [P] = [{self.mention_input_ids.shape[0]}], got {tuple(self.gold.shape)}"
            )
        if self.gold.numel() and int(self.gold.max()) >= self.num_labels:
            raise ValueError(f"gold positions must be < Y = {self.num_labels}")

    @property
    def num_mentions(self) -> int:
        return int(self.mention_input_ids.shape[0])

    @property
    def num_labels(self) -> int:
        return int(self.entity_input_ids.shape[0])

    @classmethod
    def from_tables(cls, mentions: MentionTable, entities: EntityTable, space: LabelSpace) -> BiasProbe:
        """Probe over ``space`` built on these tables' rows (``space`` indexes ``mentions`` and ``entities``)."""
        m_rows = torch.tensor(space.mention_indices, dtype=torch.long)
        e_rows = torch.tensor(space.entity_indices, dtype=torch.long)
        position = {int(r): i for i, r in enumerate(e_rows)}
        gold_rows = mentions.gold_rows[m_rows].tolist()
        if any(position.get(int(r)) != int(g) for r, g in zip(gold_rows, space.gold.tolist(), strict=True)):
            raise ValueError("label space golds do not match the mention table's gold rows")
        return cls(
            mentions.input_ids[m_rows],
            mentions.attention_mask[m_rows],
            entities.input_ids[e_rows],
            entities.attention_mask[e_rows],
            space.gold.clone(),
        )

    @classmethod
    def from_training_tables(
        cls,
        mentions: MentionTable,
        entities: EntityTable,
        num_mentions: int = 64,
        seed: int = 0,
        entity_texts: Sequence[str] | None = None,
    ) -> BiasProbe:
        """Sample the label space from featurized tables. ``entity_texts`` [E] (raw descriptions aligned with
        ``entities``) enables the "description contains the mention" partners; without it every partner is a
        random entity of the mention's world (tables keep token ids, not raw text)."""
        gold_ids = [entities.entity_ids[int(r)] for r in mentions.gold_rows]
        space = build_label_space(
            mentions.surfaces, mentions.worlds, gold_ids, entities.entity_ids, entities.worlds,
            entity_texts, num_mentions, seed,
        )  # fmt: skip
        return cls.from_tables(mentions, entities, space)

    def scores(self, model: nn.Module) -> torch.Tensor:
        """s_theta(x_p, y) for every probe mention and label, [P, Y], differentiable w.r.t. the model."""
        device = next(model.parameters()).device
        mention_rep = model.encode_mentions(
            self.mention_input_ids.to(device), self.mention_attention_mask.to(device)
        )  # [P, L, H]
        entity_rep = model.encode_entities(
            self.entity_input_ids.to(device), self.entity_attention_mask.to(device)
        )  # [Y, L', H]
        return model.score_all(mention_rep, entity_rep).float()  # [P, Y]

    def score_fn(self, model: nn.Module) -> ScoreFn:
        """Closure ``() -> [P, Y]`` over ``model`` for ``hf_models.analysis.bias`` (gradients kept)."""
        return lambda: self.scores(model)

    def estimate(
        self,
        model: nn.Module,
        strategy: str,
        num_negatives: int,
        num_draws: int,
        hard_fraction: float = 0.5,
        seed: int = 0,
    ) -> GradientBias:
        """b(theta) = grad J_CE - grad J_HARD (Section 3.1) on this label space (Appendix C).

        J_CE (eq. 2) normalises over the Y labels; J_HARD (eq. 5) over K = num_negatives + 1 candidates, averaged
        over ``num_draws`` draws of ``strategy`` negatives (``hf_models.training.samplers``; seeded by ``seed``).
        Gradients w.r.t. :func:`trainable_parameters`; runs in eval mode and restores the model's mode.
        """
        if not 1 <= num_negatives <= self.num_labels - 1:
            raise ValueError(
                f"num_negatives (K - 1) must be in [1, Y - 1 = {self.num_labels - 1}], got {num_negatives}"
            )
        generator = torch.Generator().manual_seed(seed)
        with evaluation_mode(model):
            gold = self.gold.to(next(model.parameters()).device)
            return gradient_bias(
                self.score_fn(model), trainable_parameters(model), gold, strategy, num_negatives,
                num_draws, generator, hard_fraction=hard_fraction,
            )  # fmt: skip

    @torch.no_grad()
    def evaluate(self, model: nn.Module) -> dict[str, float]:
        """J_CE (eq. 2) over Y and accuracy (argmax over Y is the gold) without gradients, eval mode."""
        was_training = model.training
        model.eval()
        try:
            scores = self.scores(model)  # [P, Y]
        finally:
            model.train(was_training)
        gold = self.gold.to(scores.device)
        return {
            "ce_loss": cross_entropy(scores, gold).item(),
            "accuracy": (scores.argmax(-1) == gold).float().mean().item(),
        }


# ---------------------------------------------------------------------------------------------- callback


LogFn = Callable[[dict[str, float]], None]


class GradientBiasCallback(TrainerCallback):
    """Opt-in: at every evaluation, estimate ||b(theta)|| for the run's OWN negatives and log it.

    At ``on_evaluate`` the probe (:class:`BiasProbe`) measures b(theta) = grad J_CE - grad J_HARD (Section 3.1,
    Appendix C) with ``args.negatives`` (``hard_percent`` for mixed) and K - 1 = min(args.num_candidates - 1,
    Y - 1) negatives over ``num_draws`` draws, then calls ``log_fn`` (``trainer.log``: TensorBoard / W&B via
    ``report_to`` and ``state.log_history``) with ``bias_norm``, ``bias_ce_loss`` (J_CE over Y) and
    ``bias_nce_loss`` (Monte-Carlo J_HARD). The model is put back in its training mode and ``.grad`` buffers
    are untouched (``torch.autograd.grad``).

    Cost per evaluation: one forward pass of P mentions + Y entities with the graph kept, two backward passes,
    and three flat vectors of the model's size. Runs on the main process only (not for FSDP / ZeRO-3 sharded
    parameters). Draws are re-seeded with ``seed`` each time, so successive values differ only through theta.

    Build with :meth:`from_trainer` (samples the probe from ``trainer.train_mentions`` / ``trainer.entities``)
    or pass a probe and a ``log_fn``. ``strategy``, ``num_negatives`` and ``hard_fraction`` override the args.
    """

    def __init__(
        self,
        probe: BiasProbe,
        log_fn: LogFn | None = None,
        num_draws: int = 100,
        seed: int = 0,
        strategy: str | None = None,
        num_negatives: int | None = None,
        hard_fraction: float | None = None,
    ) -> None:
        self.probe, self.log_fn, self.num_draws, self.seed = probe, log_fn, num_draws, seed
        self.strategy, self.num_negatives, self.hard_fraction = strategy, num_negatives, hard_fraction
        self.history: list[dict[str, float]] = []  # every logged record (for inspection and tests)

    @classmethod
    def from_trainer(
        cls,
        trainer,
        num_mentions: int = 64,
        num_draws: int = 100,
        seed: int = 0,
        entity_texts: Sequence[str] | None = None,
    ) -> GradientBiasCallback:
        """Probe sampled from the trainer's training tables (see ``BiasProbe.from_training_tables``), logging
        through ``trainer.log``. Add it with ``trainer.add_callback(callback)``."""
        probe = BiasProbe.from_training_tables(
            trainer.train_mentions, trainer.entities, num_mentions, seed, entity_texts
        )
        return cls(probe, trainer.log, num_draws=num_draws, seed=seed)

    def settings(self, args: TrainingArguments) -> tuple[str, int, float]:
        """(strategy, K - 1, hard fraction) for this run: the overrides or the NCE training arguments."""
        strategy = self.strategy or getattr(args, "negatives", "hard")
        requested = self.num_negatives or getattr(args, "num_candidates", 64) - 1
        num_negatives = max(1, min(requested, self.probe.num_labels - 1))
        hard_fraction = self.hard_fraction
        if hard_fraction is None:
            hard_fraction = getattr(args, "hard_percent", 50.0) / 100.0
        return strategy, num_negatives, hard_fraction

    def measure(self, model: nn.Module, args: TrainingArguments) -> dict[str, float]:
        """One estimate -> {"bias_norm", "bias_ce_loss", "bias_nce_loss"}."""
        strategy, num_negatives, hard_fraction = self.settings(args)
        result = self.probe.estimate(model, strategy, num_negatives, self.num_draws, hard_fraction, self.seed)
        return {
            "bias_norm": result.bias_norm,
            "bias_ce_loss": result.ce_loss,
            "bias_nce_loss": result.nce_loss,
        }

    def on_evaluate(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, model=None, **kwargs
    ):
        if model is None or not state.is_world_process_zero:
            return control
        record = self.measure(model, args)
        self.history.append({"step": state.global_step, **record})
        logger.info("step %d: gradient bias %s", state.global_step, record)
        if self.log_fn is not None:
            self.log_fn(record)
        return control
