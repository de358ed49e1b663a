"""Which model and tokenizer built an index: fingerprints recorded in the index manifest and checked on load."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

DEFAULT_MARKERS = ("[unused0]", "[unused1]", "[unused2]")
# Config entries that say nothing about the function the model computes.
_VOLATILE_CONFIG_KEYS = (
    "_name_or_path",
    "transformers_version",
    "torch_dtype",
    "dtype",
    "auto_map",
    "architectures",
)
_MODEL_KEYS = ("class", "config_sha256", "weights_sha256")
_TOKENIZER_KEYS = ("vocab_size", "vocab_sha256", "special_tokens", "lowercase")


class IndexMismatchError(ValueError):
    """The saved index was built by another model or tokenizer than the linker's."""


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def model_fingerprint(model: torch.nn.Module, values_per_tensor: int = 256) -> dict[str, Any]:
    """Identify a model: its class, its config (volatile keys dropped) and a sha256 of its weights.

    The weights hash covers every tensor's name, shape and ``values_per_tensor`` evenly spaced values (float32),
    which tells apart any two trainings or initialisations without hashing every weight.
    """
    config = {k: v for k, v in model.config.to_dict().items() if k not in _VOLATILE_CONFIG_KEYS}
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        flat = tensor.detach().reshape(-1)
        picks = torch.linspace(0, max(flat.numel() - 1, 0), min(values_per_tensor, flat.numel())).long()
        digest.update(f"{name}{tuple(tensor.shape)}".encode())
        digest.update(flat[picks.to(flat.device)].to("cpu", torch.float32).numpy().tobytes())
    return {
        "class": type(model).__name__,
        "name_or_path": str(
            getattr(model, "name_or_path", "") or model.config.to_dict().get("_name_or_path", "")
        ),
        "architecture": getattr(model.config, "architecture", None),
        "config_sha256": _sha256(json.dumps(config, sort_keys=True, default=str).encode()),
        "weights_sha256": digest.hexdigest(),
    }


def tokenizer_fingerprint(tokenizer, markers: Sequence[str] = DEFAULT_MARKERS) -> dict[str, Any]:
    """Identify a tokenizer: name, vocabulary size and sha256, and the ids of the marker/[CLS]/[SEP] tokens."""
    vocab = sorted(tokenizer.get_vocab().items())
    special = {token: tokenizer.convert_tokens_to_ids(token) for token in markers}
    special.update(cls=tokenizer.cls_token_id, sep=tokenizer.sep_token_id, pad=tokenizer.pad_token_id)
    return {
        "class": type(tokenizer).__name__,
        "name_or_path": str(tokenizer.name_or_path),
        "vocab_size": len(tokenizer),
        "vocab_sha256": _sha256(json.dumps(vocab).encode()),
        "special_tokens": special,
        "lowercase": bool(getattr(tokenizer, "do_lower_case", False)),
    }


def _describe(fingerprint: dict[str, Any], keys: Sequence[str]) -> str:
    name = fingerprint.get("name_or_path") or "?"
    fields = ", ".join(
        f"{k}={str(fingerprint.get(k))[:12] if k.endswith('sha256') else fingerprint.get(k)}" for k in keys
    )
    return f"{name!r} ({fields})"


def check_fingerprints(saved: dict[str, Any], current: dict[str, Any], what: str, index_dir: Path) -> None:
    """Raise :class:`IndexMismatchError` naming both sides when ``saved`` and ``current`` differ."""
    keys = _MODEL_KEYS if what == "model" else _TOKENIZER_KEYS
    differing = [k for k in keys if saved.get(k) != current.get(k)]
    if differing:
        raise IndexMismatchError(
            f"the index at {index_dir} was built by {what} {_describe(saved, keys)}, but this linker's {what} is "
            f"{_describe(current, keys)} (differs in {differing}). Rebuild it with "
            "`python -m hf_models.linking build-index` (or EntityLinker.build_index) using this model."
        )
