"""--push_to_hub goes through huggingface_hub; exercised against a mocked API (the Hub is unreachable here)."""

from unittest import mock

import pytest

from hf_models.hub import HubUnavailableError, push_folder


@pytest.fixture
def model_folder(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "README.md").write_text("card")
    return tmp_path


def test_push_calls_create_repo_and_upload_folder(model_folder):
    api = mock.MagicMock()
    api.upload_folder.return_value = mock.Mock(commit_url="https://huggingface.co/me/model/commit/1")
    url = push_folder(model_folder, "me/model", private=True, api=api)
    api.create_repo.assert_called_once_with("me/model", repo_type="model", private=True, exist_ok=True)
    api.upload_folder.assert_called_once()
    assert api.upload_folder.call_args.kwargs["folder_path"] == str(model_folder)
    assert url.endswith("/commit/1")


def test_offline_error_is_clear(model_folder, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(HubUnavailableError, match="HF_HUB_OFFLINE"):
        push_folder(model_folder, "me/model")


def test_network_failure_is_clear(model_folder):
    api = mock.MagicMock()
    api.create_repo.side_effect = OSError("Name or service not known")
    with pytest.raises(HubUnavailableError, match="unreachable"):
        push_folder(model_folder, "me/model", api=api)


def test_not_a_model_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="no config.json"):
        push_folder(tmp_path, "me/model", api=mock.MagicMock())


def test_dataset_folder_push_uses_the_same_path(tmp_path):
    (tmp_path / "README.md").write_text("card")
    api = mock.MagicMock()
    push_folder(tmp_path, "me/data", api=api, repo_type="dataset", required_file="README.md")
    api.create_repo.assert_called_once_with("me/data", repo_type="dataset", private=False, exist_ok=True)
    assert api.upload_folder.call_args.kwargs["repo_type"] == "dataset"
