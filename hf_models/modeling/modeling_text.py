"""Text-level API of the saved models: score and encode the documented text format (``input_format.py``).

    model = AutoModel.from_pretrained(folder, trust_remote_code=True)
    fmt = model.input_format
    scores = model.score_texts(fmt.mention_text("He met", "the Doctor", "on Gallifrey."),
                               [fmt.entity_text("The Doctor", "A Time Lord."), fmt.entity_text("Dalek", "...")])

The tokenizer is the one saved with the model (loaded from ``model.name_or_path`` on first use) unless one is
passed; its markers must be single special tokens (checked). Inputs are built exactly as the featurizer builds
them (the paper's window around the mention, ``config.max_length`` wordpieces), so the scores equal the training
pipeline's.

This file is copied into saved model folders: it imports only torch, transformers and its sibling files.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import AutoTokenizer

from .input_format import InputFormat
from .scoring import Representation


class _TextMixin:
    """Tokenizer and input-format plumbing shared by the retriever and reranker mixins."""

    @property
    def input_format(self) -> InputFormat:
        """The markers and ``max_length`` recorded in the config."""
        return InputFormat.from_config(self.config)

    def text_tokenizer(self, tokenizer: Any = None) -> Any:
        """``tokenizer``, else the one saved with the model (cached), with its markers checked."""
        if tokenizer is None:
            tokenizer = self.__dict__.get("_text_tokenizer")
        if tokenizer is None:
            if not self.name_or_path:
                raise ValueError(
                    "no tokenizer: pass tokenizer= (the model was not loaded from a folder with from_pretrained)"
                )
            tokenizer = AutoTokenizer.from_pretrained(self.name_or_path)
            self.__dict__["_text_tokenizer"] = tokenizer
        self.input_format.marker_ids(tokenizer)  # raises unless every marker is one known token
        return tokenizer

    def _tensors(self, batch: dict[str, list]) -> dict[str, torch.Tensor]:
        return {
            key: torch.tensor(value, dtype=torch.long, device=self.device) for key, value in batch.items()
        }


class RetrieverTextMixin(_TextMixin):
    """``encode_mention_texts`` / ``encode_entity_texts`` / ``score_texts`` for the eq. (9) retrievers."""

    def _encode_texts(
        self, side: str, texts: list[str], tokenizer: Any, max_length: int | None, batch_size: int
    ) -> torch.Tensor | Representation:
        tokenizer = self.text_tokenizer(tokenizer)
        encode = self.input_format.encode_mentions if side == "mention" else self.input_format.encode_entities
        method = self.encode_mentions if side == "mention" else self.encode_entities
        parts = []
        with torch.no_grad():
            for start in range(0, len(texts), batch_size):
                batch = self._tensors(encode(tokenizer, list(texts[start : start + batch_size]), max_length))
                parts.append(method(batch["input_ids"], batch["attention_mask"]))
        rep = Representation.cat(parts) if len(parts) > 1 else parts[0]
        _, count = self.config.side(side)
        return rep.vectors[:, 0] if count == 1 else rep  # one vector per text: a plain [N, H] tensor

    def encode_mention_texts(
        self, texts: list[str], tokenizer: Any = None, max_length: int | None = None, batch_size: int = 32
    ) -> torch.Tensor | Representation:
        """Mention texts -> [N, H] vectors when the mention side is one vector (dual, multi), else a
        ``Representation`` (``vectors`` [N, L, H], ``mask`` [N, L]) of the mention side."""
        if not texts:
            raise ValueError("encode_mention_texts: no texts")
        return self._encode_texts("mention", texts, tokenizer, max_length, batch_size)

    def encode_entity_texts(
        self, texts: list[str], tokenizer: Any = None, max_length: int | None = None, batch_size: int = 32
    ) -> torch.Tensor | Representation:
        """Entity texts -> [N, H] vectors when the entity side is one vector (dual), else a ``Representation``
        (multi-m: ``vectors`` [N, m, H], the score is the max over them; som: every token)."""
        if not texts:
            raise ValueError("encode_entity_texts: no texts")
        return self._encode_texts("entity", texts, tokenizer, max_length, batch_size)

    def score_texts(
        self,
        mention_text: str,
        entity_texts: list[str],
        tokenizer: Any = None,
        max_length: int | None = None,
        batch_size: int = 32,
    ) -> torch.Tensor:
        """Eq. (9) of one mention text against entity texts -> scores [E]."""
        if not entity_texts:
            raise ValueError("score_texts: no entity texts")
        tokenizer = self.text_tokenizer(tokenizer)
        fmt = self.input_format
        with torch.no_grad():
            mention = self._tensors(fmt.encode_mentions(tokenizer, [mention_text], max_length))
            mention_rep = self.encode_mentions(mention["input_ids"], mention["attention_mask"])
            parts = []
            for start in range(0, len(entity_texts), batch_size):
                batch = self._tensors(
                    fmt.encode_entities(tokenizer, list(entity_texts[start : start + batch_size]), max_length)
                )
                entity_rep = self.encode_entities(batch["input_ids"], batch["attention_mask"])
                parts.append(self.score_all(mention_rep, entity_rep)[0])  # [chunk]
        return torch.cat(parts)  # [E]


class RerankerTextMixin(_TextMixin):
    """``score_texts`` for the joint reranker (a cross-encoder has no separate mention / entity vectors)."""

    def score_texts(
        self,
        mention_text: str,
        entity_texts: list[str],
        tokenizer: Any = None,
        max_length: int | None = None,
        batch_size: int = 32,
    ) -> torch.Tensor:
        """``w^T E_1([CLS] x [SEP] y) + b`` of one mention text against entity texts -> scores [E]."""
        if not entity_texts:
            raise ValueError("score_texts: no entity texts")
        tokenizer = self.text_tokenizer(tokenizer)
        parts = []
        with torch.no_grad():
            for start in range(0, len(entity_texts), batch_size):
                chunk = list(entity_texts[start : start + batch_size])
                batch = self._tensors(
                    self.input_format.encode_pairs(tokenizer, mention_text, chunk, max_length)
                )
                parts.append(self.score(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"]))
        return torch.cat(parts)  # [E]
