"""Which training checkpoints are complete, and how the epoch's negatives travel with them.

A checkpoint of :class:`~hf_models.training.trainer.NCETrainer` is complete when ``trainer_state.json`` (written last by
the Trainer) parses, the weights are readable, the optimizer/scheduler files exist (unless ``save_only_model``)
and ``negatives.pt`` (written right after the weights, before the optimizer) holds the negatives of the epoch in
progress. ``--resume_from_checkpoint true`` resumes from the newest complete checkpoint; newer incomplete ones (a
kill while saving) are skipped with a warning. See README "What is checked".
"""

from __future__ import annotations

import io
import json
import logging
import re
from pathlib import Path

import torch

from ..atomic import atomic_write_bytes, ids_checksum
from .mining import MinedNegatives

logger = logging.getLogger(__name__)

NEGATIVES_NAME = "negatives.pt"
STATE_NAME = "trainer_state.json"
WEIGHTS_NAMES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def save_negatives(negatives: MinedNegatives, folder: str | Path) -> Path:
    """Write ``negatives.pt`` into a checkpoint folder atomically (temporary file, fsync, rename)."""
    buffer = io.BytesIO()
    torch.save(negatives.state_dict(), buffer)
    return atomic_write_bytes(Path(folder) / NEGATIVES_NAME, buffer.getvalue())


def load_negatives(folder: str | Path) -> MinedNegatives:
    """The negatives saved in a checkpoint; an unreadable file is an error naming it."""
    path = Path(folder) / NEGATIVES_NAME
    try:
        return MinedNegatives.from_state_dict(torch.load(path, weights_only=True))
    except (OSError, RuntimeError, KeyError, EOFError) as error:
        raise ValueError(f"{path}: cannot read the checkpoint's negatives ({error})") from error


def negatives_fingerprint(mentions, entities, args) -> dict:
    """What a checkpoint's negatives were mined for: the training mentions and entities (count and sha256 of the
    ordered ids: negatives are stored by row), K - 1, and the sampler and pool that drew them (not the seed: the
    negatives stay valid draws under another one)."""
    return {
        "num_mentions": len(mentions),
        "mentions_sha256": ids_checksum(mentions.mention_ids),
        "num_entities": len(entities),
        "entities_sha256": ids_checksum(entities.entity_ids),
        "num_negatives": args.num_candidates - 1,
        "negatives": args.negatives,
        "hard_fraction": float(args.hard_fraction),
        "negative_pool": args.negative_pool,
    }


def negatives_problem(negatives: MinedNegatives, expected: dict) -> str | None:
    """None when restored negatives fit this run (``expected``: :func:`negatives_fingerprint`), else what differs.

    Negatives saved before fingerprints existed are checked by shape and entity range only.
    """
    saved = negatives.fingerprint
    if saved is None:
        shape = (expected["num_mentions"], expected["num_negatives"])
        if tuple(negatives.ids.shape) != shape:
            return f"they are [{', '.join(map(str, negatives.ids.shape))}], this run needs {list(shape)} (mentions, K - 1)"
        if negatives.ids.numel() and int(negatives.ids.max()) >= expected["num_entities"]:
            return f"they name entity row {int(negatives.ids.max())}, this run has {expected['num_entities']} entities"
        return None
    differ = [
        f"{key}: saved {saved.get(key)!r}, this run {value!r}"
        for key, value in expected.items()
        if saved.get(key) != value
    ]
    return "; ".join(differ) or None


def checkpoint_problem(
    folder: str | Path, need_negatives: bool = True, need_optimizer: bool = True
) -> str | None:
    """None when ``folder`` is a complete checkpoint, else a sentence naming the missing or unreadable file."""
    folder = Path(folder)
    if not folder.is_dir():
        return f"{folder} is not a folder"
    state = folder / STATE_NAME
    if not state.exists():
        return f"{state} is missing (the checkpoint was not finished)"
    try:
        json.loads(state.read_text())
    except (ValueError, UnicodeDecodeError) as error:
        return f"{state} is not valid JSON ({error})"
    weights = next((folder / name for name in WEIGHTS_NAMES if (folder / name).exists()), None)
    if weights is None:
        return f"{folder} holds no model weights ({' / '.join(WEIGHTS_NAMES)})"
    if weights.name == "model.safetensors":
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(weights), framework="pt") as handle:
                handle.keys()
        except (SafetensorError, OSError) as error:
            return f"{weights} cannot be read ({error})"
    if need_optimizer:
        for name in ("optimizer.pt", "scheduler.pt"):
            if not (folder / name).exists():
                return f"{folder / name} is missing"
    if need_negatives and not (folder / NEGATIVES_NAME).exists():
        return (
            f"{folder / NEGATIVES_NAME} is missing: without the negatives of the epoch in progress the resumed run "
            "would differ from an uninterrupted one (pass --resume_remine_negatives true to accept re-mining them "
            "with the checkpoint's model)"
        )
    return None


def last_complete_checkpoint(
    output_dir: str | Path, need_negatives: bool = True, need_optimizer: bool = True
) -> Path | None:
    """The newest complete ``checkpoint-N`` of ``output_dir``; incomplete newer ones are skipped with a warning."""
    folder = Path(output_dir)
    if not folder.is_dir():
        return None
    found = sorted(
        (int(match.group(1)), path)
        for path in folder.iterdir()
        if (match := _CHECKPOINT.match(path.name)) and path.is_dir()
    )
    for _, path in reversed(found):
        problem = checkpoint_problem(path, need_negatives, need_optimizer)
        if problem is None:
            return path
        logger.warning("skipping the incomplete checkpoint %s: %s", path, problem)
    return None


def resolve_resume(
    value: str | bool | None, output_dir: str | Path, need_negatives: bool = True, need_optimizer: bool = True
) -> str | None:
    """``--resume_from_checkpoint`` as given (True / "true" = the newest complete checkpoint of ``output_dir``,
    False / "false" / None = none, else a checkpoint folder that must be complete) -> a folder or None."""
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "none", ""):
        value = value.strip().lower() == "true"
    if value is True:
        found = last_complete_checkpoint(output_dir, need_negatives, need_optimizer)
        if found is None:
            raise ValueError(f"--resume_from_checkpoint true: no complete checkpoint in {output_dir}")
        return str(found)
    if not value:
        return None
    problem = checkpoint_problem(value, need_negatives, need_optimizer)
    if problem is not None:
        raise ValueError(f"--resume_from_checkpoint {value}: {problem}")
    return str(value)
