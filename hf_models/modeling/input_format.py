"""The input format a model was trained with, carried by its config and its saved tokenizer.

A mention is the text ``left [unused0] mention [unused1] right`` and an entity ``title [unused2] text`` (the three
marker strings are config fields: ``mention_start_marker``, ``mention_end_marker``, ``title_marker``). The saved
tokenizer holds the markers as special tokens, so tokenizing that text gives the marker ids. The model sees

* mentions: ``[CLS] left [m_start] mention [m_end] right [SEP]`` in the paper's window of ``max_length`` wordpieces
  (the mention keeps up to ``max_length - 4`` pieces, the context budget left is split around it:
  :func:`window_mention`);
* entities: ``[CLS] title [title_sep] text [SEP]`` cut on the right to ``max_length`` (:func:`window_entity`);
* the joint reranker: ``[CLS] mention-window [SEP] entity-window [SEP]`` (``max_length`` per side).

    fmt = InputFormat.from_config(model.config)
    fmt.mention_text("He met", "the Doctor", "on Gallifrey.")  # 'He met [unused0] the Doctor [unused1] on Gallifrey.'
    fmt.entity_text("The Doctor", "The Doctor is a Time Lord.")  # 'The Doctor [unused2] The Doctor is a Time Lord.'

This file is copied into saved model folders (``trust_remote_code``): it imports only the standard library.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)

DEFAULT_MARKERS = ("[unused0]", "[unused1]", "[unused2]")
MARKER_FIELDS = ("mention_start_marker", "mention_end_marker", "title_marker")
MIN_LENGTH = 8  # [CLS] + start + one mention piece + end + [SEP] + room for context


def check_input_format(markers: tuple[Any, ...], max_length: Any) -> None:
    """Raise ValueError naming the config field when a marker or ``max_length`` is unusable."""
    for field, marker in zip(MARKER_FIELDS, markers, strict=True):
        if not isinstance(marker, str) or not marker.strip() or marker != marker.strip():
            raise ValueError(f"{field} must be a non-empty string without surrounding spaces, got {marker!r}")
    if len(set(markers)) != len(markers):
        raise ValueError(f"{', '.join(MARKER_FIELDS)} must be three different strings, got {markers!r}")
    if max_length is not None and (
        isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < MIN_LENGTH
    ):
        raise ValueError(
            f"max_length must be an int >= {MIN_LENGTH} or None (not recorded), got {max_length!r}"
        )


@dataclass(frozen=True)
class MarkerIds:
    """Ids of the mention-start, mention-end and title-separator markers plus [CLS]/[SEP]/[PAD]."""

    mention_start: int
    mention_end: int
    title_sep: int
    cls: int
    sep: int
    pad: int


def window_mention(
    left: list[int], mention: list[int], right: list[int], ids: MarkerIds, max_length: int
) -> list[int]:
    """Unpadded mention input: the mention keeps up to ``max_length - 4`` pieces, the context the rest.

    The context budget ``max_length - 2 - len(marked mention)`` is split in half; whatever one side cannot use goes
    to the other.
    """
    mention = [ids.mention_start, *mention[: max_length - 4], ids.mention_end]
    budget = max_length - 2 - len(mention)
    left_quota = budget // 2
    right_quota = budget - left_quota
    if len(left) < left_quota:
        right_quota += left_quota - len(left)
    elif len(right) < right_quota:
        left_quota += right_quota - len(right)
    left = left[len(left) - min(left_quota, len(left)) :]
    return [ids.cls, *left, *mention, *right[:right_quota], ids.sep]


def window_entity(title: list[int], text: list[int], ids: MarkerIds, max_length: int) -> list[int]:
    """Unpadded entity input ``[CLS] title [title_sep] text [SEP]`` cut to ``max_length``."""
    body = [*title, ids.title_sep, *text][: max_length - 2]
    return [ids.cls, *body, ids.sep]


def tokenize_parts(tokenizer: Any, parts: list[str]) -> list[list[int]]:
    """Wordpieces of raw text parts; special-token strings inside them ("[unused0]", "[SEP]") are read as text, so
    only the windows place markers and [CLS] / [SEP] (the featurizer tokenizes the same way)."""
    if not parts:
        return []
    return tokenizer(
        parts, add_special_tokens=False, return_attention_mask=False, verbose=False, split_special_tokens=True
    )["input_ids"]


def pad_batch(
    rows: list[list[int]], pad: int, length: int | None = None
) -> tuple[list[list[int]], list[list[int]]]:
    """(rows right-padded to ``length`` or the longest row, attention masks)."""
    length = max((len(row) for row in rows), default=0) if length is None else length
    ids = [row + [pad] * (length - len(row)) for row in rows]
    masks = [[1] * len(row) + [0] * (length - len(row)) for row in rows]
    return ids, masks


@dataclass(frozen=True)
class InputFormat:
    """The marker strings and input length of a model; builds its text format and its token ids.

    Args:
        mention_start_marker / mention_end_marker: around the mention in the mention text.
        title_marker: between the title and the description in the entity text.
        max_length: wordpieces per mention and per entity (joint: per side) as trained; None = not recorded.
    """

    mention_start_marker: str = DEFAULT_MARKERS[0]
    mention_end_marker: str = DEFAULT_MARKERS[1]
    title_marker: str = DEFAULT_MARKERS[2]
    max_length: int | None = None

    def __post_init__(self) -> None:
        check_input_format(self.markers, self.max_length)

    @classmethod
    def from_config(cls, config: Any) -> InputFormat:
        """The format recorded in a RetrieverConfig / JointConfig (older configs: default markers, no length)."""
        markers = [
            getattr(config, field, default)
            for field, default in zip(MARKER_FIELDS, DEFAULT_MARKERS, strict=True)
        ]
        return cls(*markers, max_length=getattr(config, "max_length", None))

    @property
    def markers(self) -> tuple[str, str, str]:
        """(mention start, mention end, title separator)."""
        return (self.mention_start_marker, self.mention_end_marker, self.title_marker)

    # ------------------------------------------------------------------ the documented text format
    def mention_text(self, left: str, mention: str, right: str) -> str:
        """``left <start> mention <end> right`` (empty contexts are dropped)."""
        parts = (
            left.strip(),
            self.mention_start_marker,
            mention.strip(),
            self.mention_end_marker,
            right.strip(),
        )
        return " ".join(part for part in parts if part)

    def entity_text(self, title: str, text: str) -> str:
        """``title <title_marker> text``."""
        return " ".join(part for part in (title.strip(), self.title_marker, text.strip()) if part)

    # ------------------------------------------------------------------ tokenizer
    def prepare_tokenizer(self, tokenizer: Any) -> list[str]:
        """Register the markers as special tokens (never split, lower-cased or truncated into pieces).

        Returns the markers that were NOT in the vocabulary before (they got new ids: grow the model's embeddings
        to cover them); markers already in the vocabulary (BERT's ``[unusedN]``) keep their ids.
        """
        vocab = tokenizer.get_vocab()
        missing = [marker for marker in self.markers if marker not in vocab]
        tokenizer.add_tokens(list(self.markers), special_tokens=True)
        if missing:
            logger.warning(
                "tokenizer had no %s: added them as new special tokens (ids %s)",
                missing,
                tokenizer.convert_tokens_to_ids(missing),
            )
        return missing

    def marker_ids(self, tokenizer: Any) -> MarkerIds:
        """Resolve the marker ids; raises ValueError unless each marker tokenizes to one known id."""
        ids = []
        for field, marker in zip(MARKER_FIELDS, self.markers, strict=True):
            pieces = tokenizer(marker, add_special_tokens=False)["input_ids"]
            if len(pieces) != 1 or pieces[0] == tokenizer.unk_token_id:
                raise ValueError(
                    f"{field}={marker!r} is not one token of {type(tokenizer).__name__} (got ids {pieces}): "
                    "register the markers as special tokens (InputFormat.prepare_tokenizer) or use the tokenizer "
                    "saved with the model"
                )
            ids.append(pieces[0])
        cls = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
        sep = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        if cls is None or sep is None:
            raise ValueError(f"{type(tokenizer).__name__} has neither [CLS]/[SEP] nor BOS/EOS tokens")
        return MarkerIds(*ids, cls=cls, sep=sep, pad=pad)

    def resolve_max_length(
        self, override: int | None = None, default: int | None = None, what: str = "model"
    ) -> int:
        """The input length to use with this model: ``override`` (explicit; logged when it differs from the recorded
        ``max_length``), else the recorded one, else ``default`` (logged as a guess); ValueError when none is known."""
        if override is not None:
            if self.max_length is not None and override != self.max_length:
                logger.warning(
                    "max_length=%d overrides the %d the %s was trained with (explicit override)",
                    override,
                    self.max_length,
                    what,
                )
            return self._length(override)
        if self.max_length is not None:
            return self.max_length
        if default is None:
            raise ValueError(f"max_length: the {what}'s config records no input length; pass max_length=")
        logger.warning(
            "the %s's config records no max_length (saved before the input format was recorded): using %d",
            what,
            default,
        )
        return self._length(default)

    def _length(self, max_length: int | None) -> int:
        length = max_length if max_length is not None else self.max_length
        if length is None:
            raise ValueError(
                "max_length: the model's config does not record its input length; pass max_length= explicitly"
            )
        check_input_format(self.markers, length)
        return length

    # ------------------------------------------------------------------ text -> ids
    def mention_ids_from_text(
        self, tokenizer: Any, texts: list[str], max_length: int | None = None
    ) -> list[list[int]]:
        """Each mention text -> its unpadded model input (the paper's window around the marked mention).

        The text is cut at its two markers and each part tokenized on its own, special-token strings read as text
        (as the featurizer does), so the ids equal the training pipeline's."""
        length, ids = self._length(max_length), self.marker_ids(tokenizer)
        start_marker, end_marker = self.mention_start_marker, self.mention_end_marker
        parts = []
        for text in texts:
            start, end = text.find(start_marker), text.find(end_marker)
            if text.count(start_marker) != 1 or text.count(end_marker) != 1 or end < start:
                raise ValueError(
                    f"mention text {text[:80]!r}: needs exactly one {start_marker!r} followed by one "
                    f"{end_marker!r} (build it with InputFormat.mention_text(left, mention, right))"
                )
            parts += [text[:start], text[start + len(start_marker) : end], text[end + len(end_marker) :]]
        pieces = tokenize_parts(tokenizer, parts)
        return [window_mention(*pieces[i : i + 3], ids, length) for i in range(0, len(pieces), 3)]

    def entity_ids_from_text(
        self, tokenizer: Any, texts: list[str], max_length: int | None = None
    ) -> list[list[int]]:
        """Each entity text -> its unpadded model input (``[CLS] title <title_marker> text [SEP]``, cut on the right),
        cut at its first title marker, each part tokenized on its own as the featurizer does."""
        length, ids = self._length(max_length), self.marker_ids(tokenizer)
        parts = []
        for text in texts:
            split = text.find(self.title_marker)
            if split < 0:
                raise ValueError(
                    f"entity text {text[:80]!r}: no {self.title_marker!r} (build it with "
                    "InputFormat.entity_text(title, text))"
                )
            parts += [text[:split], text[split + len(self.title_marker) :]]
        pieces = tokenize_parts(tokenizer, parts)
        return [window_entity(*pieces[i : i + 2], ids, length) for i in range(0, len(pieces), 2)]

    def encode_mentions(
        self, tokenizer: Any, texts: list[str], max_length: int | None = None
    ) -> dict[str, list]:
        """``{"input_ids", "attention_mask"}`` of mention texts, padded to the longest."""
        ids, masks = pad_batch(
            self.mention_ids_from_text(tokenizer, texts, max_length), self.marker_ids(tokenizer).pad
        )
        return {"input_ids": ids, "attention_mask": masks}

    def encode_entities(
        self, tokenizer: Any, texts: list[str], max_length: int | None = None
    ) -> dict[str, list]:
        """``{"input_ids", "attention_mask"}`` of entity texts, padded to the longest."""
        ids, masks = pad_batch(
            self.entity_ids_from_text(tokenizer, texts, max_length), self.marker_ids(tokenizer).pad
        )
        return {"input_ids": ids, "attention_mask": masks}

    def encode_pairs(
        self, tokenizer: Any, mention_text: str, entity_texts: list[str], max_length: int | None = None
    ) -> dict[str, list]:
        """Joint reranker input ``[CLS] mention [SEP] entity [SEP]`` (+ token types) of one mention x its entities."""
        mention = self.mention_ids_from_text(tokenizer, [mention_text], max_length)[0]
        pairs, types = [], []
        for entity in self.entity_ids_from_text(tokenizer, entity_texts, max_length):
            pairs.append(mention + entity[1:])  # drop the entity's [CLS]
            types.append([0] * len(mention) + [1] * (len(entity) - 1))
        ids, masks = pad_batch(pairs, self.marker_ids(tokenizer).pad)
        token_types, _ = pad_batch(types, 0)
        return {"input_ids": ids, "attention_mask": masks, "token_type_ids": token_types}
