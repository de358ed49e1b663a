"""Configuration of the eq. (9) retrievers: one typed field per design choice of Section 4.1.

``RetrieverConfig`` exposes every knob; the named subclasses (``DualConfig``, ``PolyConfig``, ``MultiConfig``,
``SomConfig``, ``GenPolyConfig``) carry the presets of Section 4.2 / 6.2 / Appendix B as defaults and take the
architecture's single size as ``m``, e.g. ``PolyConfig(m=16, mention_encoder=..., entity_encoder=...)``.

This file is copied into saved model folders (``trust_remote_code``): it imports only transformers.
"""

from __future__ import annotations

from typing import Any, ClassVar

from transformers import AutoConfig, PreTrainedConfig

from .input_format import DEFAULT_MARKERS, check_input_format

DIRECTIONS = ("mention_to_entity", "entity_to_mention")
REDUCTIONS = ("leftmost", "codes", "mean", "span")
ATTENTIONS = ("soft", "hard")
LOSSES = ("nce", "adjusted")
SIMILARITIES = ("dot", "cosine")

# The structural knobs each named architecture fixes (Section 4.2, 6.2, Appendix B). Sizes not listed are free.
# A tuple lists the values a preset allows (the first is the paper's and the default).
PRESETS: dict[str, dict[str, Any]] = {
    # E_1(x)^T F_1(y); the reduction may also be the mean over tokens (sentence-transformers' pooling, not the paper)
    "dual": {
        "direction": "mention_to_entity",
        "num_query_vectors": 1,
        "num_key_vectors": 1,
        "query_reduction": ("leftmost", "mean", "span"),
        "key_reduction": ("leftmost", "mean"),
    },
    # F_1(y)^T C_m(x, y): query = leftmost entity vector, keys = m codes over the mention tokens
    "poly": {
        "direction": "entity_to_mention",
        "num_query_vectors": 1,
        "query_reduction": "leftmost",
        "key_reduction": "codes",
        "attention": "soft",
    },
    # max_t E_1(x)^T F_t(y), t <= m
    "multi": {
        "direction": "mention_to_entity",
        "num_query_vectors": 1,
        "query_reduction": "leftmost",
        "key_reduction": "leftmost",
        "attention": "hard",
    },
    # sum_t max_t' E_t(x)^T F_t'(y) over all tokens
    "som": {
        "direction": "mention_to_entity",
        "num_query_vectors": None,
        "num_key_vectors": None,
        "query_reduction": "leftmost",
        "key_reduction": "leftmost",
        "attention": "hard",
    },
    # 1_m^T F_{1:m}(y)^T C_m(x, y): queries = m leftmost entity vectors, keys = m codes over the mention
    "genpoly": {
        "direction": "entity_to_mention",
        "query_reduction": "leftmost",
        "key_reduction": "codes",
        "attention": "soft",
    },
}
ARCHITECTURES = (*PRESETS, "custom")


def _check_choice(field: str, value: Any, choices: tuple) -> None:
    if value not in choices:
        raise ValueError(f"{field} must be one of {choices}, got {value!r}")


def _check_count(field: str, value: Any) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
        raise ValueError(f"{field} must be a positive int or None (= all tokens), got {value!r}")


class RetrieverConfig(PreTrainedConfig):
    """Every design choice of eq. (9) (Section 4.1) plus the two backbone encoders.

    Args:
        architecture: a name of ``PRESETS`` (its structural knobs are then checked) or "custom".
        direction: "mention_to_entity" (x -> y: Q = E(x), K = F(y)) or "entity_to_mention" (y -> x).
        num_query_vectors: m, the query columns kept (None = all tokens).
        num_key_vectors: m', the key columns kept (None = all tokens).
        query_reduction / key_reduction: "leftmost" (first m columns), "codes" (m learned codes,
            ``E Soft(E^T O)``; at most one side may use codes) or "mean" (one vector, the mean over the unmasked
            tokens: sentence-transformers' mean pooling, an extension beyond the paper; needs m = 1) or "span" (the
            MENTION side only: the mean over the mention's own tokens, between its start and end markers, whose
            token ids are ``mention_marker_ids``; a row without a marked span is reduced like "mean"; m = 1).
        attention: "soft" (softmax) or "hard" (one-hot argmax).
        similarity: "dot" (the paper: raw inner products) or "cosine" (every vector L2-normalized, the mention
            side scaled by ``similarity_scale``: a dual then scores ``scale * cos(E(x), F(y))`` in [-scale, scale]).
            Cosine needs hard attention (scaling then multiplies the score and changes no argmax).
        similarity_scale: the temperature inverse of the cosine score (sentence-transformers' MNRL uses 20).
        shared_encoder: one encoder for mentions and entities (False: two independent encoders, as in the paper).
        mention_encoder / entity_encoder: backbone config dicts (e.g. ``BertConfig().to_dict()``).
        score_chunk_size: entities per chunk in ``score_all`` (None = automatic, memory-bounded).
        loss: what ``forward`` returns as loss: "nce" (eq. 11) or "adjusted" (eq. 10, needs negative_log_probs).
        mention_start_marker / mention_end_marker / title_marker: the input format's marker strings (special
            tokens of the saved tokenizer; see ``input_format.InputFormat``).
        max_length: wordpieces per mention and per entity as trained (None = not recorded).
        mention_marker_ids: the saved tokenizer's ids of the mention start and end markers (needed by "span").
        m: shorthand for the named architecture's size (see ``m_fields``); not stored itself.
    """

    model_type = "nce-retriever"
    m_fields: ClassVar[tuple[str, ...]] = ()

    architecture: str = "custom"
    direction: str = "mention_to_entity"
    num_query_vectors: int | None = 1
    num_key_vectors: int | None = 1
    query_reduction: str = "leftmost"
    key_reduction: str = "leftmost"
    attention: str = "hard"
    shared_encoder: bool = False
    mention_encoder: dict[str, Any] | None = None
    entity_encoder: dict[str, Any] | None = None
    score_chunk_size: int | None = None
    loss: str = "nce"
    similarity: str = "dot"
    similarity_scale: float = 20.0
    mention_start_marker: str = DEFAULT_MARKERS[0]
    mention_end_marker: str = DEFAULT_MARKERS[1]
    title_marker: str = DEFAULT_MARKERS[2]
    max_length: int | None = None
    mention_marker_ids: list[int] | None = None

    def __post_init__(self, m: int | None = None, **kwargs: Any) -> None:
        if m is not None:
            if not self.m_fields:
                raise ValueError(
                    f"m: architecture {self.architecture!r} has no size m (set the fields directly)"
                )
            _check_count("m", m)
            for field in self.m_fields:
                setattr(self, field, m)
        super().__post_init__(**kwargs)
        self.check_knobs()

    # ------------------------------------------------------------------ validation
    def check_knobs(self) -> None:
        """Raise ValueError naming the offending field for any inconsistent knob."""
        _check_choice("architecture", self.architecture, ARCHITECTURES)
        _check_choice("direction", self.direction, DIRECTIONS)
        _check_choice("query_reduction", self.query_reduction, REDUCTIONS)
        _check_choice("key_reduction", self.key_reduction, REDUCTIONS)
        _check_choice("attention", self.attention, ATTENTIONS)
        _check_choice("loss", self.loss, LOSSES)
        _check_choice("similarity", self.similarity, SIMILARITIES)
        if isinstance(self.similarity_scale, bool) or not isinstance(self.similarity_scale, (int, float)):
            raise ValueError(f"similarity_scale must be a positive number, got {self.similarity_scale!r}")
        if not self.similarity_scale > 0:
            raise ValueError(f"similarity_scale must be positive, got {self.similarity_scale!r}")
        if self.similarity == "cosine" and self.attention != "hard":
            raise ValueError(
                "similarity: 'cosine' needs attention='hard' (a scale inside soft attention changes its weights)"
            )
        _check_count("num_query_vectors", self.num_query_vectors)
        _check_count("num_key_vectors", self.num_key_vectors)
        _check_count("score_chunk_size", self.score_chunk_size)
        if self.query_reduction == "codes" and self.key_reduction == "codes":
            raise ValueError("query_reduction and key_reduction: at most one side may use 'codes'")
        for side in ("query", "key"):
            if getattr(self, f"{side}_reduction") == "codes" and getattr(self, f"num_{side}_vectors") is None:
                raise ValueError(f"num_{side}_vectors: 'codes' reduction needs a number of codes, got None")
            reduction = getattr(self, f"{side}_reduction")
            if reduction in ("mean", "span") and getattr(self, f"num_{side}_vectors") != 1:
                raise ValueError(
                    f"num_{side}_vectors: {reduction!r} reduction yields one vector, so it must be 1, "
                    f"got {getattr(self, f'num_{side}_vectors')!r}"
                )
        self._check_span()
        for field, value in PRESETS.get(self.architecture, {}).items():
            allowed = value if isinstance(value, tuple) else (value,)
            if getattr(self, field) not in allowed:
                wanted = f"{field}={value!r}" if len(allowed) == 1 else f"{field} in {allowed!r}"
                raise ValueError(
                    f"{field}: architecture {self.architecture!r} requires {wanted}, got {getattr(self, field)!r}"
                )
        self._check_encoders()
        check_input_format(
            (self.mention_start_marker, self.mention_end_marker, self.title_marker), self.max_length
        )

    def _check_span(self) -> None:
        """ "span" reduces the mention side only, with the two marker ids it needs."""
        if self.side("entity")[0] == "span":
            raise ValueError(
                f"{'key' if self.mention_is_query else 'query'}_reduction: 'span' averages the tokens between the "
                "mention markers; it applies to the mention side only"
            )
        ids = self.mention_marker_ids
        if ids is not None and (
            not isinstance(ids, (list, tuple))
            or len(ids) != 2
            or any(isinstance(i, bool) or not isinstance(i, int) or i < 0 for i in ids)
            or ids[0] == ids[1]
        ):
            raise ValueError(f"mention_marker_ids must be two different token ids [start, end], got {ids!r}")
        if self.side("mention")[0] == "span" and ids is None:
            raise ValueError(
                "mention_marker_ids: the 'span' reduction needs the token ids of the mention start and end markers "
                "(build the model with hf_models.recipes.model_setup.build_model, which reads them from the tokenizer)"
            )

    def _check_encoders(self) -> None:
        for field in ("mention_encoder", "entity_encoder"):
            value = getattr(self, field)
            if value is not None and not isinstance(value, dict):
                raise ValueError(f"{field} must be a backbone config dict, got {type(value).__name__}")
        if self.mention_encoder is None or self.entity_encoder is None:
            return
        mention_h, entity_h = self.mention_encoder.get("hidden_size"), self.entity_encoder.get("hidden_size")
        if mention_h != entity_h:
            raise ValueError(
                f"entity_encoder: hidden_size {entity_h} differs from mention_encoder hidden_size {mention_h}; "
                "eq. (9) takes dot products between the two sides"
            )

    # ------------------------------------------------------------------ derived views
    @property
    def mention_is_query(self) -> bool:
        """x -> y: the mention side is the query."""
        return self.direction == "mention_to_entity"

    def side(self, which: str) -> tuple[str, int | None]:
        """(reduction, number of vectors) of the "mention" or "entity" side."""
        if which not in ("mention", "entity"):
            raise ValueError(f"side must be 'mention' or 'entity', got {which!r}")
        role = "query" if (which == "mention") == self.mention_is_query else "key"
        return getattr(self, f"{role}_reduction"), getattr(self, f"num_{role}_vectors")

    @property
    def encoder_hidden_size(self) -> int | None:
        """H of both encoders (None while no encoder config is set)."""
        encoder = self.mention_encoder or self.entity_encoder
        return None if encoder is None else encoder.get("hidden_size")


class DualConfig(RetrieverConfig):
    """dual: E_1(x)^T F_1(y) (Section 4.2)."""

    model_type = "nce-dual"
    architecture: str = "dual"


class PolyConfig(RetrieverConfig):
    """poly-m: F_1(y)^T C_m(x, y) with m learned codes over the mention tokens (Section 4.2); ``m`` = number of codes."""

    model_type = "nce-poly"
    m_fields: ClassVar[tuple[str, ...]] = ("num_key_vectors",)
    architecture: str = "poly"
    direction: str = "entity_to_mention"
    num_key_vectors: int | None = 16
    key_reduction: str = "codes"
    attention: str = "soft"


class MultiConfig(RetrieverConfig):
    """multi-m: max_{t<=m} E_1(x)^T F_t(y) (Section 4.2); ``m`` = leftmost entity vectors kept."""

    model_type = "nce-multi"
    m_fields: ClassVar[tuple[str, ...]] = ("num_key_vectors",)
    architecture: str = "multi"
    num_key_vectors: int | None = 8


class SomConfig(RetrieverConfig):
    """som: sum_t max_t' E_t(x)^T F_t'(y) over all tokens (Section 4.2)."""

    model_type = "nce-som"
    architecture: str = "som"
    num_query_vectors: int | None = None
    num_key_vectors: int | None = None


class GenPolyConfig(RetrieverConfig):
    """genpoly-m: 1_m^T F_{1:m}(y)^T C_m(x, y) (Appendix B); ``m`` = leftmost entity vectors = number of codes."""

    model_type = "nce-genpoly"
    m_fields: ClassVar[tuple[str, ...]] = ("num_query_vectors", "num_key_vectors")
    architecture: str = "genpoly"
    direction: str = "entity_to_mention"
    num_query_vectors: int | None = 16
    num_key_vectors: int | None = 16
    key_reduction: str = "codes"
    attention: str = "soft"


CONFIG_BY_ARCHITECTURE: dict[str, type[RetrieverConfig]] = {
    "dual": DualConfig,
    "poly": PolyConfig,
    "multi": MultiConfig,
    "som": SomConfig,
    "genpoly": GenPolyConfig,
}


def config_for(architecture: str, m: int | None = None, **kwargs: Any) -> RetrieverConfig:
    """The named config of ``architecture`` ("dual", "poly", "multi", "som", "genpoly") with size ``m``."""
    if architecture not in CONFIG_BY_ARCHITECTURE:
        raise ValueError(f"architecture must be one of {tuple(CONFIG_BY_ARCHITECTURE)}, got {architecture!r}")
    if m is not None:
        kwargs["m"] = m
    return CONFIG_BY_ARCHITECTURE[architecture](**kwargs)


for _config_class in (RetrieverConfig, *CONFIG_BY_ARCHITECTURE.values()):
    _config_class.register_for_auto_class("AutoConfig")
    AutoConfig.register(_config_class.model_type, _config_class, exist_ok=True)
