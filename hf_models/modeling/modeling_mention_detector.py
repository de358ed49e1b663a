"""The ELQ-style mention detector (Li et al., EMNLP 2020, Section 3.1) as its own small ``PreTrainedModel``.

A backbone encodes a window of raw text; a linear head gives every wordpiece t three logits, start ``s(t)``,
end ``e(t)`` and inside ``m(t)``. A span [i, j] (inclusive, at most ``max_span_width`` pieces) scores
``s(i) + e(j) + sum_{t=i..j} m(t)`` and is a mention with probability ``sigmoid(score)``. Trained with binary
cross entropy over every candidate span of the window (the gold spans positive).

This file is copied into saved model folders (``trust_remote_code``): it imports only torch, transformers and its
sibling files.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F
from transformers import AutoModel
from transformers.utils import ModelOutput

from .configuration_mention_detector import MentionDetectorConfig
from .modeling_head import BackboneHeadModel


@dataclass
class MentionDetectorOutput(ModelOutput):
    """``loss``: mean BCE over candidate spans; ``span_logits`` [B, T, W] (span [i, i + w]); ``span_mask`` [B, T, W]."""

    loss: torch.FloatTensor | None = None
    span_logits: torch.FloatTensor | None = None
    span_mask: torch.BoolTensor | None = None


def span_logits(start: torch.Tensor, end: torch.Tensor, inside: torch.Tensor, max_width: int) -> torch.Tensor:
    """ELQ's span score ``s(i) + e(j) + sum_{t=i..j} m(t)`` for every i and width w = j - i < max_width.

    start, end, inside: [B, T] -> [B, T, W]; spans running past the sequence get -inf.
    """
    batch, length = start.shape
    cumulative = F.pad(inside.cumsum(dim=1), (1, 0))  # [B, T + 1]; cumulative[:, j + 1] - cumulative[:, i]
    widths = torch.arange(max_width, device=start.device)  # [W]
    ends = torch.arange(length, device=start.device)[:, None] + widths[None, :]  # [T, W]
    valid = ends < length  # [T, W]
    safe = ends.clamp(max=length - 1)
    end_logit = end[:, safe]  # [B, T, W]
    inside_sum = cumulative[:, safe + 1] - cumulative[:, :length, None]  # [B, T, W]
    scores = start[:, :, None] + end_logit + inside_sum
    return scores.masked_fill(~valid[None], float("-inf"))


def candidate_span_mask(
    attention_mask: torch.Tensor, start_mask: torch.Tensor, end_mask: torch.Tensor, max_width: int
) -> torch.Tensor:
    """Which spans [i, i + w] are candidates: i may start a word, i + w may end one, both inside the text.

    masks [B, T] (start_mask / end_mask already exclude [CLS], [SEP] and padding) -> [B, T, W] bool.
    """
    length = attention_mask.shape[1]
    ends = torch.arange(length, device=attention_mask.device)[:, None] + torch.arange(
        max_width, device=attention_mask.device
    )  # [T, W]
    valid = ends < length
    end_ok = end_mask.bool()[:, ends.clamp(max=length - 1)] & valid[None]  # [B, T, W]
    return start_mask.bool()[:, :, None] & end_ok


class MentionDetectorModel(BackboneHeadModel):
    """A backbone and ``nn.Linear(H, 3)`` (start, end, inside logits per wordpiece)."""

    config_class = MentionDetectorConfig
    base_model_prefix = "detector"
    main_input_name = "input_ids"
    head_outputs = 3

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        start_mask: torch.Tensor | None = None,
        end_mask: torch.Tensor | None = None,
        span_labels: torch.Tensor | None = None,
    ) -> MentionDetectorOutput:
        """Windows [B, T] -> span logits [B, T, W]; with ``span_labels`` [B, S, 2] (gold (start, end) wordpiece
        pairs, inclusive, -1 padded) also the mean BCE over the candidate spans."""
        hidden = self.encoder(
            input_ids=input_ids, attention_mask=attention_mask
        ).last_hidden_state  # [B, T, H]
        start, end, inside = self.head(hidden).float().unbind(dim=-1)  # each [B, T]
        width = self.config.max_span_width
        logits = span_logits(start, end, inside, width)  # [B, T, W]
        inner = attention_mask.bool().clone()
        inner[:, 0] = False  # [CLS]
        inner &= (
            torch.arange(inner.shape[1], device=inner.device)[None] < attention_mask.sum(1, keepdim=True) - 1
        )
        mask = candidate_span_mask(
            attention_mask,
            inner if start_mask is None else start_mask.bool() & inner,
            inner if end_mask is None else end_mask.bool() & inner,
            width,
        )
        loss = None
        if span_labels is not None:
            targets = torch.zeros_like(logits)
            batch, slot = (span_labels[..., 0] >= 0).nonzero(as_tuple=True)
            starts, ends = span_labels[batch, slot, 0], span_labels[batch, slot, 1]
            keep = (ends - starts < width) & (ends >= starts)
            targets[batch[keep], starts[keep], (ends - starts)[keep]] = 1.0
            mask = mask | targets.bool()  # a gold span is always a candidate
            loss = F.binary_cross_entropy_with_logits(logits[mask], targets[mask])
        return MentionDetectorOutput(loss=loss, span_logits=logits, span_mask=mask)


MentionDetectorModel.register_for_auto_class("AutoModel")
AutoModel.register(MentionDetectorConfig, MentionDetectorModel, exist_ok=True)
