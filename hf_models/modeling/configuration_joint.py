"""Configuration of the joint reranker (Section 6.2): s = w^T E_1([CLS] x [SEP] y) + b.

This file is copied into saved model folders (``trust_remote_code``): it imports only transformers.
"""

from __future__ import annotations

from typing import Any

from transformers import AutoConfig, PreTrainedConfig

from .input_format import DEFAULT_MARKERS, check_input_format

LOSSES = ("nce", "adjusted")


class JointConfig(PreTrainedConfig):
    """The cross-encoder ("joint") reranker.

    Args:
        encoder: the backbone config dict (e.g. ``BertConfig().to_dict()``).
        loss: what ``forward`` returns as loss: "nce" (eq. 11) or "adjusted" (eq. 10, needs negative_log_probs).
        mention_start_marker / mention_end_marker / title_marker: the input format's marker strings (special
            tokens of the saved tokenizer; see ``input_format.InputFormat``).
        max_length: wordpieces per side (mention window, entity) as trained (None = not recorded).
    """

    model_type = "nce-joint"

    architecture: str = "joint"
    encoder: dict[str, Any] | None = None
    loss: str = "nce"
    mention_start_marker: str = DEFAULT_MARKERS[0]
    mention_end_marker: str = DEFAULT_MARKERS[1]
    title_marker: str = DEFAULT_MARKERS[2]
    max_length: int | None = None

    def __post_init__(self, **kwargs: Any) -> None:
        super().__post_init__(**kwargs)
        if self.architecture != "joint":
            raise ValueError(f"architecture must be 'joint' for JointConfig, got {self.architecture!r}")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        if self.encoder is not None and not isinstance(self.encoder, dict):
            raise ValueError(f"encoder must be a backbone config dict, got {type(self.encoder).__name__}")
        check_input_format(
            (self.mention_start_marker, self.mention_end_marker, self.title_marker), self.max_length
        )


JointConfig.register_for_auto_class("AutoConfig")
AutoConfig.register(JointConfig.model_type, JointConfig, exist_ok=True)
