"""The paper's model inputs, built from ANY tokenizer (hard-nce-el / BLINK conventions).

Mention: ``[CLS] left [m_start] mention [m_end] right [SEP]`` — exactly ``max_length`` ids (padded). The context
budget left after the mention is split in half; the left side gets ``(budget - mention) // 2`` and whatever one
side cannot use goes to the other. Entity: ``[CLS] title [title_sep] text [SEP]`` truncated/padded to
``max_length``. The three marker tokens default to BERT's free ``[unused0]``, ``[unused1]``, ``[unused2]``;
:func:`prepare_tokenizer` adds them as special tokens when the vocabulary lacks them (then resize the model's
embeddings to ``len(tokenizer)``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import datasets

logger = logging.getLogger(__name__)

DEFAULT_MARKERS = ("[unused0]", "[unused1]", "[unused2]")


@dataclass(frozen=True)
class Markers:
    """Ids of the mention-start, mention-end and title-separator tokens plus [CLS]/[SEP]/[PAD]."""

    mention_start: int
    mention_end: int
    title_sep: int
    cls: int
    sep: int
    pad: int


def prepare_tokenizer(tokenizer, markers: tuple[str, str, str] = DEFAULT_MARKERS) -> int:
    """Register the marker tokens as special tokens (so raw text never splits them).

    Returns how many NEW ids the vocabulary gained (0 for BERT-family vocabularies with ``[unusedN]``); when
    positive, call ``model.resize_token_embeddings(len(tokenizer))``.
    """
    before = len(tokenizer)
    tokenizer.add_tokens(list(markers), special_tokens=True)
    added = len(tokenizer) - before
    if added:
        logger.warning(
            "tokenizer had no %s: added %d special token(s); resize the model embeddings to %d",
            markers,
            added,
            len(tokenizer),
        )
    return added


def marker_ids(tokenizer, markers: tuple[str, str, str] = DEFAULT_MARKERS) -> Markers:
    """Resolve marker ids; raises if a marker is unknown (call :func:`prepare_tokenizer` first)."""
    ids = tokenizer.convert_tokens_to_ids(list(markers))
    unknown = [m for m, i in zip(markers, ids, strict=True) if i is None or i == tokenizer.unk_token_id]
    if unknown:
        raise ValueError(
            f"tokenizer does not know {unknown}; call data_scripts.featurize.prepare_tokenizer first"
        )
    cls = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
    sep = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    if cls is None or sep is None:
        raise ValueError(f"{type(tokenizer).__name__} has neither [CLS]/[SEP] nor BOS/EOS tokens")
    return Markers(*ids, cls=cls, sep=sep, pad=pad)


def pad_to(ids: list[int], max_length: int, pad: int) -> tuple[list[int], list[int]]:
    """(ids padded to `max_length`, attention mask)."""
    return ids + [pad] * (max_length - len(ids)), [1] * len(ids) + [0] * (max_length - len(ids))


def mention_ids(
    left: list[int], mention: list[int], right: list[int], markers: Markers, max_length: int
) -> list[int]:
    """Unpadded mention input: the mention keeps up to ``max_length - 4`` pieces, the context the rest."""
    mention = [markers.mention_start, *mention[: max_length - 4], markers.mention_end]
    budget = max_length - 2 - len(mention)
    left_quota = budget // 2
    right_quota = budget - left_quota
    if len(left) < left_quota:
        right_quota += left_quota - len(left)
    elif len(right) < right_quota:
        left_quota += right_quota - len(right)
    left = left[len(left) - min(left_quota, len(left)) :]
    return [markers.cls, *left, *mention, *right[:right_quota], markers.sep]


def entity_ids(title: list[int], text: list[int], markers: Markers, max_length: int) -> list[int]:
    """Unpadded entity input ``[CLS] title [title_sep] text [SEP]`` truncated to `max_length`."""
    body = [*title, markers.title_sep, *text][: max_length - 2]
    return [markers.cls, *body, markers.sep]


def _tokenize(tokenizer, texts: list[str]) -> list[list[int]]:
    return tokenizer(texts, add_special_tokens=False, return_attention_mask=False, verbose=False)["input_ids"]


def _clip_chars(texts: list[str], max_length: int, from_left: bool) -> list[str]:
    """Cut contexts to a generous character window before tokenizing (a wordpiece is never < 1 char)."""
    limit = 16 * max_length
    return [t[-limit:] if from_left else t[:limit] for t in texts]


def _featurize_mention_batch(
    batch: dict[str, list[Any]], tokenizer, markers: Markers, max_length: int
) -> dict:
    lefts = _tokenize(tokenizer, _clip_chars(batch["left_context"], max_length, from_left=True))
    surfaces = _tokenize(tokenizer, batch["mention"])
    rights = _tokenize(tokenizer, _clip_chars(batch["right_context"], max_length, from_left=False))
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
    texts = _tokenize(tokenizer, _clip_chars(batch["text"], max_length, from_left=False))
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
