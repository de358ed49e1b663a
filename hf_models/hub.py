"""Publishing model folders to the Hugging Face Hub, with a clear error when the Hub cannot be reached."""

from __future__ import annotations

import logging
import os
from pathlib import Path

logger = logging.getLogger(__name__)


class HubUnavailableError(RuntimeError):
    """The Hub cannot be reached (offline mode or no network)."""


def push_folder(
    folder: str | Path,
    repo_id: str,
    *,
    token: str | None = None,
    private: bool = False,
    api=None,
    repo_type: str = "model",
    required_file: str = "config.json",
) -> str:
    """Create `repo_id` if needed and upload `folder` (a saved model, or with repo_type="dataset" a processed
    dataset folder); return the commit URL. Offline mode and network failures raise `HubUnavailableError`."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    folder = Path(folder)
    if not (folder / required_file).exists():
        raise FileNotFoundError(f"{folder} is not a saved {repo_type} folder (no {required_file})")
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
        )
    except (OfflineModeIsEnabled, HfHubHTTPError, OSError) as error:
        raise HubUnavailableError(
            f"cannot push {folder} to {repo_id!r}: the Hugging Face Hub is unreachable or refused it ({error}). "
            f"Upload later with `hf upload {repo_id} {folder} --repo-type {repo_type}`."
        ) from error
    logger.info("pushed %s to %s", folder, repo_id)
    return getattr(commit, "commit_url", f"https://huggingface.co/{repo_id}")
