"""Zero-shot entity linking retrievers and rerankers trained with hard-negative NCE (Zhang & Stratos, 2021).

The package is split into rooms by purpose; a lower room never imports a higher one
(``tests/test_layout.py`` checks it):

    modeling/    the remote-code files copied into every saved model folder (imports only itself)
    index/       entity tables, encoding, EntityIndex (exact / FAISS), evaluation of rankings
    linking/     EntityLinker, mention detectors, the ``python -m hf_models.linking`` command line
    publishing/  model cards, Hub pushes, sentence-transformers export
    training/    NCETrainer + NCETrainingArguments, negative mining and sampling, collator, callbacks
    analysis/    gradient bias (Section 3), its live probe, score precision
    recipes/     the plumbing the scripts under recipes/ share (arguments, YAML + CLI, model setup)

``atomic`` (crash-safe writers) and ``progress`` (quiet-off-a-terminal bars) are shared by every room but
``modeling``. The public names below are importable from ``hf_models`` directly.
"""

from .modeling.all_pairs import all_pairs_score
from .modeling.configuration_joint import JointConfig
from .modeling.configuration_mention_detector import MentionDetectorConfig
from .modeling.configuration_retriever import (
    CONFIG_BY_ARCHITECTURE,
    DualConfig,
    GenPolyConfig,
    MultiConfig,
    PolyConfig,
    RetrieverConfig,
    SomConfig,
    config_for,
)
from .modeling.losses import adjusted_nce_loss, nce_loss
from .modeling.modeling_joint import JointRerankerModel
from .modeling.modeling_mention_detector import MentionDetectorModel
from .modeling.modeling_retriever import (
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
from .modeling.scoring import Representation, code_reduction, general_score

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
