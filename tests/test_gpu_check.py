"""benchmarks/gpu_check.py runs end to end on the CPU with --tiny (the GPU run itself needs a GPU)."""

import math
import sys

import pytest

from .conftest import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT))
from benchmarks.gpu_check import main  # noqa: E402


@pytest.mark.slow  # ~1 min on an idle 2-core machine, several under load
def test_gpu_check_tiny_on_cpu(capsys):
    results = main(["--tiny", "--architectures", "dual", "som", "joint"])
    out = capsys.readouterr().out
    for line in ("| entity encoding", "| mining dual, training pool", "| mining som, training pool",
                 "| train step som, K = 4, 4 mentions", "| train step joint, K = 4, 2 mentions",
                 "| projected 4-epoch Zeshel som run"):  # fmt: skip
        assert line in out, line
    assert all(math.isfinite(v) and v > 0 for v in results.values()), results
    # the projection is the sum of its printed parts
    assert results["projected_som_run_s"] > 4 * results["mine_som_s"]
