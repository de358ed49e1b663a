"""Loading the linker's models: a saved retriever / reranker as its class, its tokenizer, its input markers."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import datasets
import torch
from transformers import AutoModel, AutoTokenizer

from ..atomic import CorruptFolderError, ids_checksum
from ..modeling.input_format import MIN_LENGTH, InputFormat
from .inputs import quiet_datasets

logger = logging.getLogger(__name__)


def config_markers(config) -> tuple[str, str, str]:
    """The model's (mention start, mention end, title) marker strings (its recorded input format)."""
    return InputFormat.from_config(config).markers


def check_positions(model, max_length: int) -> None:
    """``max_length`` must fit the position embeddings of every encoder of ``model`` (else the first batch fails
    deep inside the encoder with a shape error that names no setting)."""
    for name in ("mention_encoder", "entity_encoder", "encoder"):
        encoder = getattr(model, name, None)
        limit = getattr(getattr(encoder, "config", None), "max_position_embeddings", None)
        if isinstance(limit, int) and max_length > limit:
            raise ValueError(f"max_length {max_length} exceeds the {name}'s {limit} position embeddings")


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


STORE_DTYPES = ("float32", "float16", "bfloat16")


def read_index_manifest(
    path: Path, format_version: int, given: dict[str, Any] | None = None
) -> dict[str, Any]:
    """An index folder's ``manifest.json``, checked: its format version, the input length (an int >= 8), the store
    dtype (a float dtype), the backend settings and the fingerprints. Anything else is a ValueError naming it.

    The recorded input length and backend settings win over the caller's ``given`` ones (the vectors were built
    so); each one that differs is logged as a warning."""
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        checked = {
            "model": dict(manifest["model"]),
            "tokenizer": dict(manifest["tokenizer"]),
            "entity_files": dict(manifest["entity_files"]),
            "entity_ids_sha256": dict(manifest.get("entity_ids_sha256", {})),
            "store_dtype": manifest["store_dtype"],
            "aliases": manifest.get("aliases"),  # the alias table entry (alias_candidates.load_alias_table)
            "options": {k: manifest[k] for k in ("max_length", "backend", "faiss_kind", "shortlist_size")},
        }
        version = manifest.get("format_version")
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: malformed JSON ({error})") from error
    except (KeyError, TypeError, AttributeError, ValueError) as error:
        raise ValueError(f"{path}: missing or invalid field {error}") from error
    options = checked["options"]
    length, shortlist = options["max_length"], options["shortlist_size"]
    problems = [
        f"format_version {version!r} (this code reads {format_version})" if version != format_version else "",
        f"max_length {length!r} (an int >= {MIN_LENGTH})"
        if isinstance(length, bool) or not isinstance(length, int) or length < MIN_LENGTH
        else "",
        f"store_dtype {checked['store_dtype']!r} (one of {STORE_DTYPES})"
        if checked["store_dtype"] not in STORE_DTYPES
        else "",
        f"backend {options['backend']!r} (exact or faiss)"
        if options["backend"] not in ("exact", "faiss")
        else "",
        f"shortlist_size {shortlist!r} (a positive int or null)"
        if shortlist is not None
        and (isinstance(shortlist, bool) or not isinstance(shortlist, int) or shortlist < 1)
        else "",
    ]
    problems = [p for p in problems if p]
    if problems:
        raise ValueError(f"{path}: invalid {'; '.join(problems)}: rebuild the index with this code")
    for key, value in options.items():
        if given and key in given and given[key] != value:
            logger.warning("%s records %s=%r: using it instead of %r", path, key, value, given[key])
    return checked


def read_entity_files(
    folder: Path,
    entity_files: Mapping[str, str],
    ids_sha256: Mapping[str, str],
    vector_ids: Mapping[str, Sequence[str]],
) -> dict[str, datasets.Dataset]:
    """The entity table of each world of an index folder, checked against the manifest's id checksums and the
    loaded vectors' ids (``vector_ids``: world -> ids); a corrupt or mismatched file is an error naming it."""
    entities = {}
    for world, name in entity_files.items():
        try:
            with quiet_datasets():
                entities[world] = datasets.Dataset.from_parquet(str(folder / name))
        except Exception as error:  # pyarrow raises several types for a corrupt file
            raise ValueError(f"{folder / name}: cannot read the entity table ({error})") from error
        ids = entities[world]["entity_id"]
        expected = ids_sha256.get(world)
        if (expected is not None and ids_checksum(ids) != expected) or (
            world in vector_ids and list(ids) != list(vector_ids[world])
        ):
            raise CorruptFolderError(
                f"{folder}: {folder / name} does not hold the entities of the vectors in {folder / 'vectors'} "
                f"(world {world!r}: ids or their order differ); rebuild the index"
            )
    missing = sorted(set(vector_ids) - set(entities))
    if missing:
        raise CorruptFolderError(
            f"{folder / 'manifest.json'}: no entity file for world(s) {missing} of the vectors"
        )
    return entities


ENTITIES_DIR = "entities"


def write_entity_files(
    folder: Path, entities: Mapping[str, datasets.Dataset]
) -> tuple[dict[str, str], dict[str, str]]:
    """Write each world's entity table to ``folder/entities/world_NNNN.parquet`` -> (world -> file name,
    world -> sha256 of its ordered ids), the manifest's ``entity_files`` and ``entity_ids_sha256``."""
    (folder / ENTITIES_DIR).mkdir()
    files, checksums = {}, {}
    for number, (world, rows) in enumerate(entities.items()):
        name = f"{ENTITIES_DIR}/world_{number:04d}.parquet"
        with quiet_datasets():
            rows.to_parquet(str(folder / name))
        files[world], checksums[world] = name, ids_checksum(rows["entity_id"])
    return files, checksums
