"""--push_to_hub goes through huggingface_hub; exercised against a mocked API (the Hub is unreachable here)."""

from pathlib import Path
from unittest import mock

import pytest

from hf_models.publishing.hub import HubUnavailableError, push_folder


@pytest.fixture
def model_folder(tmp_path):
    for name in ("config.json", "README.md", "model.safetensors"):
        (tmp_path / name).write_text("{}")
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
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "README.md").write_text("card")
    with pytest.raises(FileNotFoundError, match="safetensors"):
        push_folder(tmp_path, "me/model", api=mock.MagicMock())


def pushed_files(api: mock.MagicMock, folder: Path) -> set[str]:
    """What ``upload_folder`` uploads for the mocked call's arguments (huggingface_hub's own pattern filter)."""
    from huggingface_hub.utils import filter_repo_objects

    kwargs = api.upload_folder.call_args.kwargs
    assert kwargs["folder_path"] == str(folder)
    files = [p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()]
    return set(
        filter_repo_objects(
            files, allow_patterns=kwargs["allow_patterns"], ignore_patterns=kwargs["ignore_patterns"]
        )
    )


@pytest.fixture
def recipe_output(tiny_bert_dir, tmp_path) -> tuple[Path, set[str]]:
    """A recipe output folder: the saved model (+ tokenizer, card, metrics) and everything training leaves around."""
    from transformers import AutoTokenizer

    from hf_models import DualEncoderModel

    folder = tmp_path / "out"
    DualEncoderModel.from_encoder(str(tiny_bert_dir)).save_pretrained(folder)
    AutoTokenizer.from_pretrained(tiny_bert_dir).save_pretrained(folder)
    (folder / "README.md").write_text("card")
    (folder / "metrics.json").write_text("{}")
    inference = {p.name for p in folder.iterdir()}
    for junk in ("checkpoint-4/model.safetensors", "checkpoint-4/optimizer.pt", "checkpoint-4/config.json",
                 "checkpoint-4/modeling_retriever.py", "checkpoint-4/trainer_state.json", "training_args.bin",
                 "candidates/train.jsonl", "candidates/val.jsonl", "qualitative.md", "runs/events.out",
                 ".cache/x.lock"):  # fmt: skip
        (folder / junk).parent.mkdir(parents=True, exist_ok=True)
        (folder / junk).write_text("x")
    return folder, inference


def test_push_uploads_exactly_the_inference_folder(recipe_output):
    folder, inference = recipe_output
    assert {
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "modeling_retriever.py",
        "input_format.py",
    } <= inference
    api = mock.MagicMock()
    push_folder(folder, "me/model", api=api)
    assert pushed_files(api, folder) == inference
    api = mock.MagicMock()
    push_folder(folder, "me/model", api=api, push_candidates=True)
    assert pushed_files(api, folder) == inference | {"candidates/train.jsonl", "candidates/val.jsonl"}


def test_push_candidates_without_candidates_is_an_error(model_folder):
    with pytest.raises(FileNotFoundError, match="push_candidates"):
        push_folder(model_folder, "me/model", api=mock.MagicMock(), push_candidates=True)


def test_dataset_folder_push_uses_the_same_path(tmp_path):
    (tmp_path / "README.md").write_text("card")
    api = mock.MagicMock()
    push_folder(tmp_path, "me/data", api=api, repo_type="dataset", required_file="README.md")
    api.create_repo.assert_called_once_with("me/data", repo_type="dataset", private=False, exist_ok=True)
    assert api.upload_folder.call_args.kwargs["repo_type"] == "dataset"


@pytest.mark.parametrize(
    ("pretty_name", "license_id"), [("Zeshel entity linking", "cc-by-sa-3.0"), ("My tables", "other")]
)
def test_dataset_card_declares_license_and_language(tmp_path, pretty_name, license_id):
    from huggingface_hub import DatasetCard

    from data_scripts.io import write_processed

    from .conftest import make_tiny_tables

    mentions, entities = make_tiny_tables({"alpha": "train"}, entities_per_world=3, mentions_per_world=2)
    write_processed(mentions, entities, tmp_path / "data", pretty_name=pretty_name)
    card = DatasetCard.load(tmp_path / "data" / "README.md")
    assert card.data.license == license_id
    assert card.data.language == ["en"]


def test_recipe_finish_pushes_the_inference_folder(recipe_output, monkeypatch):
    """--push_to_hub / --push_candidates reach push_folder; the card and metrics are written first."""
    from types import SimpleNamespace

    from hf_models.recipes import recipe
    from hf_models.training.training_args import NCETrainingArguments

    folder, inference = recipe_output
    api = mock.MagicMock()
    monkeypatch.setattr(
        recipe, "push_folder", lambda *a, **k: push_folder(*a, api=api, **k) and "https://hub/commit"
    )
    args = NCETrainingArguments(output_dir=str(folder), report_to="none", use_cpu=True, hub_model_id="me/m")
    model = SimpleNamespace(config=__import__("hf_models").DualConfig(max_length=32))
    trainer = SimpleNamespace(
        args=args, model=model, dataset_name="glossary_el", base_model="bert-base-uncased",
        log=lambda metrics: None, save_model=lambda path: None, is_world_process_zero=lambda: True,
    )  # fmt: skip
    recipe.finish(trainer, {"val": {"recall@64": 50.0}}, push=True, push_candidates=True)
    assert api.create_repo.call_args.args == ("me/m",)
    assert pushed_files(api, folder) == inference | {"candidates/train.jsonl", "candidates/val.jsonl"}
    assert "recall@64" in (folder / "README.md").read_text()
