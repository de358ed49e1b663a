"""The model a recipe trains: built from a backbone (or a saved model), its embeddings fitted to the featurizer's
tokenizer, and the input format (markers, ``max_length``) recorded in its config."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from .recipe_args import ModelArguments, check_local_folder, resolve_encoder

logger = logging.getLogger(__name__)


def build_model(model_args: ModelArguments, tokenizer, max_length: int | None = None):
    """A retriever or joint reranker from a backbone checkpoint (or a saved model via init_from).

    The featurizer's markers and ``max_length`` (the input format) are recorded in the config; the embeddings grow
    only for marker tokens the featurizer added to the tokenizer (:func:`fit_embeddings`).
    """
    from ..modeling.modeling_joint import JointRerankerModel
    from ..modeling.modeling_retriever import MODEL_BY_ARCHITECTURE, RetrieverModel

    if model_args.init_from:
        check_local_folder("--init_from", model_args.init_from)
        model_cls = JointRerankerModel if model_args.architecture == "joint" else RetrieverModel
        model = model_cls.from_pretrained(model_args.init_from)
    elif model_args.architecture == "joint":
        model = JointRerankerModel.from_encoder(resolve_encoder(model_args.encoder))
    else:
        if model_args.architecture not in MODEL_BY_ARCHITECTURE:
            raise ValueError(
                f"architecture must be one of {sorted(MODEL_BY_ARCHITECTURE)} or 'joint', got {model_args.architecture!r}"
            )
        kwargs = {
            "shared_encoder": model_args.shared_encoder,
            "similarity": model_args.similarity,
            "similarity_scale": model_args.similarity_scale,
        }
        reduction = model_args.reduction
        if reduction == "auto":
            reduction = sentence_transformers_pooling(resolve_encoder(model_args.encoder))
            if model_args.architecture != "dual":
                reduction = "leftmost"
            logger.info("--reduction auto: %s", reduction)
        if reduction != "leftmost":
            if model_args.architecture != "dual":
                raise ValueError(
                    f"--reduction {model_args.reduction}: only the dual architecture has a choice of reduction, "
                    f"got --architecture {model_args.architecture}"
                )
            # span: the mention (query) side averages the mention's own tokens, the entity side all of its tokens
            kwargs.update(
                query_reduction=reduction, key_reduction="mean" if reduction == "span" else reduction
            )
            if reduction == "span":
                kwargs["mention_marker_ids"] = mention_marker_ids(tokenizer)
        if model_args.num_vectors is not None:
            kwargs["m"] = model_args.num_vectors
        model = MODEL_BY_ARCHITECTURE[model_args.architecture].from_encoder(
            resolve_encoder(model_args.encoder), **kwargs
        )
    fit_embeddings(model, tokenizer)
    record_input_format(model, max_length)
    return model


def mention_marker_ids(tokenizer) -> list[int]:
    """The tokenizer's ids of the featurizer's mention start and end markers (each one token)."""
    from data_scripts.featurize import DEFAULT_MARKERS, marker_ids, prepare_tokenizer

    prepare_tokenizer(tokenizer)
    ids = marker_ids(tokenizer, DEFAULT_MARKERS)
    return [int(ids.mention_start), int(ids.mention_end)]


def record_input_format(model, max_length: int | None) -> None:
    """Write the featurizer's markers and ``max_length`` into the config (saved with the model)."""
    from data_scripts.featurize import DEFAULT_MARKERS

    from ..modeling.input_format import MARKER_FIELDS, InputFormat

    recorded = InputFormat.from_config(model.config)
    if recorded.markers != DEFAULT_MARKERS:
        raise ValueError(
            f"--init_from: the model was trained with markers {recorded.markers}, the featurizer uses {DEFAULT_MARKERS}"
        )
    for name, marker in zip(MARKER_FIELDS, DEFAULT_MARKERS, strict=True):
        setattr(model.config, name, marker)
    if max_length is None:
        return
    if recorded.max_length not in (None, max_length):
        logger.warning(
            "--max_length %d: the model was trained at %d; recording %d",
            max_length,
            recorded.max_length,
            max_length,
        )
    model.config.max_length = max_length


def fit_embeddings(model, tokenizer) -> None:
    """Grow the embeddings only for marker tokens the featurizer added (ids past the encoder's vocabulary).

    Any other token id past an encoder's embeddings means the tokenizer does not belong to the encoder: an error.
    """
    from data_scripts.featurize import DEFAULT_MARKERS

    vocab = tokenizer.get_vocab()
    needed = max(vocab.values()) + 1
    base = max(index for token, index in vocab.items() if token not in DEFAULT_MARKERS) + 1
    for name in ("mention_encoder", "entity_encoder", "encoder"):
        encoder = getattr(model, name, None)
        if encoder is None:
            continue
        rows = encoder.get_input_embeddings().num_embeddings
        if rows < base:
            raise ValueError(
                f"--encoder: the tokenizer has ids up to {base - 1} but the {name} embeddings have {rows} rows: "
                "the tokenizer does not belong to this encoder"
            )
        if rows < needed:
            added = [token for token in DEFAULT_MARKERS if vocab.get(token, -1) >= rows]
            logger.warning(
                "%s: grew the embeddings from %d to %d rows for the marker token(s) %s the featurizer added",
                name,
                rows,
                needed,
                added,
            )
    resize_embeddings(model, needed)


def resize_embeddings(model, vocab_size: int) -> None:
    """Grow every encoder's embeddings to `vocab_size` (marker tokens added to a tokenizer without [unusedN])."""
    for name in ("mention_encoder", "entity_encoder", "encoder"):
        encoder = getattr(model, name, None)
        if encoder is None or encoder.get_input_embeddings().num_embeddings >= vocab_size:
            continue
        encoder.resize_token_embeddings(vocab_size)
        if isinstance(
            getattr(model.config, name, None), dict
        ):  # the saved config must rebuild the same shapes
            getattr(model.config, name)["vocab_size"] = vocab_size


def sentence_transformers_pooling(encoder_dir: str) -> str:
    """The reduction matching a sentence-transformers checkpoint's pooling config: "mean" for mean pooling,
    "leftmost" for CLS pooling or when the folder ships no pooling config (a plain transformers checkpoint)."""
    modules_file = Path(encoder_dir) / "modules.json"
    if not modules_file.is_file():
        return "leftmost"
    try:
        modules = json.loads(modules_file.read_text())
        pooling = next((m for m in modules if m.get("type", "").endswith("Pooling")), None)
        if pooling is None:
            return "leftmost"
        pooling_file = Path(encoder_dir) / pooling.get("path", "") / "config.json"
        config = json.loads(pooling_file.read_text())
    except (OSError, ValueError, AttributeError) as error:
        raise ValueError(
            f"{modules_file}: unreadable sentence-transformers pooling config ({error})"
        ) from error
    if config.get("pooling_mode_mean_tokens"):
        return "mean"
    if config.get("pooling_mode_cls_token"):
        return "leftmost"
    raise ValueError(
        f"{pooling_file}: pooling {sorted(k for k, v in config.items() if v is True)} has no eq. (9) reduction "
        "(use --reduction leftmost or mean)"
    )
