"""What the linker returns: per text, its mentions (character span, surface) with ranked entities, probabilities
and a NIL decision."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch


@dataclass
class LinkedEntity:
    """One ranked entity of a mention: raw score (retriever, or reranker when given) and its probability."""

    entity_id: str
    title: str
    description: str
    score: float
    probability: float
    world: str


@dataclass
class MentionLink:
    """A mention ``text[start:end] == surface`` (end exclusive) and its entities, best first.

    ``nil`` is True when the best probability is under the linker's NIL threshold; ``entity_id`` is then None.
    """

    start: int
    end: int
    surface: str
    entities: list[LinkedEntity]
    nil: bool = False
    source: str | None = None  # with an alias table: "alias" (its candidates) or "index" (whole-world search)

    @property
    def entity_id(self) -> str | None:
        return None if self.nil or not self.entities else self.entities[0].entity_id

    def to_dict(self) -> dict[str, Any]:
        return {
            "start": self.start,
            "end": self.end,
            "surface": self.surface,
            "entity_id": self.entity_id,
            "nil": self.nil,
            "entities": [asdict(e) for e in self.entities],
            **({"source": self.source} if self.source is not None else {}),
        }


@dataclass
class LinkResult:
    """One input text (markers removed) and its linked mentions in text order."""

    text: str
    world: str
    mentions: list[MentionLink] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "world": self.world, "mentions": [m.to_dict() for m in self.mentions]}


def ranked_entities(
    rows: Sequence[int],
    scores: Sequence[float],
    probabilities: Sequence[float],
    world: str,
    ids: Sequence[str],
    titles: Sequence[str],
    description: Callable[[int], str],
) -> list[LinkedEntity]:
    """A mention's entities from its ranked world rows (-1 = padding, skipped), scores and probabilities."""
    return [
        LinkedEntity(
            entity_id=ids[r],
            title=titles[r],
            description=description(r),
            score=float(s),
            probability=float(p),
            world=world,
        )
        for r, s, p in zip(rows, scores, probabilities, strict=True)
        if r >= 0
    ]


def candidate_probabilities(scores: torch.Tensor) -> torch.Tensor:
    """p(y | x, candidates) = exp(s(x, y)) / sum_{y' in candidates} exp(s(x, y')) over each row's candidates.

    The model distribution of the paper's NCE objective restricted to the retrieved top-k (or the reranker's
    candidates); padding candidates (score -inf) get 0. scores [N, k] -> [N, k].
    """
    finite = torch.isfinite(scores)
    safe = scores.masked_fill(~finite, float("-inf"))
    probs = torch.softmax(safe.float(), dim=-1)
    return torch.nan_to_num(probs, nan=0.0).masked_fill(~finite, 0.0)


def short_description(title: str, text: str, max_chars: int = 160) -> str:
    """The entity text's first sentence (its leading title dropped), cut at a word under ``max_chars``."""
    body = " ".join(text.split())
    if title and body.lower().startswith(title.lower()):
        rest = body[len(title) :].lstrip(" :-,")
        body = rest or body
    for stop in (". ", "? ", "! "):
        position = body.find(stop)
        if 0 < position < max_chars:
            body = body[: position + 1]
    if len(body) > max_chars:
        cut = body[:max_chars].rsplit(" ", 1)[0]
        body = (cut or body[:max_chars]) + "..."
    return body


def check_threshold(value: float, name: str) -> float:
    if not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {value!r}")
    return float(value)
