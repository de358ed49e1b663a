"""A real SIGKILL during training, resumed from the command line with ``--resume_from_checkpoint true``.

The recipe runs as a subprocess (``python recipes/zeshel_som.py``) on the tiny fixture model. The kill comes from
the fault point ``checkpoint:after_negatives@2`` (hf_models/atomic.py): the process is SIGKILLed while writing its
second checkpoint, after the first one (step 3, mid-epoch 0) is complete. The resumed run must skip the incomplete
newest checkpoint with a warning and end with the same weights and metrics as an uninterrupted run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from data_scripts.io import write_processed
from hf_models.atomic import FAULT_ENV
from hf_models.training.checkpoints import NEGATIVES_NAME, checkpoint_problem, resolve_resume

from .conftest import REPO_ROOT, make_tiny_tables

CONFIG = """architecture: som
max_length: 24
negatives: hard
num_candidates: 4
num_train_epochs: 2
per_device_train_batch_size: 4
per_device_eval_batch_size: 8
learning_rate: 1.0e-3
eval_strategy: "no"
save_strategy: steps
save_steps: 3
save_total_limit: 1
eval_top_k: 6
mining_batch_size: 8
encode_dtype: float32
bf16: false
use_cpu: true
report_to: none
disable_tqdm: true
write_candidates: false
seed: 11
"""


def recipe(
    tmp_path: Path, dataset: Path, tiny_bert_dir: Path, name: str, *extra: str, fault: str | None = None
):
    (tmp_path / "config.yaml").write_text(CONFIG)
    env = {k: v for k, v in os.environ.items() if k != FAULT_ENV}
    if fault:
        env[FAULT_ENV] = fault
    command = [sys.executable, str(REPO_ROOT / "recipes" / "zeshel_som.py"), "--config", str(tmp_path / "config.yaml"),
               "--encoder", str(tiny_bert_dir), "--dataset_dir", str(dataset), "--output_dir", str(tmp_path / name),
               *extra]  # fmt: skip
    return subprocess.run(command, env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)


def test_sigkill_then_resume_true_from_the_command_line(tmp_path, tiny_bert_dir):
    dataset = tmp_path / "data"
    mentions, entities = make_tiny_tables(
        {"alpha": "train", "beta": "train", "gamma": "val", "delta": "test"}
    )
    write_processed(mentions, entities, dataset)  # 20 training mentions / 4 = 5 steps per epoch, 10 in all

    full = recipe(tmp_path, dataset, tiny_bert_dir, "full")
    assert full.returncode == 0, full.stderr[-3000:]

    killed = recipe(tmp_path, dataset, tiny_bert_dir, "run", fault="checkpoint:after_negatives@2")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    run = tmp_path / "run"
    assert checkpoint_problem(run / "checkpoint-3") is None
    assert "trainer_state.json is missing" in checkpoint_problem(run / "checkpoint-6")
    assert not (run / "metrics.json").exists()

    resumed = recipe(
        tmp_path, dataset, tiny_bert_dir, "run", "--resume_from_checkpoint", "true", "--log_level", "info"
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    log = resumed.stdout + resumed.stderr
    assert "skipping the incomplete checkpoint" in log and "checkpoint-6" in log
    assert "restored the negatives of epoch 0 from" in log and "and global step 3" in log

    final, expected = load_file(run / "model.safetensors"), load_file(tmp_path / "full" / "model.safetensors")
    assert final.keys() == expected.keys()
    for name in expected:
        assert torch.equal(final[name], expected[name]), name
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics == json.loads((tmp_path / "full" / "metrics.json").read_text())
    assert set(metrics) == {"val", "test"}


def test_resume_refuses_a_checkpoint_without_negatives(tmp_path):
    folder = tmp_path / "out" / "checkpoint-4"
    folder.mkdir(parents=True)
    (folder / "trainer_state.json").write_text("{}")
    (folder / "pytorch_model.bin").write_bytes(b"")
    for name in ("optimizer.pt", "scheduler.pt"):
        (folder / name).write_bytes(b"")
    with pytest.raises(ValueError, match=r"checkpoint-4/negatives\.pt is missing.*--resume_remine_negatives"):
        resolve_resume(str(folder), tmp_path / "out")
    assert resolve_resume(str(folder), tmp_path / "out", need_negatives=False) == str(folder)
    with pytest.raises(ValueError, match=r"--resume_from_checkpoint true: no complete checkpoint in"):
        resolve_resume("true", tmp_path / "out")
    (folder / NEGATIVES_NAME).write_bytes(b"")
    assert resolve_resume("True", tmp_path / "out") == str(folder)
    assert resolve_resume("false", tmp_path / "out") is None
    (folder / "model.safetensors").write_bytes(b"\x10\x00")  # a half-written weights file wins over the .bin
    with pytest.raises(ValueError, match=r"checkpoint-4/model\.safetensors cannot be read"):
        resolve_resume(str(folder), tmp_path / "out")


def test_sigkill_inside_the_first_checkpoint_leaves_nothing_to_resume(tmp_path, tiny_bert_dir, caplog):
    dataset = tmp_path / "data"
    mentions, entities = make_tiny_tables(
        {"alpha": "train", "beta": "train", "gamma": "val", "delta": "test"}
    )
    write_processed(mentions, entities, dataset)
    killed = recipe(tmp_path, dataset, tiny_bert_dir, "run", fault="checkpoint:after_model@1")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    checkpoint = tmp_path / "run" / "checkpoint-3"
    assert (checkpoint / "model.safetensors").exists() and not (checkpoint / NEGATIVES_NAME).exists()
    with pytest.raises(ValueError, match=r"--resume_from_checkpoint true: no complete checkpoint in"):
        resolve_resume("true", tmp_path / "run")
    assert "skipping the incomplete checkpoint" in caplog.text and "checkpoint-3" in caplog.text
    with pytest.raises(ValueError, match=r"checkpoint-3/trainer_state\.json is missing"):
        resolve_resume(str(checkpoint), tmp_path / "run")
