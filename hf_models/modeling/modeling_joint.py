"""The joint reranker of Section 6.2: ``s(x, y) = w^T E_1([CLS] x [SEP] y) + b`` (full cross attention).

This file is copied into saved model folders (``trust_remote_code``): it imports only torch, transformers and its
sibling files.
"""

from __future__ import annotations

import torch
from transformers import AutoModel

from .configuration_joint import JointConfig
from .modeling_head import BackboneHeadModel
from .modeling_retriever import RetrieverOutput, candidate_loss
from .modeling_text import RerankerTextMixin


class JointRerankerModel(RerankerTextMixin, BackboneHeadModel):
    """A backbone E over ``[CLS] x [SEP] y`` and a linear layer (w, b) on its first token.

    Attributes:
        encoder: the backbone ``AutoModel`` (no pooler).
        head: ``nn.Linear(H, 1)`` holding w and b.
    """

    config_class = JointConfig
    base_model_prefix = "reranker"
    main_input_name = "pair_input_ids"
    head_outputs = 1

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
