"""Zero-shot entity linking retrievers and rerankers trained with hard-negative NCE (Zhang & Stratos, 2021)."""

from .all_pairs import all_pairs_score
from .configuration_joint import JointConfig
from .configuration_mention_detector import MentionDetectorConfig
from .configuration_retriever import (
    CONFIG_BY_ARCHITECTURE,
    DualConfig,
    GenPolyConfig,
    MultiConfig,
    PolyConfig,
    RetrieverConfig,
    SomConfig,
    config_for,
)
from .losses import adjusted_nce_loss, nce_loss
from .modeling_joint import JointRerankerModel
from .modeling_mention_detector import MentionDetectorModel
from .modeling_retriever import (
    MODEL_BY_ARCHITECTURE,
    DualEncoderModel,
    GenPolyModel,
    MultiVectorModel,
    PolyEncoderModel,
    RetrieverModel,
    RetrieverOutput,
    RetrieverPreTrainedModel,
    SumOfMaxModel,
    candidate_loss,
)
from .scoring import Representation, code_reduction, general_score

__all__ = [
    "CONFIG_BY_ARCHITECTURE",
    "MODEL_BY_ARCHITECTURE",
    "DualConfig",
    "DualEncoderModel",
    "EntityLinker",
    "GenPolyConfig",
    "GenPolyModel",
    "JointConfig",
    "JointRerankerModel",
    "MentionDetectorConfig",
    "MentionDetectorModel",
    "MultiConfig",
    "MultiVectorModel",
    "PolyConfig",
    "PolyEncoderModel",
    "Representation",
    "RetrieverConfig",
    "RetrieverModel",
    "RetrieverOutput",
    "RetrieverPreTrainedModel",
    "SomConfig",
    "SumOfMaxModel",
    "adjusted_nce_loss",
    "all_pairs_score",
    "candidate_loss",
    "code_reduction",
    "config_for",
    "general_score",
    "nce_loss",
]


def __getattr__(name: str):
    """``EntityLinker`` is imported lazily: it pulls in datasets, tqdm and the data scripts."""
    if name == "EntityLinker":
        from .linking import EntityLinker

        return EntityLinker
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
