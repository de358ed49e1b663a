"""som all-pairs scoring (eq. 9, hard attention) by interaction-block budget, as % of the measured matmul peak.

``all_pairs_score`` chunks the keys so that one ``[N, chunk, m, m']`` block holds at most a budget of values
(``hf_models.modeling.all_pairs.max_block_elements``: 2**24 on a CPU, 2**28 on a GPU). This times it at several budgets on
random representations, full width and with lengths uniform in [tokens / 8, tokens], and can time a previous
version beside it, checking that both give the same scores (``--previous``): a copy of that commit's
``hf_models/`` folder (e.g. ``git archive 1917947 hf_models | tar -x -C /tmp/old`` and ``--previous
/tmp/old/hf_models``), or a self-contained ``scoring.py`` of a commit before the all-pairs engine had its own file.

    python benchmarks/som_block_budget.py                                # GPU if present; 1,024 x 4,096, 128 tokens
    python benchmarks/som_block_budget.py --device cpu --mentions 64 --entities 512 --tokens 32 --hidden 384 \\
        --budgets 20 22 24
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import statistics
import sys
import types
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import machine_line, matmul_peak, timed  # noqa: E402
from hf_models.index.encoding import autocast_for  # noqa: E402
from hf_models.modeling import all_pairs  # noqa: E402


def median_seconds(fn, device: torch.device, repeats: int) -> float:
    """Median seconds of ``repeats`` calls after one warm-up."""
    fn()
    return statistics.median(timed(fn, device) for _ in range(repeats))


def load_previous(path: str):
    """The module holding ``all_pairs_score`` of a previous version: a self-contained scoring.py, or the
    ``all_pairs`` (or, before it existed, ``scoring``) module of an ``hf_models/`` folder, imported as a package of
    its own so that relative imports work."""
    if Path(path).is_dir():
        package = types.ModuleType("previous_models")
        package.__path__ = [str(Path(path).resolve())]
        sys.modules["previous_models"] = package
        engine = "all_pairs" if (Path(path) / "all_pairs.py").exists() else "scoring"  # before: one file
        return importlib.import_module(f"previous_models.{engine}")
    spec = importlib.util.spec_from_file_location("previous_scoring", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--mentions", type=int, default=1024)
    parser.add_argument("--entities", type=int, default=4096)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--hidden", type=int, default=768)
    parser.add_argument(
        "--budgets", type=int, nargs="+", default=[24, 26, 28, 30], help="log2 of the budgets"
    )
    parser.add_argument(
        "--previous",
        default=None,
        help="a previous scoring.py, or a previous hf_models/ folder, to time beside (see above)",
    )
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    dtype = torch.bfloat16 if device.type == "cuda" else None  # bf16 autocast on a GPU; fp32 on a CPU
    torch.manual_seed(0)
    n, e, t, h = args.mentions, args.entities, args.tokens, args.hidden
    square = 8192 if device.type == "cuda" else 1024
    peak = 1e9 * matmul_peak(dtype or torch.float32, square, device, min_repeats=5)  # best of 5, FLOP/s
    print(machine_line(device))
    print(
        f"{n} mentions x {e} entities, {t} x {t} tokens, H = {h}, {dtype or torch.float32}; matmul peak "
        f"{peak / 1e12:.3g} TFLOP/s (square {square}, same run)\n"
    )
    print("| lengths | implementation | block budget | seconds | TFLOP/s (real) | % of peak | max abs diff |")
    print("|---|---|---|---:|---:|---:|---:|")
    previous = load_previous(args.previous) if args.previous else None
    query, key = torch.randn(n, t, h, device=device), torch.randn(e, t, h, device=device)
    for label, low in (("full width", t), (f"U[{t // 8}, {t}]", t // 8)):
        q_len, k_len = torch.randint(low, t + 1, (n,)), torch.randint(low, t + 1, (e,))
        q_mask = (torch.arange(t)[None] < q_len[:, None]).to(device)
        k_mask = (torch.arange(t)[None] < k_len[:, None]).to(device)
        real = 2 * h * float(q_len.double().sum() * k_len.double().sum())
        runs = [
            (
                "current",
                all_pairs,
                "DEFAULT_MAX_BLOCK_ELEMENTS" if device.type != "cuda" else "GPU_MAX_BLOCK_ELEMENTS",
            )
        ]
        if previous is not None:
            runs.insert(0, ("previous", previous, "DEFAULT_MAX_BLOCK_ELEMENTS"))
        reference = None
        for name, module, field in runs:
            saved = getattr(module, field)
            for exponent in args.budgets:
                setattr(module, field, 2**exponent)

                def run(module=module, q_mask=q_mask, k_mask=k_mask):
                    with autocast_for(device, dtype):
                        return module.all_pairs_score(query, q_mask, key, k_mask, "hard").float()

                try:
                    seconds = median_seconds(run, device, args.repeats)
                    scores = run()
                except torch.OutOfMemoryError:
                    print(f"| {label} | {name} | 2^{exponent} | out of memory | | | |")
                    continue
                finally:
                    if device.type == "cuda":
                        torch.cuda.empty_cache()
                reference = scores if reference is None else reference
                print(
                    f"| {label} | {name} | 2^{exponent} | {seconds:.3f} | {real / seconds / 1e12:.3g} | "
                    f"{100 * real / seconds / peak:.0f}% | {(scores - reference).abs().max().item():.3g} |"
                )
            setattr(module, field, saved)


if __name__ == "__main__":
    main()
