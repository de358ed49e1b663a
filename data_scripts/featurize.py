"""The paper's model inputs, built from ANY tokenizer (hard-nce-el / BLINK conventions).

Mention: ``[CLS] left [m_start] mention [m_end] right [SEP]`` — exactly ``max_length`` ids (padded). The context
budget left after the mention is split in half; the left side gets ``(budget - mention) // 2`` and whatever one
side cannot use goes to the other. Entity: ``[CLS] title [title_sep] text [SEP]`` truncated/padded to
``max_length``. The three marker tokens default to BERT's free ``[unused0]``, ``[unused1]``, ``[unused2]``;
:func:`prepare_tokenizer` registers them as special tokens (new ids only for markers the vocabulary lacks: then
the model's embeddings must grow to cover them). The text form of these inputs and the ids are defined in
:mod:`hf_models.modeling.input_format`, which saved models carry.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import datasets

from hf_models.modeling.input_format import (
    DEFAULT_MARKERS,
    InputFormat,
    MarkerIds,
    tokenize_parts,
    window_entity,
    window_mention,
)

logger = logging.getLogger(__name__)
_SPACE = re.compile(r"[ \t\n\r]")

Markers = MarkerIds  # ids of the three markers plus [CLS]/[SEP]/[PAD]
# The paper's windows: one implementation, in hf_models/modeling/input_format.py (shipped inside every saved model).
mention_ids = window_mention
entity_ids = window_entity


def prepare_tokenizer(tokenizer, markers: tuple[str, str, str] = DEFAULT_MARKERS) -> int:
    """Register the marker tokens as special tokens (so raw text never splits them).

    Returns how many markers were NOT in the vocabulary (0 for BERT-family vocabularies with ``[unusedN]``);
    only those got new ids, and only then must the model's embeddings grow (the recipes do it and log it).
    """
    return len(InputFormat(*markers).prepare_tokenizer(tokenizer))


def marker_ids(tokenizer, markers: tuple[str, str, str] = DEFAULT_MARKERS) -> Markers:
    """Resolve marker ids; raises if a marker is not one known token (call :func:`prepare_tokenizer` first)."""
    return InputFormat(*markers).marker_ids(tokenizer)


def pad_to(ids: list[int], max_length: int, pad: int) -> tuple[list[int], list[int]]:
    """(ids padded to `max_length`, attention mask)."""
    return ids + [pad] * (max_length - len(ids)), [1] * len(ids) + [0] * (max_length - len(ids))


def _tokenize(tokenizer, texts: list[str]) -> list[list[int]]:
    """Wordpieces of raw texts, special-token strings read as text (one implementation with the saved models')."""
    return tokenize_parts(tokenizer, list(texts))


def _word_window(text: str, limit: int, from_left: bool) -> str:
    """The last (``from_left``) or first ~``limit`` characters of ``text``, cut at a space so no word is split (the
    window's wordpieces are then exactly the whole text's at that end); the whole text when it is short, a plain cut
    when there is no space to cut at (CJK text, a long URL)."""
    if len(text) <= limit:
        return text
    if from_left:
        match = _SPACE.search(text, len(text) - limit)
        return text[match.start() :] if match else text[-limit:]  # no space (CJK, a URL): a plain cut
    cut = max(text.rfind(space, 0, limit) for space in " \t\n\r")
    return text[:cut] if cut > 0 else text[:limit]


def _tokenize_near_end(tokenizer, texts: list[str], max_length: int, from_left: bool) -> list[list[int]]:
    """Wordpieces of each text, of which the window keeps at most ``max_length`` at the end nearest the mention
    (left contexts: their end; right contexts and entity texts: their start), without tokenizing whole documents:
    a long text is first cut to a word-aligned window of 16 x ``max_length`` characters, and tokenized whole only
    when that window gave fewer than ``max_length`` pieces (runs of spaces or format characters make none). The
    pieces a window keeps are therefore always the whole text's."""
    windows = [_word_window(text, 16 * max_length, from_left) for text in texts]
    pieces = _tokenize(tokenizer, windows)
    short = [i for i, window in enumerate(windows) if window is not texts[i] and len(pieces[i]) < max_length]
    if short:
        for i, whole in zip(short, _tokenize(tokenizer, [texts[i] for i in short]), strict=True):
            pieces[i] = whole
    return pieces


def _featurize_mention_batch(
    batch: dict[str, list[Any]], tokenizer, markers: Markers, max_length: int
) -> dict:
    lefts = _tokenize_near_end(tokenizer, batch["left_context"], max_length, from_left=True)
    surfaces = _tokenize(tokenizer, batch["mention"])
    rights = _tokenize_near_end(tokenizer, batch["right_context"], max_length, from_left=False)
    ids, masks = [], []
    for left, surface, right in zip(lefts, surfaces, rights, strict=True):
        padded, mask = pad_to(mention_ids(left, surface, right, markers, max_length), max_length, markers.pad)
        ids.append(padded)
        masks.append(mask)
    return {"mention_input_ids": ids, "mention_attention_mask": masks}


def _featurize_entity_batch(
    batch: dict[str, list[Any]], tokenizer, markers: Markers, max_length: int
) -> dict:
    titles = _tokenize(tokenizer, batch["title"])
    texts = _tokenize_near_end(tokenizer, batch["text"], max_length, from_left=False)
    ids, masks = [], []
    for title, text in zip(titles, texts, strict=True):
        padded, mask = pad_to(entity_ids(title, text, markers, max_length), max_length, markers.pad)
        ids.append(padded)
        masks.append(mask)
    return {"entity_input_ids": ids, "entity_attention_mask": masks}


def _featurize(dataset, function, tokenizer, max_length, num_proc, markers, desc, batch_size):
    if max_length < 8:
        raise ValueError(f"max_length must be >= 8, got {max_length}")
    ids = marker_ids(tokenizer, markers)
    return dataset.map(
        function,
        batched=True,
        batch_size=batch_size,
        num_proc=num_proc if num_proc and num_proc > 1 else None,
        fn_kwargs={"tokenizer": tokenizer, "markers": ids, "max_length": max_length},
        desc=desc,
        features=None,
    )


def featurize_mentions(
    mentions: datasets.Dataset | datasets.DatasetDict,
    tokenizer,
    max_length: int = 128,
    num_proc: int | None = None,
    markers: tuple[str, str, str] = DEFAULT_MARKERS,
    batch_size: int = 1000,
):
    """Add `mention_input_ids` / `mention_attention_mask` (each exactly `max_length`) to a mention table."""
    return _featurize(
        mentions,
        _featurize_mention_batch,
        tokenizer,
        max_length,
        num_proc,
        markers,
        "featurize mentions",
        batch_size,
    )


def featurize_entities(
    entities: datasets.Dataset,
    tokenizer,
    max_length: int = 128,
    num_proc: int | None = None,
    markers: tuple[str, str, str] = DEFAULT_MARKERS,
    batch_size: int = 1000,
):
    """Add `entity_input_ids` / `entity_attention_mask` (each exactly `max_length`) to an entity table."""
    return _featurize(
        entities,
        _featurize_entity_batch,
        tokenizer,
        max_length,
        num_proc,
        markers,
        "featurize entities",
        batch_size,
    )
