"""benchmarks/dry_run.py on a tiny synthetic dataset: every stage runs, time boxes extrapolate."""

import sys

import pytest

from data_scripts.synthetic import main as synthetic_main

from .conftest import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT))
from benchmarks.dry_run import main as dry_run_main  # noqa: E402


@pytest.mark.slow
def test_dry_run_stages_and_time_boxes(tmp_path, capsys):
    synthetic_main(["--output_dir", str(tmp_path / "synth"), "--scale", "0.0005"])
    common = [
        "--dataset_dir",
        str(tmp_path / "synth"),
        "--hidden",
        "8",
        "--max_length",
        "16",
        "--num_candidates",
        "4",
    ]
    rows = dry_run_main([*common, "--mention_chunk", "8"])
    stages = [(r["architecture"], r["stage"].split()[0]) for r in rows]
    assert stages == [
        ("both", "load"),
        ("dual", "encode"),
        ("dual", "mine"),
        ("som", "encode"),
        ("som", "mine"),
    ]
    assert all(r["done"].startswith(("all", "1", "2", "3")) and "extrapolated" not in r["done"] for r in rows)
    assert rows[3]["store_gib"] > rows[1]["store_gib"]  # som stores every token, dual one vector
    # time boxes of 0 s: one encoder step and one mention chunk, then linear extrapolation (store still full size)
    boxed = dry_run_main(
        [*common, "--architectures", "som", "--encode_batch", "2", "--encode_seconds", "0", "--mine_seconds", "0",
         "--mention_chunk", "4"]
    )  # fmt: skip
    encode, mine = boxed[1], boxed[2]
    assert (
        "16/" in encode["done"]
        and "extrapolated" in encode["done"]
        and encode["full_seconds"] >= encode["seconds"]
    )
    assert mine["done"].startswith("4/") and mine["full_seconds"] > 0
    assert "| som | mine one epoch" in capsys.readouterr().out
