"""`accelerate launch --num_processes 2` (CPU, gloo) mines the same negatives and takes the same first step."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def launch(num_processes: int, model_dir: Path, out: Path) -> dict:
    accelerate = shutil.which("accelerate", path=str(Path(sys.executable).parent)) or "accelerate"
    command = [
        # On a CPU-only machine accelerate spawns N processes only with --multi_gpu (torchrun); the Trainer's
        # use_cpu=True then selects DistributedType.MULTI_CPU with the gloo backend.
        accelerate, "launch", *(["--multi_gpu"] if num_processes > 1 else ["--cpu"]),
        "--num_machines", "1", "--num_processes", str(num_processes),
        "--main_process_port", str(29500 + num_processes), "--mixed_precision", "no", "--dynamo_backend", "no",
        str(REPO / "tests" / "dist_check.py"), "--model_dir", str(model_dir), "--out", str(out),
    ]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    result = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return json.loads(out.read_text())


def test_two_processes_match_one(tmp_path, tiny_bert_dir):
    single = launch(1, tiny_bert_dir, tmp_path / "one.json")
    double = launch(2, tiny_bert_dir, tmp_path / "two.json")
    assert single["world_size"] == 1 and double["world_size"] == 2
    assert double["negatives"] == single["negatives"]
    assert double["loss"] == pytest.approx(single["loss"], rel=1e-5, abs=1e-6)
