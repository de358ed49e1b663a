"""Export a dual-encoder retriever as a sentence-transformers model (a query/document :class:`Router`).

    from hf_models.publishing.st_export import export_sentence_transformer, mention_text, entity_text
    export_sentence_transformer("out/dual", "out/dual-st")  # markers and max_length read from the model's config
    model = SentenceTransformer("out/dual-st")
    q = model.encode_query([mention_text("He met", "the Doctor", "on Gallifrey.", model.tokenizer, model.max_seq_length)])
    d = model.encode_document([entity_text("The Doctor", "The Doctor is a Time Lord ...")])
    model.similarity(q, d)  # dot products = the retriever's scores E_1(x)^T F_1(y)

The ``"query"`` route is the mention encoder E, the ``"document"`` route the entity encoder F, each a
``Transformer`` + CLS pooling (the first token, as ``encode_mentions`` / ``encode_entities`` take it; mean pooling
for a side with the "mean" reduction; plus ``Normalize`` and cosine similarity when the retriever's
``similarity`` is "cosine": its scores are then ``similarity_scale`` times the exported model's). The vectors
equal the retriever's when the text is what the retriever saw between ``[CLS]`` and ``[SEP]``:

* mentions: ``left [unused0] mention [unused1] right`` CUT TO THE PAPER'S WINDOW (the context budget split around
  the mention, :func:`hf_models.modeling.input_format.window_mention`) -- sentence-transformers only truncates on the right,
  so build the text with :func:`mention_text`;
* entities: ``title [unused2] text`` (:func:`entity_text`); right truncation at ``max_length`` is the paper's.

The markers (special tokens of the exported tokenizer) and ``max_length`` (``max_seq_length`` of both routes) are
the ones recorded in the retriever's config (:class:`hf_models.modeling.input_format.InputFormat`).

Only ``dual`` is exported: multi-m's entity side is m vectors per entity (max-reduced at search time) and som's
is every token, which a single-vector sentence-transformers pipeline cannot represent.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

from transformers import AutoTokenizer

from ..index.entity_index import _is_dot_product
from ..modeling.input_format import DEFAULT_MARKERS, InputFormat, window_mention
from ..modeling.modeling_retriever import RetrieverModel

logger = logging.getLogger(__name__)


def mention_text(
    left: str,
    mention: str,
    right: str,
    tokenizer,
    max_length: int,
    input_format: InputFormat | None = None,
) -> str:
    """The mention input as text, in the paper's window: ``left [unused0] mention [unused1] right`` (no [CLS]/[SEP]).

    The window is :func:`hf_models.modeling.input_format.window_mention`'s, decoded back to text (wordpieces rejoined), so a
    sentence-transformers tokenizer re-tokenizes it to the same ids the retriever was given -- except when the
    window's left edge cuts a word: the retriever then saw a continuation piece (``##xx``) that no text can
    produce, and it is dropped here (the vectors then differ slightly from ``encode_mentions``'). ``max_length`` is
    the exported model's ``max_seq_length``; ``input_format`` its markers (default: ``[unused0..2]``).
    """
    fmt = input_format or InputFormat()
    fmt.prepare_tokenizer(tokenizer)
    pieces = tokenizer([left, mention, right], add_special_tokens=False)["input_ids"]
    ids = window_mention(*pieces, fmt.marker_ids(tokenizer), max_length)[1:-1]  # drop [CLS] / [SEP]
    tokens = tokenizer.convert_ids_to_tokens(ids)
    first = next(i for i, token in enumerate(tokens) if not token.startswith("##"))
    return tokenizer.decode(ids[first:], skip_special_tokens=False, clean_up_tokenization_spaces=False)


def entity_text(title: str, text: str, title_separator: str = DEFAULT_MARKERS[2]) -> str:
    """The entity input as text: ``title [unused2] text`` (right truncation is applied by the tokenizer)."""
    return f"{title} {title_separator} {text}"


def check_exportable(model: RetrieverModel) -> None:
    """Raise ValueError unless ``model`` is a dual encoder (one vector per mention and per entity)."""
    config = model.config
    if not (_is_dot_product(config) and config.num_key_vectors == 1):
        raise ValueError(
            f"only dual retrievers export to sentence-transformers; architecture {config.architecture!r} has "
            f"{config.num_key_vectors} entity vectors (multi-m / som need EntityIndex or FaissIndex instead)"
        )
    for side in ("mention", "entity"):
        if config.side(side)[0] not in ("mean", "leftmost"):
            raise ValueError(
                f"the {side} side reduces with {config.side(side)[0]!r}: sentence-transformers' Pooling has no such "
                "mode (only duals with leftmost or mean reductions export; use the retriever itself otherwise)"
            )


def export_sentence_transformer(
    retriever: str | Path | RetrieverModel,
    output_dir: str | Path,
    tokenizer=None,
    max_length: int | None = None,
) -> Path:
    """Write a ``SentenceTransformer`` folder whose query/document routes are the retriever's mention/entity towers.

    Args:
        retriever: a dual retriever or its folder (the tokenizer is then read from the folder).
        output_dir: where the sentence-transformers model is saved.
        tokenizer: the retriever's tokenizer (needed when ``retriever`` is a model object).
        max_length: ``max_seq_length`` of both routes; None = the ``max_length`` recorded in the retriever's config
            (an error when none is recorded). A value different from the recorded one is an explicit override.
    """
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules import Router, Transformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling

    if not isinstance(retriever, RetrieverModel):
        tokenizer = tokenizer or AutoTokenizer.from_pretrained(str(retriever), trust_remote_code=False)
        from ..linking import load_model

        retriever = load_model(retriever, RetrieverModel)
    if tokenizer is None:
        raise ValueError("pass the retriever's tokenizer when exporting a model object")
    check_exportable(retriever)
    fmt = InputFormat.from_config(retriever.config)
    if max_length is None:
        if fmt.max_length is None:
            raise ValueError(
                "max_length: the retriever's config records no input length; pass max_length= (its training length)"
            )
        max_length = fmt.max_length
    elif fmt.max_length is not None and max_length != fmt.max_length:
        logger.warning(
            "max_length=%d overrides the length the retriever was trained with (%d)",
            max_length,
            fmt.max_length,
        )
    fmt.prepare_tokenizer(tokenizer)  # the markers are special tokens: never split or lower-cased
    fmt.marker_ids(tokenizer)  # each marker must be one token of this tokenizer
    routes = {}
    with tempfile.TemporaryDirectory() as scratch:
        config = retriever.config
        cosine = getattr(config, "similarity", "dot") == "cosine"
        sides = (
            ("query", "mention", retriever.mention_encoder),
            ("document", "entity", retriever.entity_encoder),
        )
        for route, side, encoder in sides:
            folder = Path(scratch) / route
            encoder.save_pretrained(folder)
            tokenizer.save_pretrained(folder)
            transformer = Transformer(str(folder), max_seq_length=max_length)
            pooling = (
                "mean" if config.side(side)[0] == "mean" else "cls"
            )  # the retriever's reduction of this side
            routes[route] = [
                transformer,
                Pooling(transformer.get_embedding_dimension(), pooling_mode=pooling),
            ]
            if cosine:  # unit vectors: ST's cosine = the retriever's score / similarity_scale
                routes[route].append(Normalize())
        router = Router.for_query_document(routes["query"], routes["document"])
        similarity = "cosine" if cosine else "dot"
        model = SentenceTransformer(modules=[router], similarity_fn_name=similarity, device="cpu")
        model.save(str(output_dir))
    logger.info("exported %s as a sentence-transformers model to %s", type(retriever).__name__, output_dir)
    return Path(output_dir)
