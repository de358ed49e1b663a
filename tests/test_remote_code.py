"""save_pretrained / from_pretrained / AutoModel round trips, and trust_remote_code in a fresh interpreter."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from transformers import AutoConfig, AutoModel

from hf_models import JointRerankerModel

from .test_models import ARCHITECTURES, batch_inputs, build, make_batch

REMOTE_FILES = {"configuration_retriever.py", "modeling_retriever.py", "scoring.py", "losses.py"}


def joint_inputs() -> dict[str, torch.Tensor]:
    ids, mask = make_batch([7, 4, 9, 5], seed=3)
    return {"pair_input_ids": ids.view(2, 2, -1), "pair_attention_mask": mask.view(2, 2, -1)}


def scores_of(model, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(**inputs).scores


@pytest.fixture(scope="module")
def saved(tiny_bert_dir, tmp_path_factory) -> dict[str, tuple[Path, type, dict, torch.Tensor]]:
    """Each architecture (+ a shared-encoder som + joint) saved to its own folder, with its inputs and scores."""
    root = tmp_path_factory.mktemp("saved")
    torch.manual_seed(0)
    models = {name: build(name, tiny_bert_dir) for name in ARCHITECTURES}
    models["som-shared"] = build("som", tiny_bert_dir, shared_encoder=True)
    models["joint"] = JointRerankerModel.from_encoder(str(tiny_bert_dir))
    out = {}
    for name, model in models.items():
        inputs = joint_inputs() if name == "joint" else batch_inputs()
        model.save_pretrained(root / name)
        out[name] = (root / name, type(model), inputs, scores_of(model, inputs))
    return out


@pytest.mark.parametrize("name", [*ARCHITECTURES, "som-shared", "joint"])
def test_round_trip_class_and_automodel(saved, name: str) -> None:
    folder, model_class, inputs, expected = saved[name]
    files = {p.name for p in folder.iterdir()}
    needed = (
        {"configuration_joint.py", "modeling_joint.py"} | REMOTE_FILES if name == "joint" else REMOTE_FILES
    )
    assert needed <= files, files
    auto_map = json.loads((folder / "config.json").read_text())["auto_map"]
    assert set(auto_map) == {"AutoConfig", "AutoModel"}
    assert torch.equal(scores_of(model_class.from_pretrained(folder), inputs), expected)
    auto = AutoModel.from_pretrained(folder)
    assert type(auto) is model_class
    assert type(AutoConfig.from_pretrained(folder)) is model_class.config_class
    assert torch.equal(scores_of(auto, inputs), expected)


REMOTE_SCRIPT = textwrap.dedent(
    """
    import sys
    sys.modules["hf_models"] = None  # the repository package must not be importable: only the folder's code
    import torch
    from transformers import AutoModel

    results = {}
    for name, (folder, inputs) in torch.load(sys.argv[1]).items():
        model = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
        assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
        with torch.no_grad():
            results[name] = model(**inputs).scores
    torch.save(results, sys.argv[2])
    """
)


def test_trust_remote_code_in_fresh_interpreter(saved, tmp_path: Path) -> None:
    request = {name: (str(folder), inputs) for name, (folder, _, inputs, _) in saved.items()}
    torch.save(request, tmp_path / "request.pt")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "modules"), TRANSFORMERS_VERBOSITY="error")
    subprocess.run(
        [
            sys.executable,
            "-I",
            "-c",
            REMOTE_SCRIPT,
            str(tmp_path / "request.pt"),
            str(tmp_path / "result.pt"),
        ],
        cwd=tmp_path,
        env=env,
        check=True,
        timeout=300,
    )
    results = torch.load(tmp_path / "result.pt")
    for name, (_, _, _, expected) in saved.items():
        torch.testing.assert_close(results[name], expected, atol=1e-6, rtol=1e-6)
