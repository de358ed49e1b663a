"""Work split across Accelerate processes: contiguous row shards gathered back into one table, and chunks dealt
round-robin whose results every process receives. With one process (or no accelerator) both are the identity."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from ..modeling.scoring import Representation
from ..progress import tqdm


def shard_bounds(n_rows: int, num_shards: int, shard: int) -> tuple[int, int]:
    """Contiguous [start, end) rows of one shard; every shard but the last has ceil(n/num_shards) rows."""
    per = math.ceil(n_rows / num_shards)
    return min(shard * per, n_rows), min((shard + 1) * per, n_rows)


def gather_rows(accelerator, rep: Representation, n_rows: int) -> Representation:
    """All-gather each process's contiguous shard of rows (see `shard_bounds`) into the full [n_rows] table.

    Shards may differ in column width (all-token sides trim padding per batch): all are padded to the widest.
    """
    per = math.ceil(n_rows / accelerator.num_processes)
    width = torch.tensor([rep.vectors.shape[1]], device=accelerator.device)
    local = _pad_rows(rep.pad_to(int(accelerator.gather(width).max())), per)
    vectors = accelerator.gather(local.vectors.float().to(accelerator.device)).cpu()  # [P*per, L, H]
    mask = accelerator.gather(local.mask.to(torch.uint8).to(accelerator.device)).cpu().bool()
    return Representation(vectors=vectors[:n_rows].to(rep.vectors.dtype), mask=mask[:n_rows])


def _pad_rows(rep: Representation, rows: int) -> Representation:
    extra = rows - rep.vectors.shape[0]
    if extra <= 0:
        return rep
    vectors = torch.cat([rep.vectors, rep.vectors.new_zeros((extra, *rep.vectors.shape[1:]))])
    mask = torch.cat([rep.mask, rep.mask.new_zeros((extra, *rep.mask.shape[1:]))])
    return Representation(vectors=vectors, mask=mask)


def map_chunks_sharded(
    accelerator, num_chunks: int, fn: Callable[[int], object], desc: str
) -> dict[int, object]:
    """Run `fn(c)` for chunk c on process c mod N, then gather every process's results -> {c: result}."""
    rank = 0 if accelerator is None else accelerator.process_index
    world_size = 1 if accelerator is None else accelerator.num_processes
    mine = range(rank, num_chunks, world_size)
    results = {c: fn(c) for c in tqdm(mine, desc=desc, disable=rank != 0 or len(mine) < 2, leave=False)}
    if world_size == 1:
        return results
    from accelerate.utils import gather_object

    merged: dict[int, object] = {}
    for part in gather_object([results]):
        merged.update(part)
    return merged
