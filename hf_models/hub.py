"""Publishing model folders to the Hugging Face Hub, with a clear error when the Hub cannot be reached."""

from __future__ import annotations

import logging
import os
from pathlib import Path

logger = logging.getLogger(__name__)


class HubUnavailableError(RuntimeError):
    """The Hub cannot be reached (offline mode or no network)."""


def push_folder(
    folder: str | Path, repo_id: str, *, token: str | None = None, private: bool = False, api=None
) -> str:
    """Create `repo_id` if needed and upload `folder` (weights, config, remote code, model card); return its URL."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import OfflineModeIsEnabled

    folder = Path(folder)
    if not (folder / "config.json").exists():
        raise FileNotFoundError(f"{folder} is not a saved model folder (no config.json)")
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes") and api is None:
        raise HubUnavailableError(
            f"cannot push {folder} to {repo_id!r}: HF_HUB_OFFLINE is set. Unset it on a machine with network "
            f"access, or upload later with `huggingface-cli upload {repo_id} {folder}`."
        )
    api = api or HfApi(token=token)
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        commit = api.upload_folder(
            folder_path=str(folder), repo_id=repo_id, commit_message="Upload NCE retriever"
        )
    except (OfflineModeIsEnabled, OSError) as error:
        raise HubUnavailableError(
            f"cannot push {folder} to {repo_id!r}: the Hugging Face Hub is unreachable ({error}). "
            f"Upload later with `huggingface-cli upload {repo_id} {folder}`."
        ) from error
    logger.info("pushed %s to %s", folder, repo_id)
    return getattr(commit, "commit_url", f"https://huggingface.co/{repo_id}")
