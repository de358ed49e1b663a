"""A short run of recipes/bias_synthetic.py (Section 6.4 / Figure 1) writes finite PNG / JSON / CSV outputs."""

from __future__ import annotations

import csv
import json
import math
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "recipes"))

import bias_synthetic  # noqa: E402


def test_short_run_writes_outputs(tmp_path):
    argv = [
        "--config", str(REPO_ROOT / "recipes" / "configs" / "bias_synthetic.yaml"),
        "--output_dir", str(tmp_path),
        "--num_inputs", "6", "--num_labels", "40", "--hidden_dim", "16", "--input_dim", "8",
        "--num_updates=6", "--eval_every", "3", "--batch_size", "16", "--num_simulations", "3",
        "--temperature", "0.05", "--num_threads", "1",
    ]  # fmt: skip
    result = bias_synthetic.main(argv)
    for name in ("bias_synthetic.png", "metrics.json", "metrics.csv"):
        assert (tmp_path / name).stat().st_size > 0
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["config"]["num_labels"] == 40 and saved["config"]["num_updates"] == 6
    rows = list(csv.DictReader((tmp_path / "metrics.csv").open()))
    assert [int(r["update"]) for r in rows] == [0, 3, 6]
    for row in rows:
        for key in ("ce", "nce_hard", "nce_random", "bias_norm_hard", "bias_norm_random"):
            assert math.isfinite(float(row[key]))
    assert result["final"]["ce"] < float(rows[0]["ce"])  # training reduces the exact cross entropy
