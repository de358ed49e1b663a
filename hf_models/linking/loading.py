"""Loading the linker's models: a saved retriever / reranker as its class, its tokenizer, its input markers."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from transformers import AutoModel, AutoTokenizer

from ..input_format import InputFormat

logger = logging.getLogger(__name__)


def config_markers(config) -> tuple[str, str, str]:
    """The model's (mention start, mention end, title) marker strings (its recorded input format)."""
    return InputFormat.from_config(config).markers


def load_model(path: str | Path, expected: type[torch.nn.Module]) -> torch.nn.Module:
    """A saved retriever / reranker as its registered class (``SumOfMaxModel``, ...), using this package's code."""
    model = AutoModel.from_pretrained(str(path), trust_remote_code=False)
    if not isinstance(model, expected):
        raise TypeError(f"{path} holds a {type(model).__name__}, not a {expected.__name__}")
    return model


def optional_tokenizer(path: str | Path):
    """The tokenizer saved with a model folder/repo, or None when it has none."""
    try:
        return AutoTokenizer.from_pretrained(str(path), trust_remote_code=False)
    except (OSError, ValueError, TypeError):
        logger.info("no tokenizer found with %s; using the retriever's", path)
        return None
