"""Publishing model and dataset folders to the Hugging Face Hub, with a clear error when the Hub cannot be reached.

A recipe's output folder holds more than the model (``checkpoint-*/`` with optimizer state, the pickled
``training_args.bin``, candidate files, reports). A model push uploads exactly the inference folder
(:func:`inference_files`): weights, config, tokenizer, the remote code, the card and ``metrics.json``; the
candidate files only with ``push_candidates``.
"""

from __future__ import annotations

import logging
import os
from fnmatch import fnmatch
from pathlib import Path

logger = logging.getLogger(__name__)

# Top-level files of a saved model that inference needs (transformers' weight / config / tokenizer names).
INFERENCE_PATTERNS = (
    "config.json",
    "model.safetensors",
    "model-*-of-*.safetensors",
    "model.safetensors.index.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "*.model",  # sentencepiece vocabularies
    "*.py",  # the remote code (trust_remote_code)
    "README.md",
    "metrics.json",
)
CANDIDATE_PATTERN = "candidates/*.jsonl"
# Never pushed, whatever the allow list says (training state, pickles, logs, hidden files).
IGNORE_PATTERNS = (
    "checkpoint-*/*",
    "runs/*",
    "*.bin",
    "*.pt",
    "*.pth",
    "*.pkl",
    "trainer_state.json",
    ".*",
    "*/.*",
)


class HubUnavailableError(RuntimeError):
    """The Hub cannot be reached (offline mode or no network)."""


def _ignored(path: str) -> bool:
    return any(fnmatch(path, pattern) for pattern in IGNORE_PATTERNS)


def inference_files(folder: str | Path, push_candidates: bool = False) -> list[str]:
    """The relative paths a model push uploads: top-level inference files (+ ``candidates/*.jsonl``)."""
    folder = Path(folder)
    files = sorted(
        path.name
        for path in folder.iterdir()
        if path.is_file()
        and any(fnmatch(path.name, p) for p in INFERENCE_PATTERNS)
        and not _ignored(path.name)
    )
    if push_candidates:
        files += sorted(
            path.relative_to(folder).as_posix()
            for path in (folder / "candidates").glob("*.jsonl")
            if path.is_file()
        )
    for needed, what in (("config.json", "config"), ("README.md", "model card")):
        if needed not in files:
            raise FileNotFoundError(f"{folder} is not a saved model folder: no {needed} ({what})")
    if not any(name.endswith(".safetensors") for name in files):
        raise FileNotFoundError(f"{folder} is not a saved model folder: no *.safetensors weights")
    if push_candidates and not any(name.startswith("candidates/") for name in files):
        raise FileNotFoundError(
            f"--push_candidates: {folder / 'candidates'} holds no *.jsonl candidate files"
        )
    return files


def push_folder(
    folder: str | Path,
    repo_id: str,
    *,
    token: str | None = None,
    private: bool = False,
    api=None,
    repo_type: str = "model",
    required_file: str = "config.json",
    push_candidates: bool = False,
) -> str:
    """Create ``repo_id`` if needed and upload ``folder``; return the commit URL.

    ``repo_type="model"``: exactly :func:`inference_files` (``allow_patterns`` = that list, ``ignore_patterns`` =
    :data:`IGNORE_PATTERNS`). ``repo_type="dataset"``: the whole processed folder minus :data:`IGNORE_PATTERNS`.
    Offline mode and network failures raise :class:`HubUnavailableError`.
    """
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    folder = Path(folder)
    if not (folder / required_file).exists():
        raise FileNotFoundError(f"{folder} is not a saved {repo_type} folder (no {required_file})")
    allow = inference_files(folder, push_candidates) if repo_type == "model" else None
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes") and api is None:
        raise HubUnavailableError(
            f"cannot push {folder} to {repo_id!r}: HF_HUB_OFFLINE is set. Unset it on a machine with network "
            f"access, or upload later with `hf upload {repo_id} {folder} --repo-type {repo_type}`."
        )
    api = api or HfApi(token=token)
    try:
        api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True)
        commit = api.upload_folder(
            folder_path=str(folder),
            repo_id=repo_id,
            repo_type=repo_type,
            commit_message=f"Upload {repo_type}",
            allow_patterns=allow,
            ignore_patterns=list(IGNORE_PATTERNS),
        )
    except (OfflineModeIsEnabled, HfHubHTTPError, OSError) as error:
        raise HubUnavailableError(
            f"cannot push {folder} to {repo_id!r}: the Hugging Face Hub is unreachable or refused it ({error}). "
            f"Upload later with `hf upload {repo_id} {folder} --repo-type {repo_type}`."
        ) from error
    logger.info("pushed %s to %s (%s)", folder, repo_id, f"{len(allow)} files" if allow else "whole folder")
    return getattr(commit, "commit_url", f"https://huggingface.co/{repo_id}")
