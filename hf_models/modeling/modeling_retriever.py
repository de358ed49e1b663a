"""Retrievers of eq. (9): two backbone encoders E (mentions) and F (entities) plus the score function.

``RetrieverModel`` implements every setting of :class:`RetrieverConfig`; the named subclasses
(``DualEncoderModel``, ``PolyEncoderModel``, ``MultiVectorModel``, ``SumOfMaxModel``, ``GenPolyModel``) only bind
their config class. Build one from a backbone checkpoint with ``SumOfMaxModel.from_encoder("path-or-name")`` and
reload it with ``from_pretrained(dir)`` / ``AutoModel.from_pretrained(dir)`` (``trust_remote_code=True`` outside
this repository: ``save_pretrained`` copies this file and its relative imports into the folder).

This file is copied into saved model folders: it imports only torch, transformers and its sibling files.
"""

from __future__ import annotations

import inspect
import logging
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, PreTrainedConfig, PreTrainedModel
from transformers import initialization as init
from transformers.models.auto.configuration_auto import CONFIG_MAPPING
from transformers.models.auto.modeling_auto import MODEL_MAPPING
from transformers.utils import ModelOutput

from .all_pairs import all_pairs_score
from .configuration_retriever import (
    DualConfig,
    GenPolyConfig,
    MultiConfig,
    PolyConfig,
    RetrieverConfig,
    SomConfig,
)
from .losses import LOSSES, adjusted_nce_loss, distinct_slots, nce_loss, shared_candidate_scores
from .modeling_text import RetrieverTextMixin
from .scoring import (
    Representation,
    code_reduction,
    cosine_vectors,
    general_score,
    mean_reduction,
    span_token_mask,
)

logger = logging.getLogger(__name__)


@dataclass
class RetrieverOutput(ModelOutput):
    """``loss``: eq. (11) (or eq. (10)) over the candidates; ``scores`` [B, C] with the gold at column 0."""

    loss: torch.FloatTensor | None = None
    scores: torch.FloatTensor | None = None


def candidate_loss(
    scores: torch.Tensor, negative_log_probs: torch.Tensor | None = None, loss: str = "nce"
) -> torch.Tensor:
    """The training loss over candidate scores [B, C] (gold = column 0).

    ``loss="nce"``: eq. (11), ``negative_log_probs`` is ignored. ``loss="adjusted"``: eq. (10), which needs
    ``negative_log_probs`` [B, C-1] = log nu(y_k | x, y_1) of the negatives.
    """
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
    if loss == "nce":
        return nce_loss(scores)
    if negative_log_probs is None:
        raise ValueError("loss='adjusted' (eq. 10) needs negative_log_probs [B, C-1]")
    return adjusted_nce_loss(scores, negative_log_probs)


# ---------------------------------------------------------------------- backbones
def backbone_config(config_dict: dict[str, Any]) -> PreTrainedConfig:
    """A backbone config (BertConfig, ...) from its ``to_dict()``."""
    if "model_type" not in config_dict:
        raise ValueError("encoder config dict needs a 'model_type' (use e.g. BertConfig().to_dict())")
    return CONFIG_MAPPING[config_dict["model_type"]].from_dict(config_dict)


def _pooler_kwargs(config: PreTrainedConfig) -> dict[str, Any]:
    """``add_pooling_layer=False`` for backbones that accept it: eq. (9) uses token embeddings, never the pooler."""
    model_class = MODEL_MAPPING[type(config)]
    accepts = "add_pooling_layer" in inspect.signature(model_class.__init__).parameters
    return {"add_pooling_layer": False} if accepts else {}


def build_encoder(config_dict: dict[str, Any]) -> PreTrainedModel:
    """A randomly initialised backbone (no pooler where the family has one) from its config dict."""
    config = backbone_config(config_dict)
    return AutoModel.from_config(config, **_pooler_kwargs(config))


def load_encoder(name_or_path: str, **kwargs: Any) -> PreTrainedModel:
    """A pretrained backbone (no pooler where the family has one) from a checkpoint name or folder."""
    config = AutoConfig.from_pretrained(name_or_path, **kwargs)
    return AutoModel.from_pretrained(name_or_path, config=config, **_pooler_kwargs(config), **kwargs)


# ---------------------------------------------------------------------- models
class RetrieverPreTrainedModel(PreTrainedModel):
    """Weight init (the code embeddings O) and the ``from_encoder`` constructor shared by all retrievers."""

    config_class = RetrieverConfig
    base_model_prefix = "retriever"
    main_input_name = "mention_input_ids"
    supports_gradient_checkpointing = True
    _supports_sdpa = True

    def _init_weights(self, module: nn.Module) -> None:
        """Codes ~ N(0, initializer_range^2); the backbones use their own init (they are sub-models)."""
        if isinstance(module, RetrieverModel) and module.codes is not None:
            init.normal_(module.codes, mean=0.0, std=module.initializer_range)
        else:
            super()._init_weights(module)

    @classmethod
    def from_encoder(cls, name_or_path: str, **config_kwargs: Any) -> RetrieverPreTrainedModel:
        """Build the config from a backbone checkpoint and load its weights into both encoders.

        Args:
            name_or_path: any BERT-family checkpoint name or local folder.
            config_kwargs: fields of ``cls.config_class`` (e.g. ``m=16``, ``shared_encoder=True``).
                ``RetrieverModel.from_encoder(path, architecture="som")`` dispatches to the named class.
        """
        architecture = config_kwargs.get("architecture")
        if cls is RetrieverModel and architecture in MODEL_BY_ARCHITECTURE:
            config_kwargs.pop("architecture")
            return MODEL_BY_ARCHITECTURE[architecture].from_encoder(name_or_path, **config_kwargs)
        backbone = load_encoder(name_or_path)
        encoder_dict = backbone.config.to_dict()
        encoder_dict.pop("_name_or_path", None)  # no local path in the saved config.json
        config_kwargs.setdefault("mention_encoder", encoder_dict)
        config_kwargs.setdefault("entity_encoder", encoder_dict)
        model = cls(cls.config_class(**config_kwargs))
        weights = backbone.state_dict()
        encoders = [model.mention_encoder]
        if not model.config.shared_encoder:
            encoders.append(model.entity_encoder)
        for encoder in encoders:
            encoder.load_state_dict(weights)
        logger.info("built %s from backbone %s", cls.__name__, name_or_path)
        return model


class RetrieverModel(RetrieverTextMixin, RetrieverPreTrainedModel):
    """Eq. (9) over a mention encoder E and an entity encoder F (Section 4.1).

    Attributes:
        mention_encoder: E, a backbone ``AutoModel``.
        entity_encoder: F (the same module as ``mention_encoder`` when ``config.shared_encoder``).
        codes: the code embeddings O [m, H] when one side uses the "codes" reduction, else None.
    """

    config_class = RetrieverConfig

    def __init__(self, config: RetrieverConfig) -> None:
        super().__init__(config)
        if config.mention_encoder is None:
            raise ValueError("mention_encoder: a backbone config dict is required to build the model")
        self.mention_encoder = build_encoder(config.mention_encoder)
        if not config.shared_encoder:
            self.entity_encoder = build_encoder(config.entity_encoder or config.mention_encoder)
        self.codes = None
        for side in ("mention", "entity"):
            reduction, count = config.side(side)
            if reduction == "codes":
                self.codes = nn.Parameter(torch.empty(count, config.encoder_hidden_size))  # O [m, H]
        self.post_init()

    @property
    def entity_encoder(self) -> PreTrainedModel:
        encoder = self._modules.get("entity_encoder")
        return self.mention_encoder if encoder is None else encoder

    @property
    def initializer_range(self) -> float:
        return float(self.config.mention_encoder.get("initializer_range", 0.02))

    # ------------------------------------------------------------------ encoding
    def _reduce(
        self, hidden: torch.Tensor, mask: torch.Tensor, side: str, input_ids: torch.Tensor | None = None
    ) -> Representation:
        """Apply one side's reduction to token embeddings [N, T, H] -> Representation [N, L, H] (``input_ids``
        [N, T]: needed by the "span" reduction, which finds the mention markers in them)."""
        reduction, count = self.config.side(side)
        mask = mask.bool()
        if reduction == "span":
            if input_ids is None:
                raise ValueError("the 'span' reduction needs the input_ids to find the mention markers")
            start, end = self.config.mention_marker_ids
            span = span_token_mask(input_ids, mask, start, end)  # [N, T]
            rep = Representation(vectors=mean_reduction(hidden, span), mask=mask.any(dim=1, keepdim=True))
        elif reduction == "codes":
            vectors = code_reduction(hidden, mask, self.codes.to(hidden.dtype))  # [N, m, H]
            rep = Representation(vectors=vectors, mask=mask.any(dim=1, keepdim=True).expand(-1, count))
        elif reduction == "mean":
            rep = Representation(vectors=mean_reduction(hidden, mask), mask=mask.any(dim=1, keepdim=True))
        else:
            if count is not None:  # leftmost m columns, masked where the sequence is shorter
                hidden, mask = hidden[:, :count], mask[:, :count]
            rep = Representation(vectors=hidden.masked_fill(~mask[..., None], 0.0), mask=mask)
            rep = rep if count is None else rep.pad_to(count)
        if self.config.similarity == "cosine":  # unit vectors; the mention side carries the scale
            scale = self.config.similarity_scale if side == "mention" else 1.0
            rep = Representation(vectors=cosine_vectors(rep.vectors, scale), mask=rep.mask)
        return rep

    def _encode(
        self, encoder: PreTrainedModel, input_ids: torch.Tensor, attention_mask: torch.Tensor, side: str
    ):
        hidden = encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # [N, T, H]
        return self._reduce(hidden, attention_mask, side, input_ids)

    def encode_mentions(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> Representation:
        """Mentions [N, T] -> E(x) reduced per the mention side (query if x -> y, key if y -> x)."""
        return self._encode(self.mention_encoder, input_ids, attention_mask, "mention")

    def encode_entities(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> Representation:
        """Entities [N, T'] -> F(y) reduced per the entity side."""
        return self._encode(self.entity_encoder, input_ids, attention_mask, "entity")

    # ------------------------------------------------------------------ scoring
    def score_pairs(self, mention_rep: Representation, entity_rep: Representation) -> torch.Tensor:
        """Eq. (9) of each mention [B] against its own candidates ([B*C] or [B, C] rows) -> [B, C]."""
        batch = len(mention_rep)
        if entity_rep.vectors.dim() == 3:
            if entity_rep.vectors.shape[0] % max(batch, 1):
                raise ValueError(
                    f"score_pairs: {entity_rep.vectors.shape[0]} entity rows is not a multiple of {batch} mentions"
                )
            entity_rep = entity_rep.view(batch, entity_rep.vectors.shape[0] // max(batch, 1))
        entity_rep = entity_rep.to(mention_rep.vectors.dtype)
        attention = self.config.attention
        if self.config.mention_is_query:
            return general_score(
                mention_rep.vectors, mention_rep.mask, entity_rep.vectors, entity_rep.mask, attention
            )
        num_cands, length, hidden = entity_rep.vectors.shape[1:]
        key = mention_rep.vectors[:, None].expand(
            batch, num_cands, *mention_rep.vectors.shape[1:]
        )  # [B, C, m', H]
        key_mask = mention_rep.mask[:, None].expand(batch, num_cands, -1)  # [B, C, m']
        scores = general_score(
            entity_rep.vectors.reshape(batch * num_cands, length, hidden),  # queries [B*C, m, H]
            entity_rep.mask.reshape(batch * num_cands, length),
            key.reshape(batch * num_cands, 1, *key.shape[2:]),  # [B*C, 1, m', H]
            key_mask.reshape(batch * num_cands, 1, -1),
            attention,
        )  # [B*C, 1]
        return scores.view(batch, num_cands)

    def score_all(
        self, mention_rep: Representation, entity_rep: Representation, chunk_size: int | None = None
    ) -> torch.Tensor:
        """Eq. (9) of every mention [N] against every entity [E] -> [N, E] (chunked, memory-bounded)."""
        chunk_size = chunk_size or self.config.score_chunk_size
        entity_rep = entity_rep.to(mention_rep.vectors.dtype)
        if self.config.mention_is_query:
            query, key = mention_rep, entity_rep
        else:
            query, key = entity_rep, mention_rep
        scores = all_pairs_score(
            query.vectors, query.mask, key.vectors, key.mask, self.config.attention, chunk_size
        )
        return scores if self.config.mention_is_query else scores.T

    def forward(
        self,
        mention_input_ids: torch.Tensor,
        mention_attention_mask: torch.Tensor,
        entity_input_ids: torch.Tensor,
        entity_attention_mask: torch.Tensor,
        negative_log_probs: torch.Tensor | None = None,
        loss: str | None = None,
        candidate_ids: torch.Tensor | None = None,
        share_candidates: bool = False,
    ) -> RetrieverOutput:
        """Score each mention [B, T] against its candidates [B, C, T'] (candidate 0 = gold).

        Returns ``RetrieverOutput(loss, scores [B, C])``; the loss is ``loss`` or ``config.loss``: "nce" (eq. 11,
        ``negative_log_probs`` ignored) or "adjusted" (eq. 10, needs ``negative_log_probs`` [B, C-1]).
        ``share_candidates=True`` (not in the paper) scores each mention against the union of the batch's B x C
        candidates (:func:`~.losses.shared_candidate_scores`, needs ``candidate_ids`` [B, C] entity ids) and
        returns scores [B, B*C] with the own gold at column 0; eq. (11) only.
        """
        if entity_input_ids.dim() != 3 or entity_input_ids.shape[0] != mention_input_ids.shape[0]:
            raise ValueError(
                "forward needs mention_input_ids [B, T] and entity_input_ids [B, C, T']; got "
                f"{tuple(mention_input_ids.shape)} and {tuple(entity_input_ids.shape)}"
            )
        batch, num_cands, length = entity_input_ids.shape
        entity_ids = entity_input_ids.reshape(batch * num_cands, length)  # [B*C, T']
        entity_mask = entity_attention_mask.reshape(batch * num_cands, length)
        loss = loss or self.config.loss
        mentions = self.encode_mentions(mention_input_ids, mention_attention_mask)
        if share_candidates:
            if candidate_ids is None or loss != "nce":
                raise ValueError(
                    "share_candidates needs candidate_ids [B, C] and loss='nce' (eq. 10's proposal "
                    f"probabilities are unknown for other mentions' candidates); got loss={loss!r}"
                )
            first, inverse = distinct_slots(candidate_ids.to(entity_ids.device))  # [U], [B*C]
            entities = self.encode_entities(entity_ids[first], entity_mask[first])  # each entity once: U rows
            all_scores = self.score_all(mentions, entities)[:, inverse]  # [B, U] -> [B, B*C]
            scores = shared_candidate_scores(all_scores, candidate_ids)  # [B, B*C]
            return RetrieverOutput(loss=candidate_loss(scores, loss="nce"), scores=scores)
        entities = self.encode_entities(entity_ids, entity_mask)
        scores = self.score_pairs(mentions, entities)  # [B, C]
        return RetrieverOutput(loss=candidate_loss(scores, negative_log_probs, loss), scores=scores)


class DualEncoderModel(RetrieverModel):
    """dual: E_1(x)^T F_1(y)."""

    config_class = DualConfig


class PolyEncoderModel(RetrieverModel):
    """poly-m: F_1(y)^T C_m(x, y)."""

    config_class = PolyConfig


class MultiVectorModel(RetrieverModel):
    """multi-m: max_{t<=m} E_1(x)^T F_t(y)."""

    config_class = MultiConfig


class SumOfMaxModel(RetrieverModel):
    """som: sum_t max_t' E_t(x)^T F_t'(y)."""

    config_class = SomConfig


class GenPolyModel(RetrieverModel):
    """genpoly-m: 1_m^T F_{1:m}(y)^T C_m(x, y)."""

    config_class = GenPolyConfig


MODEL_BY_ARCHITECTURE: dict[str, type[RetrieverModel]] = {
    "dual": DualEncoderModel,
    "poly": PolyEncoderModel,
    "multi": MultiVectorModel,
    "som": SumOfMaxModel,
    "genpoly": GenPolyModel,
}

for _model_class in (RetrieverModel, *MODEL_BY_ARCHITECTURE.values()):
    _model_class.register_for_auto_class("AutoModel")
    AutoModel.register(_model_class.config_class, _model_class, exist_ok=True)
