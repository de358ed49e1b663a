"""An :class:`~hf_models.index.entity_index.EntityIndex` on disk: one world's entities in memory
(:class:`WorldEntities`), and the atomic, checked folder layout that ``EntityIndex.save`` / ``load`` use."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from ..atomic import (
    CorruptFolderError,
    atomic_folder,
    check_files_sha256,
    fault_point,
    files_sha256,
    ids_checksum,
    read_json,
    readable_folder,
)
from ..modeling.scoring import Representation
from ..progress import tqdm

logger = logging.getLogger(__name__)
WORLDS_FILE = "worlds.json"
ENTITY_IDS_FILE = "entity_ids.json"
REPRESENTATION_FILE = "representation.safetensors"


@dataclass
class WorldEntities:
    """One world's entities: their ids (row order), representations, and an optional FAISS index."""

    entity_ids: list[str]
    representation: Representation  # vectors [E, L, H] (store dtype), mask [E, L]
    faiss_index: object | None = None
    # what the encoding was computed from: (model_state_key, input_ids [E, T], attention_mask [E, T]); None when
    # loaded from disk. add_world reuses the entry only when all three still match.
    source: tuple | None = None

    def __len__(self) -> int:
        return len(self.entity_ids)


def save_worlds(worlds: dict[str, WorldEntities], directory: str | Path, settings: dict) -> Path:
    """Write every world's entity ids, representation and FAISS index to ``directory``; ``settings`` (backend,
    faiss kind, shortlist size, store dtype) go into the manifest beside the worlds.

    Layout: ``worlds.json`` (world name -> sub-folder, row count and sha256 of the ordered entity ids; the settings)
    and per world ``world_NNNN/entity_ids.json``, ``representation.safetensors`` (vectors [E, L, H], mask [E, L])
    and ``faiss/`` (only when the world has a FAISS index). The folder is replaced atomically
    (:func:`~hf_models.atomic.atomic_folder`): a killed save leaves the previous index.
    """
    from safetensors.torch import save_file

    folder = Path(directory)
    listing = {}
    with atomic_folder(folder, replaces=WORLDS_FILE) as temporary:
        for number, (world, entry) in enumerate(worlds.items()):
            sub = temporary / f"world_{number:04d}"
            sub.mkdir()
            (sub / ENTITY_IDS_FILE).write_text(json.dumps(entry.entity_ids))
            fault_point("index:after_entity_ids")
            rep = entry.representation
            save_file(
                {"vectors": rep.vectors.contiguous(), "mask": rep.mask.contiguous()},
                sub / REPRESENTATION_FILE,
            )
            if entry.faiss_index is not None:
                entry.faiss_index.save(sub / "faiss")
            listing[world] = {
                "folder": sub.name,
                "rows": len(entry),
                "ids_sha256": ids_checksum(entry.entity_ids),
                "files_sha256": files_sha256(sub),
            }
        (temporary / WORLDS_FILE).write_text(json.dumps({"worlds": listing, **settings}, indent=2))
    logger.info("saved %d world(s) to %s", len(listing), folder)
    return folder


def load_worlds(
    directory: str | Path, show_progress: bool = True, verify_checksums: bool = True
) -> tuple[dict[str, tuple[WorldEntities, Path]], dict]:
    """Read the worlds written by :func:`save_worlds` -> ({world: (entry without FAISS index, its sub-folder)},
    the manifest).

    Every world's files are checked against ``worlds.json`` (sha256 of each file, row counts, sha256 of the ordered
    ids): a mismatch or an unreadable file raises :class:`~hf_models.atomic.CorruptFolderError` naming the folder and the
    file. ``verify_checksums=False`` skips the file checksums (counts and ids are still checked): a large trusted index
    then loads without reading every file twice.
    """
    folder = readable_folder(directory)
    if not (folder / WORLDS_FILE).exists():
        raise FileNotFoundError(f"{folder} holds no saved entity index ({WORLDS_FILE} is missing)")
    meta = read_json(folder / WORLDS_FILE, folder)
    worlds = {}
    for world, spec in tqdm(meta["worlds"].items(), desc="loading worlds", disable=not show_progress):
        spec = {"folder": spec} if isinstance(spec, str) else spec  # indices saved before the checks
        sub = folder / spec["folder"]
        rep = _load_representation(sub / REPRESENTATION_FILE, folder)
        entry = WorldEntities(entity_ids=_load_ids(sub / ENTITY_IDS_FILE, folder), representation=rep)
        _check_world(entry, spec, sub, folder)
        if verify_checksums:  # reads every file once more (~1.5 s per GB here); not in older indices
            check_files_sha256(sub, spec.get("files_sha256", {}), folder / WORLDS_FILE)
        worlds[world] = (entry, sub)
    return worlds, meta


def _load_representation(path: Path, folder: Path) -> Representation:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        tensors = load_file(path)
    except (SafetensorError, OSError, ValueError) as error:
        raise CorruptFolderError(f"{folder}: {path} cannot be read ({error})") from error
    if set(tensors) != {"vectors", "mask"}:
        raise CorruptFolderError(f"{folder}: {path} holds {sorted(tensors)}, expected vectors and mask")
    return Representation(vectors=tensors["vectors"], mask=tensors["mask"])


def _load_ids(path: Path, folder: Path) -> list[str]:
    ids = read_json(path, folder)
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise CorruptFolderError(f"{folder}: {path} must be a JSON list of entity id strings")
    return ids


def _check_world(entry: WorldEntities, spec: dict, sub: Path, folder: Path) -> None:
    """The ids, the vectors and the manifest (worlds.json) must agree on the rows and on their order."""
    ids_path, rows = sub / ENTITY_IDS_FILE, entry.representation.vectors.shape[0]
    expected = spec.get("rows", rows)
    if len(entry.entity_ids) != expected or rows != expected:
        raise CorruptFolderError(
            f"{folder}: {ids_path} has {len(entry.entity_ids)} ids and {sub / REPRESENTATION_FILE} {rows} rows, "
            f"but {folder / WORLDS_FILE} records {expected}"
        )
    if "ids_sha256" in spec and ids_checksum(entry.entity_ids) != spec["ids_sha256"]:
        raise CorruptFolderError(
            f"{folder}: {ids_path} does not match the ids checksum in {folder / WORLDS_FILE} (ids changed or "
            "reordered since the index was saved): rebuild the index"
        )
