"""Mention detection: a dictionary matcher over the knowledge base's titles and aliases, and the trained
ELQ-style detector (:class:`~hf_models.modeling.modeling_mention_detector.MentionDetectorModel`).

Both take a batch of texts and return, per text, sorted non-overlapping character spans ``(start, end)`` (end
exclusive), so ``text[start:end]`` is the surface.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ahocorasick
import torch

logger = logging.getLogger(__name__)

# Function words and other strings that are glossary/KB titles but almost never mentions when found in text.
DEFAULT_STOP_WORDS = frozenset(
    """a about above after again against all also am an and any are as at be because been before being below
    between both but by can could did do does doing down during each either else even ever every few for from
    further had has have having he her here hers him his how however i if in into is it its itself just least
    less let like many may me might more most much must my neither no nor not now of off often on once one only
    or other our out over own per quite rather same she should since so some still such than that the their
    them then there these they this those though through thus to too under until up upon us very via was we
    were what when where whether which while who whom whose why will with within without would yet you your
    see also e.g. i.e. etc""".split()  # noqa: SIM905
)


def fold(text: str) -> str:
    """Case folding that keeps every character's position (a character whose lower case is longer stays)."""
    return "".join(c if len(low := c.lower()) != 1 else low for c in text)


def _is_word_char(char: str) -> bool:
    return char.isalnum() or char == "_"


@dataclass
class DictionaryDetector:
    """Longest-match, word-bounded, case-folded matching of names (titles and aliases) with Aho-Corasick.

    Args:
        names: the strings to find (titles, aliases).
        case_sensitive: match case exactly (default: fold case, keeping character offsets).
        stop_words: names never matched (compared case-folded); default :data:`DEFAULT_STOP_WORDS`.
        min_length: names shorter than this many characters are never matched.
    """

    names: Iterable[str]
    case_sensitive: bool = False
    stop_words: frozenset[str] = DEFAULT_STOP_WORDS
    min_length: int = 2

    def __post_init__(self) -> None:
        self.automaton = ahocorasick.Automaton()
        stop = {fold(w) for w in self.stop_words}
        kept = 0
        for name in self.names:
            key = " ".join(str(name).split())
            key = key if self.case_sensitive else fold(key)
            if len(key) < self.min_length or fold(key) in stop or key in self.automaton:
                continue
            self.automaton.add_word(key, len(key))
            kept += 1
        self.size = kept
        if kept:
            self.automaton.make_automaton()
        logger.info("dictionary detector over %d names", kept)

    @classmethod
    def from_entities(cls, titles: Iterable[str], aliases: Iterable[Sequence[str]] | None = None, **kwargs):
        """Names = every title plus every alias."""
        names = list(titles)
        for entity_aliases in aliases or []:
            names.extend(entity_aliases or [])
        return cls(names, **kwargs)

    @classmethod
    def from_entity_tables(cls, tables: Iterable[Any], aliases_column: str = "aliases", **kwargs):
        """Names = the titles (and the ``aliases_column`` lists, where a table has one) of entity tables."""
        titles: list[str] = []
        aliases: list[Sequence[str]] = []
        for rows in tables:
            titles.extend(rows["title"])
            if aliases_column in rows.column_names:
                aliases.extend(rows[aliases_column])
        return cls.from_entities(titles, aliases, **kwargs)

    def find(self, text: str) -> list[tuple[int, int]]:
        """Leftmost-longest, non-overlapping, word-bounded matches in one text."""
        if not self.size or not text:
            return []
        haystack = text if self.case_sensitive else fold(text)
        # whitespace runs are matched as one space: search a collapsed copy and map offsets back
        collapsed, positions = [], []
        previous_space = False
        for position, char in enumerate(haystack):
            if char.isspace():
                if previous_space:
                    continue
                char, previous_space = " ", True
            else:
                previous_space = False
            collapsed.append(char)
            positions.append(position)
        collapsed_text = "".join(collapsed)
        matches = []
        for last, length in self.automaton.iter(collapsed_text):
            first = last - length + 1
            start, end = positions[first], positions[last] + 1
            if (start > 0 and _is_word_char(text[start - 1]) and _is_word_char(text[start])) or (
                end < len(text) and _is_word_char(text[end]) and _is_word_char(text[end - 1])
            ):
                continue  # inside a longer word
            matches.append((start, end))
        matches.sort(key=lambda span: (span[0], -span[1]))
        chosen, covered = [], 0
        for start, end in matches:
            if start >= covered:
                chosen.append((start, end))
                covered = end
        return chosen

    def __call__(self, texts: Sequence[str]) -> list[list[tuple[int, int]]]:
        return [self.find(text) for text in texts]


class TrainedDetector:
    """Detect mentions with a :class:`MentionDetectorModel`: texts are cut into overlapping windows, all windows
    of a batch of texts go through the model together, and spans above ``threshold`` are kept greedily by
    probability (no overlaps)."""

    def __init__(
        self,
        model,
        tokenizer,
        *,
        threshold: float | None = None,
        batch_size: int = 32,
        stride: int | None = None,
    ) -> None:
        if not getattr(tokenizer, "is_fast", False):
            raise ValueError("the trained detector needs a fast tokenizer (character offsets)")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.threshold = float(model.config.threshold if threshold is None else threshold)
        self.batch_size = batch_size
        self.max_length = int(model.config.max_length)
        self.stride = stride if stride is not None else self.max_length // 4

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str | torch.device | None = None, **kwargs):
        from transformers import AutoModel, AutoTokenizer

        from ..modeling.modeling_mention_detector import MentionDetectorModel

        model = AutoModel.from_pretrained(str(path), trust_remote_code=False)
        if not isinstance(model, MentionDetectorModel):
            raise TypeError(f"{path} holds a {type(model).__name__}, not a MentionDetectorModel")
        if device is not None:
            model = model.to(device)
        return cls(model, AutoTokenizer.from_pretrained(str(path)), **kwargs)

    @torch.no_grad()
    def __call__(self, texts: Sequence[str]) -> list[list[tuple[int, int]]]:
        return [[(s, e) for s, e, _ in spans] for spans in self.scored(texts)]

    @torch.no_grad()
    def scored(self, texts: Sequence[str]) -> list[list[tuple[int, int, float]]]:
        """Per text, the kept spans with their probabilities."""
        return [greedy_spans(spans, self.threshold) for spans in self.candidates(texts, self.threshold)]

    @torch.no_grad()
    def candidates(self, texts: Sequence[str], floor: float) -> list[dict[tuple[int, int], float]]:
        """Per text, every candidate span above probability ``floor`` (best over overlapping windows)."""
        windows = tokenize_windows(self.tokenizer, texts, self.max_length, self.stride)
        candidates: list[dict[tuple[int, int], float]] = [{} for _ in texts]
        device = next(self.model.parameters()).device
        for first in range(0, len(windows["input_ids"]), self.batch_size):
            part = {k: v[first : first + self.batch_size] for k, v in windows.items()}
            output = self.model(
                input_ids=part["input_ids"].to(device),
                attention_mask=part["attention_mask"].to(device),
                start_mask=part["start_mask"].to(device),
                end_mask=part["end_mask"].to(device),
            )
            probs = output.span_logits.sigmoid().masked_fill(~output.span_mask, 0).cpu()  # [B, T, W]
            for b, i, w in (probs > floor).nonzero().tolist():
                offsets = part["offsets"][b]
                span = (int(offsets[i, 0]), int(offsets[i + w, 1]))
                text_spans = candidates[int(part["text_index"][b])]
                text_spans[span] = max(text_spans.get(span, 0.0), float(probs[b, i, w]))
        return candidates


def greedy_spans(spans: dict[tuple[int, int], float], threshold: float) -> list[tuple[int, int, float]]:
    """The spans above ``threshold``, most probable first, dropping overlaps with kept ones; sorted by start."""
    return _greedy({span: prob for span, prob in spans.items() if prob > threshold})


def _greedy(spans: dict[tuple[int, int], float]) -> list[tuple[int, int, float]]:
    """Most probable first, dropping spans that overlap a kept one; sorted by start."""
    kept: list[tuple[int, int, float]] = []
    for (start, end), prob in sorted(spans.items(), key=lambda item: -item[1]):
        if all(end <= s or start >= e for s, e, _ in kept):
            kept.append((start, end, prob))
    return sorted(kept)


def tokenize_windows(
    tokenizer, texts: Sequence[str], max_length: int, stride: int
) -> dict[str, torch.Tensor]:
    """Overlapping ``[CLS] ... [SEP]`` windows of every text with character offsets and word-boundary masks.

    Returns input_ids, attention_mask, start_mask (first piece of a word), end_mask (last piece of a word),
    offsets [N, T, 2] and text_index [N] (which text each window comes from).
    """
    encoded = tokenizer(
        list(texts),
        max_length=max_length,
        truncation=True,
        stride=stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
        padding="max_length",
        return_tensors="pt",
    )
    count = encoded["input_ids"].shape[0]
    start_mask = torch.zeros(count, max_length, dtype=torch.bool)
    end_mask = torch.zeros(count, max_length, dtype=torch.bool)
    mapping = encoded.get("overflow_to_sample_mapping")
    text_index = mapping if mapping is not None else torch.arange(count)
    for window in range(count):
        words, text = encoded.word_ids(window), texts[int(text_index[window])]
        offsets = encoded["offset_mapping"][window].tolist()
        for t, word in enumerate(words):
            if word is None:
                continue
            first, last = offsets[t]
            # a window cut inside a word: its first/last piece continues a word of the text
            cut_before = first > 0 and _is_word_char(text[first - 1]) and _is_word_char(text[first])
            cut_after = last < len(text) and _is_word_char(text[last]) and _is_word_char(text[last - 1])
            start_mask[window, t] = (t == 0 or words[t - 1] != word) and not (
                words[t - 1] is None and cut_before
            )
            end_mask[window, t] = (t + 1 == len(words) or words[t + 1] != word) and not (
                (t + 1 == len(words) or words[t + 1] is None) and cut_after
            )
    return {
        "input_ids": encoded["input_ids"],
        "attention_mask": encoded["attention_mask"],
        "start_mask": start_mask,
        "end_mask": end_mask,
        "offsets": encoded["offset_mapping"],
        "text_index": text_index,
    }
