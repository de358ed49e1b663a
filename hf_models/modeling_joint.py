"""The joint reranker of Section 6.2: ``s(x, y) = w^T E_1([CLS] x [SEP] y) + b`` (full cross attention).

This file is copied into saved model folders (``trust_remote_code``): it imports only torch, transformers and its
sibling files.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn
from transformers import AutoModel, PreTrainedModel
from transformers import initialization as init

from .configuration_joint import JointConfig
from .modeling_retriever import RetrieverOutput, build_encoder, candidate_loss, load_encoder
from .modeling_text import RerankerTextMixin

logger = logging.getLogger(__name__)


class JointRerankerModel(RerankerTextMixin, PreTrainedModel):
    """A backbone E over ``[CLS] x [SEP] y`` and a linear layer (w, b) on its first token.

    Attributes:
        encoder: the backbone ``AutoModel`` (no pooler).
        head: ``nn.Linear(H, 1)`` holding w and b.
    """

    config_class = JointConfig
    base_model_prefix = "reranker"
    main_input_name = "pair_input_ids"
    supports_gradient_checkpointing = True
    _supports_sdpa = True

    def __init__(self, config: JointConfig) -> None:
        super().__init__(config)
        if config.encoder is None:
            raise ValueError("encoder: a backbone config dict is required to build the model")
        self.encoder = build_encoder(config.encoder)
        self.head = nn.Linear(self.encoder.config.hidden_size, 1)
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        """w ~ N(0, initializer_range^2), b = 0; the backbone uses its own init (it is a sub-model)."""
        if module is self.head:
            init.normal_(
                module.weight, mean=0.0, std=float(self.config.encoder.get("initializer_range", 0.02))
            )
            init.zeros_(module.bias)
        else:
            super()._init_weights(module)

    @classmethod
    def from_encoder(cls, name_or_path: str, **config_kwargs: Any) -> JointRerankerModel:
        """Build the config from a backbone checkpoint (name or folder) and load its weights into the encoder."""
        backbone = load_encoder(name_or_path)
        encoder_dict = backbone.config.to_dict()
        encoder_dict.pop("_name_or_path", None)  # no local path in the saved config.json
        config_kwargs.setdefault("encoder", encoder_dict)
        model = cls(cls.config_class(**config_kwargs))
        model.encoder.load_state_dict(backbone.state_dict())
        logger.info("built %s from backbone %s", cls.__name__, name_or_path)
        return model

    def score(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``w^T E_1(x, y) + b`` for pairs [N, T] -> [N]."""
        hidden = self.encoder(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
        ).last_hidden_state  # [N, T, H]
        return self.head(hidden[:, 0]).squeeze(-1)  # [N]

    def forward(
        self,
        pair_input_ids: torch.Tensor,
        pair_attention_mask: torch.Tensor,
        pair_token_type_ids: torch.Tensor | None = None,
        negative_log_probs: torch.Tensor | None = None,
        loss: str | None = None,
    ) -> RetrieverOutput:
        """Score candidate pairs [B, C, T] (candidate 0 = gold) -> ``RetrieverOutput(loss, scores [B, C])``."""
        if pair_input_ids.dim() != 3:
            raise ValueError(f"forward needs pair_input_ids [B, C, T]; got {tuple(pair_input_ids.shape)}")
        batch, num_cands, length = pair_input_ids.shape
        flat = (batch * num_cands, length)
        scores = self.score(
            pair_input_ids.reshape(flat),
            pair_attention_mask.reshape(flat),
            None if pair_token_type_ids is None else pair_token_type_ids.reshape(flat),
        ).view(batch, num_cands)  # [B, C]
        return RetrieverOutput(
            loss=candidate_loss(scores, negative_log_probs, loss or self.config.loss), scores=scores
        )


JointRerankerModel.register_for_auto_class("AutoModel")
AutoModel.register(JointConfig, JointRerankerModel, exist_ok=True)
