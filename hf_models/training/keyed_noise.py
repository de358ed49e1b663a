"""Counter-based random numbers keyed by (seed, epoch, mention, entity): the noise of exact streaming mining.

A ``torch.Generator`` hands out numbers in the order they are asked for, so a draw depends on how the score
matrix is cut into chunks and on how many processes share it. :class:`KeyedNoise` instead computes every number
as a hash of its coordinates: the Gumbel perturbation of pair (mention x, entity y) is a function of
(seed, epoch, key(x), key(y)) only, and the uniforms of the random draws of mention x are a function of
(seed, epoch, key(x), counter). Any chunking of the rows or columns, on any number of processes, therefore sees
exactly the same numbers, which is what makes streamed Gumbel-top-k equal to the full-row sampler draw for draw.

The hash is the 64-bit finalizer of MurmurHash3 (``fmix64``), a bijection with full avalanche, applied to the xor
of independently mixed row and column keys; uniforms take the top 53 bits (float64 in (0, 1), never 0 or 1), so
the Gumbel noise -log(-log U) is finite (|G| < 37) and has no visible truncation. Keys of string ids are the
first 8 bytes of their BLAKE2b digest (:func:`string_keys`), so they do not depend on table order either.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import torch

_FMIX_1 = 0xFF51AFD7ED558CCD
_FMIX_2 = 0xC4CEB9FE1A85EC53
_GOLDEN = 0x9E3779B97F4A7C15
_MASK64 = (1 << 64) - 1


def _signed(value: int) -> int:
    """An unsigned 64-bit integer as the int64 with the same bits."""
    value &= _MASK64
    return value - (1 << 64) if value >= 1 << 63 else value


def fmix64_int(value: int) -> int:
    """MurmurHash3's fmix64 on a Python int (unsigned 64-bit in and out); the reference for :func:`fmix64`."""
    value &= _MASK64
    value ^= value >> 33
    value = (value * _FMIX_1) & _MASK64
    value ^= value >> 33
    value = (value * _FMIX_2) & _MASK64
    return value ^ (value >> 33)


def _shift_right(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Logical right shift of int64 bits (torch's >> is arithmetic)."""
    return (x >> bits) & ((1 << (64 - bits)) - 1)


def fmix64_(x: torch.Tensor) -> torch.Tensor:
    """In-place :func:`fmix64` (one scratch tensor; the hot loop of streaming mining)."""
    scratch = torch.empty_like(x)
    low_bits = (1 << 31) - 1  # mask of a logical right shift by 33
    for multiplier in (_signed(_FMIX_1), _signed(_FMIX_2), None):
        torch.bitwise_right_shift(x, 33, out=scratch)
        x.bitwise_xor_(scratch.bitwise_and_(low_bits))
        if multiplier is not None:
            x.mul_(multiplier)
    return x


def fmix64(x: torch.Tensor) -> torch.Tensor:
    """MurmurHash3's fmix64 on int64 tensors (two's-complement wrap-around multiplication), any shape."""
    return fmix64_(x.clone())


def string_keys(ids: Sequence[str]) -> torch.Tensor:
    """A 64-bit key per id string [len(ids)] int64 (first 8 bytes of BLAKE2b), independent of order."""
    keys = [
        int.from_bytes(hashlib.blake2b(str(i).encode(), digest_size=8).digest(), "little", signed=True)
        for i in ids
    ]
    return torch.tensor(keys, dtype=torch.long)


def _to_unit(bits: torch.Tensor) -> torch.Tensor:
    """int64 random bits -> float64 uniform in (0, 1) from the top 53 bits (never exactly 0 or 1); consumes bits."""
    top = bits.bitwise_right_shift_(11).bitwise_and_((1 << 53) - 1).double()
    return top.add_(0.5).mul_(2.0**-53)


class KeyedNoise:
    """Uniform / Gumbel noise for a block of rows (mentions) x columns (entities), keyed by their ids.

    Args:
        seed, epoch: the draw's seed; every number also depends on both.
        row_keys: [n] int64, one key per row (e.g. :func:`string_keys` of the mention ids).
        col_keys: [E] int64, one key per column (entity ids); None = the column positions 0..E-1.
    """

    def __init__(
        self, seed: int, epoch: int, row_keys: torch.Tensor, col_keys: torch.Tensor | None = None
    ) -> None:
        base = fmix64_int(fmix64_int(seed * _GOLDEN + 1) ^ (epoch + 0x5851F42D4C957F2D))
        self.base = _signed(base)
        self.row_keys = row_keys.long()
        self.col_keys = None if col_keys is None else col_keys.long()
        self._row_state = fmix64(self.row_keys ^ self.base)  # [n]

    def __len__(self) -> int:
        return self.row_keys.shape[0]

    def _derived(self, row_keys: torch.Tensor, col_keys: torch.Tensor | None) -> KeyedNoise:
        other = KeyedNoise.__new__(KeyedNoise)
        other.base, other.row_keys, other.col_keys = self.base, row_keys, col_keys
        other._row_state = fmix64(row_keys ^ self.base)
        return other

    def salted(self, salt: int) -> KeyedNoise:
        """An independent stream for the same rows and columns (e.g. the uniform part of a masked draw)."""
        other = self._derived(self.row_keys, self.col_keys)
        other.base = _signed(fmix64_int((self.base & _MASK64) ^ fmix64_int(salt + 0x1B873593)))
        other._row_state = fmix64(other.row_keys ^ other.base)
        return other

    def rows(self, index: slice | torch.Tensor) -> KeyedNoise:
        """The noise of a subset of rows (the same numbers those rows get in the full block)."""
        return self._derived(self.row_keys[index], self.col_keys)

    def cols(self, index: slice | torch.Tensor) -> KeyedNoise:
        """The noise of a subset of columns (needs explicit ``col_keys``)."""
        if self.col_keys is None:
            raise ValueError("cols() needs explicit col_keys")
        return self._derived(self.row_keys, self.col_keys[index])

    def uniform(self, num_cols: int | None = None, device: torch.device | str = "cpu") -> torch.Tensor:
        """U(0, 1) per (row, column) -> [n, E] float64; E = len(col_keys) or ``num_cols`` without col_keys."""
        if self.col_keys is None:
            if num_cols is None:
                raise ValueError("num_cols is required without col_keys")
            cols = torch.arange(num_cols, dtype=torch.long, device=device)
        else:
            cols = self.col_keys.to(device)
            if num_cols is not None and num_cols != cols.shape[0]:
                raise ValueError(f"num_cols={num_cols} but the noise has {cols.shape[0]} column keys")
        col_state = fmix64(cols * _signed(_GOLDEN) + 0x2545F4914F6CDD1D)  # [E]
        return _to_unit(fmix64_(self._row_state.to(device)[:, None] ^ col_state[None, :]))  # [n, E]

    def gumbel(self, num_cols: int | None = None, device: torch.device | str = "cpu") -> torch.Tensor:
        """Gumbel(0, 1) = -log(-log U) per (row, column) -> [n, E] float64."""
        return self.uniform(num_cols, device).log_().neg_().log_().neg_()

    def row_uniform(self, counters: Sequence[int], device: torch.device | str = "cpu") -> torch.Tensor:
        """U(0, 1) per (row, counter) -> [n, len(counters)] float64 (the random draws of each row)."""
        salt = torch.tensor(
            [_signed(fmix64_int(c * _GOLDEN + 0x632BE59BD9B4E019)) for c in counters],
            dtype=torch.long,
            device=device,
        )
        return _to_unit(fmix64_(self._row_state.to(device)[:, None] ^ salt[None, :]))  # [n, C]
