"""The `evaluate` module is self-contained: a folder copy loads with the project off sys.path, same numbers."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hf_models.index.evaluation import linking_metrics

from .conftest import REPO_ROOT

SCRIPT = """
import json, sys
for name in ("hf_models", "data_scripts"):
    sys.modules[name] = None  # the project must not be importable
import evaluate
request = json.load(open(sys.argv[1]))
metric = evaluate.load(request["folder"])
out = [metric.compute(**case) for case in request["cases"]]
json.dump(out, open(sys.argv[2], "w"))
"""


def random_case(seed: int) -> dict:
    rng = random.Random(seed)
    entities = [f"e{i}" for i in range(12)]
    n = 40
    references = [rng.choice(entities) for _ in range(n)]
    predictions = [rng.sample(entities, rng.randint(0, 6)) for _ in range(n)]
    worlds = [rng.choice(["w1", "w2", "w3", "w4"]) for _ in range(n)]
    categories = [rng.choice(["LOW_OVERLAP", "HIGH_OVERLAP", ""]) for _ in range(n)]
    return {
        "predictions": predictions,
        "references": references,
        "worlds": worlds,
        "categories": categories,
        "k": 4,
    }


def test_folder_copy_loads_without_the_project(tmp_path: Path) -> None:
    folder = tmp_path / "entity_linking"
    shutil.copytree(REPO_ROOT / "metrics" / "entity_linking", folder)
    empty_world = {"predictions": [["a"], ["x"]], "references": ["a", "b"], "worlds": ["w1", "w2"], "k": 1}
    cases = [random_case(seed) for seed in range(3)] + [empty_world]
    (tmp_path / "request.json").write_text(json.dumps({"folder": str(folder), "cases": cases}))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "modules"), HF_EVALUATE_OFFLINE="1")
    subprocess.run(
        [sys.executable, "-I", "-c", SCRIPT, str(tmp_path / "request.json"), str(tmp_path / "out.json")],
        cwd=tmp_path,
        env=env,
        check=True,
        timeout=900,
    )
    results = json.loads((tmp_path / "out.json").read_text())
    for case, result in zip(cases, results, strict=True):
        expected = linking_metrics(
            case["references"], case["predictions"], case["worlds"], case.get("categories"), ks=(1, case["k"])
        )
        assert {k: v for k, v in result.items() if k != "worlds_without_retrieved_gold"} == pytest.approx(
            expected
        )
    # w2 has no retrieved gold: it counts 0 in normalized accuracy, and the module says so
    assert results[-1]["normalized_accuracy"] == pytest.approx(50.0)
    assert results[-1]["worlds_without_retrieved_gold"] == 1.0
    card = (folder / "README.md").read_text()
    assert "0-100" in card and "**0**" in card


def test_bad_arguments_are_named(tmp_path, monkeypatch):
    import evaluate

    monkeypatch.setenv("HF_MODULES_CACHE", str(tmp_path / "modules"))
    folder = str(REPO_ROOT / "metrics" / "entity_linking")
    metric = evaluate.load(folder)
    for k in (0, -1):  # once: recall@-1 over r[:-1], or every number 0
        with pytest.raises(ValueError, match=f"k must be an int >= 1, got {k}"):
            metric.compute(predictions=[["a"]], references=["a"], k=k)
    spans = evaluate.load(folder, "detection")
    with pytest.raises(ValueError, match="span '5' is not 'start:end'"):
        spans.compute(predictions=[["5"]], references=[["0:5"]])
    with pytest.raises(ValueError, match="unknown config 'detectoin'"):
        evaluate.load(folder, "detectoin")
