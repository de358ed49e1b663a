"""The paper's total batch (4 mentions; 2 for joint) is kept for any process count, or refused."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from data_scripts.io import write_processed
from hf_models.recipes.recipe import apply_total_batch
from hf_models.training.training_args import NCETrainingArguments

from .conftest import REPO_ROOT, make_tiny_tables


class _Args:
    """The fields apply_total_batch reads, with a chosen world size (no process group needed)."""

    def __init__(self, world_size, per_device, total, accumulation=1):
        self.world_size, self.per_device_train_batch_size = world_size, per_device
        self.total_train_batch_size, self.gradient_accumulation_steps = total, accumulation


@pytest.mark.parametrize(
    ("world", "per_device", "total", "expected"),
    [
        (1, 4, 4, (4, 1)),
        (2, 4, 4, (2, 1)),
        (4, 4, 4, (1, 1)),
        (1, 2, 4, (2, 2)),
        (2, 1, 4, (1, 2)),
        (1, 4, 2, (2, 1)),
    ],
)
def test_derived_batch_keeps_the_total(world, per_device, total, expected):
    args = _Args(world, per_device, total)
    message = apply_total_batch(args)
    assert (args.per_device_train_batch_size, args.gradient_accumulation_steps) == expected
    assert args.per_device_train_batch_size * world * args.gradient_accumulation_steps == total
    assert message.endswith(f"= {total} mentions per optimizer step")


def test_impossible_process_counts_are_refused():
    with pytest.raises(
        ValueError, match=r"cannot be split over 8 processes; launch with --num_processes in \[1, 2, 4\]"
    ):
        apply_total_batch(_Args(8, 4, 4))
    with pytest.raises(ValueError, match="does not divide"):
        apply_total_batch(_Args(1, 3, 4))


def test_total_batch_is_validated(tmp_path):
    with pytest.raises(ValueError, match="total_train_batch_size must be >= 1"):
        NCETrainingArguments(output_dir=str(tmp_path), total_train_batch_size=0, use_cpu=True)


@pytest.mark.slow
def test_two_process_run_has_the_papers_effective_batch(tmp_path, tiny_bert_dir):
    mentions, entities = make_tiny_tables(
        {"alpha": "train", "beta": "train", "gamma": "val", "delta": "test"}
    )
    write_processed(mentions, entities, tmp_path / "data")
    accelerate = shutil.which("accelerate", path=str(Path(sys.executable).parent)) or "accelerate"
    out = tmp_path / "count.json"
    command = [
        accelerate, "launch", "--multi_gpu", "--num_machines", "1", "--num_processes", "2",
        "--main_process_port", "29531", "--mixed_precision", "no", "--dynamo_backend", "no",
        str(REPO_ROOT / "tests" / "dist_batch_check.py"), "--model_dir", str(tiny_bert_dir),
        "--dataset_dir", str(tmp_path / "data"), "--out", str(out),
    ]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)}
    result = subprocess.run(command, env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    counts = [json.loads(Path(f"{out}.{rank}").read_text()) for rank in range(2)]
    assert sum(c["mentions_in_step"] for c in counts) == 4, (
        counts
    )  # the paper's 4 mentions per optimizer step
    assert "effective batch: 2 per device x 2 processes x 1 accumulation = 4" in result.stdout + result.stderr
