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

from hf_models import JointRerankerModel, MentionDetectorModel

from .test_models import ARCHITECTURES, batch_inputs, build, make_batch

REMOTE_FILES = {
    "configuration_retriever.py",
    "modeling_retriever.py",
    "scoring.py",
    "all_pairs.py",
    "losses.py",
}


def joint_inputs() -> dict[str, torch.Tensor]:
    ids, mask = make_batch([7, 4, 9, 5], seed=3)
    return {"pair_input_ids": ids.view(2, 2, -1), "pair_attention_mask": mask.view(2, 2, -1)}


def detector_inputs() -> dict[str, torch.Tensor]:
    ids, mask = make_batch([7, 4, 9], seed=5)
    return {"input_ids": ids, "attention_mask": mask}


def scores_of(model, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """The retrievers' and the reranker's ``scores``; the mention detector's ``span_logits``."""
    with torch.no_grad():
        output = model.eval()(**inputs)
    return output.span_logits if isinstance(model, MentionDetectorModel) else output.scores


@pytest.fixture(scope="module")
def saved(tiny_bert_dir, tmp_path_factory) -> dict[str, tuple[Path, type, dict, torch.Tensor]]:
    """Each architecture (+ a shared-encoder som + joint) saved to its own folder, with its inputs and scores."""
    root = tmp_path_factory.mktemp("saved")
    torch.manual_seed(0)
    models = {name: build(name, tiny_bert_dir) for name in ARCHITECTURES}
    models["som-shared"] = build("som", tiny_bert_dir, shared_encoder=True)
    models["joint"] = JointRerankerModel.from_encoder(str(tiny_bert_dir))
    models["detector"] = MentionDetectorModel.from_encoder(str(tiny_bert_dir), max_span_width=3)
    out = {}
    for name, model in models.items():
        inputs = {"joint": joint_inputs, "detector": detector_inputs}.get(name, batch_inputs)()
        model.save_pretrained(root / name)
        out[name] = (root / name, type(model), inputs, scores_of(model, inputs))
    return out


OWN_FILES = {
    "joint": {"configuration_joint.py", "modeling_joint.py", "modeling_head.py"},
    "detector": {"configuration_mention_detector.py", "modeling_mention_detector.py", "modeling_head.py"},
}


@pytest.mark.parametrize("name", [*ARCHITECTURES, "som-shared", "joint", "detector"])
def test_round_trip_class_and_automodel(saved, name: str) -> None:
    folder, model_class, inputs, expected = saved[name]
    files = {p.name for p in folder.iterdir()}
    assert OWN_FILES.get(name, set()) | REMOTE_FILES <= files, files
    if name in OWN_FILES:  # the backbone config keeps no local path
        assert "_name_or_path" not in json.loads((folder / "config.json").read_text())["encoder"]
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
            output = model(**inputs)
        results[name] = output.span_logits if name == "detector" else output.scores
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
