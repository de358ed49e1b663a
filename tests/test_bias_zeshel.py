"""A short run of recipes/bias_zeshel.py (Appendix C) writes a finite bias table and JSON."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "recipes"))

import bias_zeshel  # noqa: E402


def test_short_run_writes_table_and_json(tmp_path, tiny_bert_dir):
    argv = [
        "--config", str(REPO_ROOT / "recipes" / "configs" / "bias_zeshel.yaml"),
        "--output_dir", str(tmp_path), "--encoder", str(tiny_bert_dir),
        "--dataset_dir", str(REPO_ROOT / "data" / "glossary_el"),
        "--num_mentions", "4", "--max_length", "16", "--num_draws", "5", "--train_steps", "2",
        "--measure_init", "true",
    ]  # fmt: skip
    result = bias_zeshel.main(argv)
    table = (tmp_path / "bias_table.md").read_text()
    for row in ("| Random |", "| Hard |", "| Mixed-50 |", "‖b(theta_CE)‖", "‖b(theta_RAND)‖", "J_CE"):
        assert row in table
    saved = json.loads((tmp_path / "bias_zeshel.json").read_text())
    assert saved["label_space"]["num_mentions"] == 4 and 4 < saved["label_space"]["num_labels"] <= 8
    assert list(saved["points"]) == ["theta_0", "theta_CE", "theta_RAND"]
    assert bias_zeshel.is_finite(saved) and bias_zeshel.is_finite(result)
    for point in saved["points"].values():
        for strategy in ("random", "hard", "mixed"):
            assert point[strategy]["bias_norm"] > 0 and math.isfinite(point[strategy]["nce_loss"])
    assert [len(saved["training"][p]) for p in ("theta_CE", "theta_RAND")] == [2, 2]


def test_a_label_space_smaller_than_k_is_refused(tmp_path, tiny_bert_dir):
    """The table once said K = 8 while a 2-entity label space measured K = 2 (J_HARD = J_CE, bias 0)."""
    import pytest

    argv = [
        "--config", str(REPO_ROOT / "recipes" / "configs" / "bias_zeshel.yaml"),
        "--output_dir", str(tmp_path), "--encoder", str(tiny_bert_dir),
        "--dataset_dir", str(REPO_ROOT / "data" / "glossary_el"),
        "--num_mentions", "2", "--max_length", "16", "--num_negatives", "50",
    ]  # fmt: skip
    with pytest.raises(
        ValueError, match=r"--num_negatives 50: the label space of 2 mention\(s\) has only \d+ entities"
    ):
        bias_zeshel.main(argv)
    assert not any(tmp_path.iterdir())
