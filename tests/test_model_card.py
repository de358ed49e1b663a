"""Model cards: parseable ModelCardData with eval results, the right text per model kind, no reprs or paths, and a
usage snippet that runs with only torch + transformers (the project off sys.path)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from huggingface_hub import ModelCard
from transformers import AutoTokenizer
from transformers.training_args import OptimizerNames

from data_scripts.featurize import prepare_tokenizer
from hf_models import DualEncoderModel, JointRerankerModel
from hf_models.publishing.model_card import hub_id, split_metrics, write_model_card

RESULTS = {
    "val": {"recall@64": 81.25, "recall@1": 40.0, "unnormalized_accuracy": 35.5, "normalized_accuracy": 43.7, "num_mentions": 10},
    "test": {"recall@64": 77.0, "unnormalized_accuracy": 30.0, "normalized_accuracy": 39.0, "num_mentions": 10},
}  # fmt: skip


def training_args(**overrides) -> SimpleNamespace:
    values = dict(
        negatives="hard", hard_percent=50.0, negative_pool="world", num_candidates=64, loss="nce",
        learning_rate=2e-5, num_train_epochs=4, per_device_train_batch_size=4, gradient_accumulation_steps=1,
        optim=OptimizerNames.ADAMW_TORCH, seed=42,
    )  # fmt: skip
    values.update(overrides)
    return SimpleNamespace(**values)


def save_model_folder(model, tiny_bert_dir: Path, folder: Path, args, results=RESULTS) -> Path:
    """What a recipe leaves in its output folder's inference part: weights, config, tokenizer, code, card."""
    model.config.max_length = 24
    model.save_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert_dir)
    prepare_tokenizer(tokenizer)
    tokenizer.save_pretrained(folder)
    flat = {f"{split}/{k}": v for split, metrics in results.items() for k, v in metrics.items()}
    write_model_card(folder, model.config, args, flat, dataset="glossary_el", base_model=str(tiny_bert_dir))
    (folder / "metrics.json").write_text(json.dumps(results))
    return folder


@pytest.fixture(scope="module")
def folders(tiny_bert_dir, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cards")
    return {
        "dual": save_model_folder(
            DualEncoderModel.from_encoder(str(tiny_bert_dir)), tiny_bert_dir, root / "dual", training_args()
        ),
        "joint": save_model_folder(
            JointRerankerModel.from_encoder(str(tiny_bert_dir)),
            tiny_bert_dir,
            root / "joint",
            training_args(),
        ),
    }


@pytest.mark.parametrize("name", ["dual", "joint"])
def test_card_parses_with_eval_results(folders, name: str) -> None:
    card = ModelCard.load(folders[name] / "README.md")
    results = card.data.eval_results
    assert results, "model-index eval results"
    found = {(r.dataset_split, r.metric_type): r.metric_value for r in results}
    assert found[("val", "recall@64")] == pytest.approx(81.25)
    assert found[("test", "normalized_accuracy")] == pytest.approx(39.0)
    assert not any(metric == "num_mentions" for _, metric in found)
    assert card.data.pipeline_tag == ("text-ranking" if name == "joint" else "feature-extraction")
    assert card.data.library_name == "transformers"
    assert card.data.base_model is None, "a local backbone path is not a Hub id"


@pytest.mark.parametrize("name", ["dual", "joint"])
def test_card_text_has_no_reprs_enums_or_paths(folders, name: str, tiny_bert_dir) -> None:
    text = (folders[name] / "README.md").read_text()
    config = (folders[name] / "config.json").read_text()
    for leak in ("OptimizerNames", "{'", "<", str(tiny_bert_dir), "/tmp/"):
        assert leak not in text.replace("<=", ""), leak
    assert str(tiny_bert_dir) not in config and "_name_or_path" not in config
    assert "| optim | adamw_torch |" in text
    assert "transformers>=5" in text and "[unused0]" in text and "24 wordpieces" in text
    if name == "joint":
        assert "eq. (9)" not in text and "re-mined" not in text
        assert "fixed retriever" in text
    else:
        assert "E_1(x)^T F_1(y)" in text and "re-mined" in text and "own world" in text


def test_card_kinds_of_negatives() -> None:
    from hf_models.publishing.model_card import describe

    config = SimpleNamespace(architecture="som", model_type="nce-som", similarity="dot")
    assert "30% hard" in describe(config, training_args(negatives="mixed", hard_percent=30.0))
    assert "uniformly random" in describe(config, training_args(negatives="random", negative_pool="training"))
    assert "training worlds" in describe(config, training_args(negative_pool="training"))
    assert "gold entities of the training mentions" in describe(
        config, training_args(negative_pool="labeled")
    )
    assert "eq. (10)" in describe(config, training_args(loss="adjusted"))
    assert "no in-batch negatives" in describe(config, training_args())
    shared = describe(
        config, training_args(share_candidates=True, per_device_train_batch_size=16, num_candidates=2)
    )
    assert "no in-batch negatives" not in shared and "up to 16 x K - 1 negatives" in shared
    assert "word-embedding tables were kept fixed" in describe(
        config, training_args(freeze_word_embeddings=True)
    )
    assert "batch held mentions of one world" in describe(config, training_args(group_batches_by_world=True))


def test_helpers() -> None:
    assert hub_id("sentence-transformers/all-MiniLM-L6-v2") == "sentence-transformers/all-MiniLM-L6-v2"
    assert hub_id("/tmp/model") is None and hub_id("./x") is None
    assert (
        hub_id("data/glossary_el") is None
    )  # a local folder (the recipes pass dataset_dir) is no Hub dataset
    from hf_models.publishing.model_card import card_data

    config = SimpleNamespace(architecture="dual", model_type="nce-dual")
    local = card_data(config, {}, dataset="data/glossary_el")
    assert local.datasets is None and local.model_name == "dual-retriever-glossary_el"
    assert card_data(config, {}, dataset="org/zeshel").datasets == ["org/zeshel"]
    assert split_metrics({"eval_recall@8": 1.0, "val/recall@64": 2.0, "epoch": 3}) == {
        "eval": {"recall@8": 1.0},
        "val": {"recall@64": 2.0},
    }


@pytest.mark.parametrize("name", ["dual", "joint"])
def test_card_usage_snippet_runs_in_clean_interpreter(folders, name: str, tmp_path) -> None:
    text = (folders[name] / "README.md").read_text()
    snippet = re.search(r"```python\n(.*?)```", text, re.DOTALL).group(1)
    assert "score_texts" in snippet and "trust_remote_code=True" in snippet
    code = (
        'import sys\nfor name in ("hf_models", "data_scripts"):\n    sys.modules[name] = None\n'
        + snippet.replace("PATH_OR_REPO", str(folders[name]))
        + "\nassert scores.shape == (2,), scores.shape\nprint('ok')\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "modules"), TRANSFORMERS_VERBOSITY="error")
    done = subprocess.run(
        [sys.executable, "-I", "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-2000:]
