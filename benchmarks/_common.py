"""Measurement helpers shared by the benchmark scripts: memory, machine description, timing, matmul peak, and
:class:`Meter` (wall seconds and peak memory of named stages)."""

from __future__ import annotations

import contextlib
import ctypes
import gc
import os
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (a no-op off CUDA), so wall-clock timings cover it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device) -> float:
    """Seconds of one call of ``fn``, the device synchronized before and after."""
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


def matmul_peak(
    dtype: torch.dtype, size: int, device: torch.device, min_seconds: float = 0.0, min_repeats: int = 1
) -> float:
    """GFLOP/s of repeated [size, size] @ [size, size] products: the best of the timed repeats after one warm-up,
    repeated until at least ``min_seconds`` have been timed and ``min_repeats`` products made."""
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    torch.matmul(a, b)  # warm-up
    best, total, repeats = float("inf"), 0.0, 0
    while total < min_seconds or repeats < min_repeats:
        elapsed = timed(lambda: torch.matmul(a, b), device)
        best, total, repeats = min(best, elapsed), total + elapsed, repeats + 1
    return 2 * size**3 / best / 1e9


def rss_bytes(field_name: str = "VmRSS") -> int:
    """Current (VmRSS) or peak (VmHWM) resident memory of this process, from /proc/self/status."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field_name + ":"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False when not permitted."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def release_freed_memory() -> None:
    """Collect garbage and hand freed heap pages back to the OS so the next RSS baseline is honest."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def machine_line(device: torch.device, with_load: bool = True) -> str:
    """CPU model, cores, torch threads, GPU (or why none), torch version and the load average."""
    cpu = "unknown CPU"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as handle:
        for line in handle:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    gpu = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"none used (torch.cuda.is_available() = {torch.cuda.is_available()})"
    )
    line = (
        f"CPU: {cpu}, {os.cpu_count()} logical cores, torch threads {torch.get_num_threads()}; GPU: {gpu}; "
    )
    line += f"torch {torch.__version__}"
    if with_load:
        line += f"; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    return line


# ---------------------------------------------------------------------------- stages: time + peak memory
@dataclass
class Stage:
    seconds: float
    peak_mb: float  # above the RSS before the stage (absolute ru_maxrss when VmHWM cannot be reset)
    gpu_peak_mb: float | None = None


@dataclass
class Meter:
    """Times named stages (``with meter.stage(stages, name):``) and records each one's peak memory above the
    memory before it: RSS through ``VmHWM`` (reset via /proc/self/clear_refs), and on CUDA the allocator peak."""

    device: torch.device
    can_reset: bool = field(init=False)

    def __post_init__(self) -> None:
        self.can_reset = reset_peak_rss()

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    @contextlib.contextmanager
    def stage(self, stages: dict[str, Stage], name: str):
        release_freed_memory()
        self.sync()
        base = rss_bytes()
        reset_peak_rss()
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            gpu_base = torch.cuda.memory_allocated(self.device)
        start = time.perf_counter()
        yield
        self.sync()
        seconds = time.perf_counter() - start
        peak = rss_bytes("VmHWM") - base if self.can_reset else rss_bytes("VmHWM")
        gpu = None
        if self.device.type == "cuda":
            gpu = (torch.cuda.max_memory_allocated(self.device) - gpu_base) / 2**20
        stages[name] = Stage(seconds, peak / 2**20, gpu)
