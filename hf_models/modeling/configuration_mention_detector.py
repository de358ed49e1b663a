"""Configuration of the ELQ-style mention detector (Li et al., 2020): span scores from start/end/inside logits.

This file is copied into saved model folders (``trust_remote_code``): it imports only transformers.
"""

from __future__ import annotations

from typing import Any

from transformers import AutoConfig, PreTrainedConfig


class MentionDetectorConfig(PreTrainedConfig):
    """A backbone over raw text and a linear head giving each token a start, an end and an inside logit.

    Args:
        encoder: the backbone config dict (e.g. a retriever's ``mention_encoder`` config).
        max_span_width: the longest candidate span, in wordpieces.
        max_length: wordpieces per window, ``[CLS]`` and ``[SEP]`` included (longer texts are windowed).
        threshold: the default probability above which a span is a mention.
    """

    model_type = "nce-mention-detector"

    encoder: dict[str, Any] | None = None
    max_span_width: int = 10
    max_length: int = 128
    threshold: float = 0.5

    def __post_init__(self, **kwargs: Any) -> None:
        super().__post_init__(**kwargs)
        if self.encoder is not None and not isinstance(self.encoder, dict):
            raise ValueError(f"encoder must be a backbone config dict, got {type(self.encoder).__name__}")
        if not isinstance(self.max_span_width, int) or self.max_span_width < 1:
            raise ValueError(f"max_span_width must be a positive int, got {self.max_span_width!r}")
        if not isinstance(self.max_length, int) or self.max_length < 8:
            raise ValueError(f"max_length must be an int >= 8, got {self.max_length!r}")
        if not 0.0 < float(self.threshold) < 1.0:
            raise ValueError(f"threshold must be a probability in (0, 1), got {self.threshold!r}")


MentionDetectorConfig.register_for_auto_class("AutoConfig")
AutoConfig.register(MentionDetectorConfig.model_type, MentionDetectorConfig, exist_ok=True)
