"""A backbone with one linear head: the base of the joint reranker and the mention detector.

This file is copied into saved model folders (``trust_remote_code``): it imports only torch, transformers and its
sibling files.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init

from .modeling_retriever import build_encoder, load_encoder

logger = logging.getLogger(__name__)


class BackboneHeadModel(PreTrainedModel):
    """A backbone ``AutoModel`` (``config.encoder``, no pooler) and ``nn.Linear(H, head_outputs)`` on its states.

    Attributes:
        encoder: the backbone.
        head: the linear layer; subclasses set ``head_outputs`` and say what its outputs mean.
    """

    head_outputs: ClassVar[int]
    supports_gradient_checkpointing = True
    _supports_sdpa = True

    def __init__(self, config) -> None:
        super().__init__(config)
        if config.encoder is None:
            raise ValueError("encoder: a backbone config dict is required to build the model")
        self.encoder = build_encoder(config.encoder)
        self.head = nn.Linear(self.encoder.config.hidden_size, self.head_outputs)
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        """Head ~ N(0, initializer_range^2), bias 0; the backbone uses its own init (it is a sub-model)."""
        if module is self.head:
            init.normal_(
                module.weight, mean=0.0, std=float(self.config.encoder.get("initializer_range", 0.02))
            )
            init.zeros_(module.bias)
        else:
            super()._init_weights(module)

    @classmethod
    def from_encoder(cls, name_or_path: str, **config_kwargs: Any) -> BackboneHeadModel:
        """Build the config from a backbone checkpoint (name or folder) and load its weights into the encoder."""
        backbone = load_encoder(name_or_path)
        encoder_dict = backbone.config.to_dict()
        encoder_dict.pop("_name_or_path", None)  # no local path in the saved config.json
        config_kwargs.setdefault("encoder", encoder_dict)
        model = cls(cls.config_class(**config_kwargs))
        model.encoder.load_state_dict(backbone.state_dict())
        logger.info("built %s from backbone %s", cls.__name__, name_or_path)
        return model
