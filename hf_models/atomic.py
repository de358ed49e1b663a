"""Atomic writes of files and folders, and the fault points that test them.

A folder written with :func:`atomic_folder` appears complete or not at all: the content is written into a
temporary sibling (``.NAME.tmp-PID@HOST-XXXX``), every file is fsynced, and the sibling is renamed over the target.
The previous version is kept (renamed to ``.NAME.old``) until the new one is in place, so a process killed at any
moment leaves either the previous complete folder or the new complete folder; :func:`readable_folder` finds it
(it reads ``.NAME.old`` when a kill fell between the two renames of the swap). Single files go through
:func:`atomic_file` and its wrappers :func:`atomic_write_bytes` / :func:`atomic_write_text` /
:func:`atomic_write_jsonl` (temporary sibling, fsync, ``os.replace``).

Fault injection: ``HARD_NCE_EL_FAULT=point[@n][,point[@n]...]`` makes :func:`fault_point` SIGKILL the process the
``n``-th time (default: first) it reaches ``point``. The tests (tests/test_faults.py) kill a subprocess at each
point and check that loading afterwards gives the previous state or a clear error, never a silent mix.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import signal
import socket
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path

from huggingface_hub.utils.sha import sha_fileobj

logger = logging.getLogger(__name__)

FAULT_ENV = "HARD_NCE_EL_FAULT"
_reached: Counter = Counter()


def fault_point(name: str) -> None:
    """SIGKILL this process when ``$HARD_NCE_EL_FAULT`` names ``name`` (``name@n``: the n-th time it is reached)."""
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return
    _reached[name] += 1
    for item in spec.split(","):
        point, _, count = item.strip().partition("@")
        if point == name and _reached[name] == int(count or 1):
            logger.warning("fault injection: SIGKILL at %s (%s=%s)", name, FAULT_ENV, spec)
            os.kill(os.getpid(), signal.SIGKILL)


def _fsync_path(path: Path) -> None:
    flags = os.O_RDONLY | (os.O_DIRECTORY if path.is_dir() and hasattr(os, "O_DIRECTORY") else 0)
    try:
        descriptor = os.open(path, flags)
    except OSError:  # some platforms cannot open folders
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def fsync_tree(folder: Path) -> None:
    """fsync every file and folder under ``folder`` (bottom-up), then ``folder`` itself."""
    for root, _, files in os.walk(folder, topdown=False):
        for name in files:
            _fsync_path(Path(root) / name)
        _fsync_path(Path(root))


@contextlib.contextmanager
def atomic_file(path: str | Path, mode: str = "wb", **open_kwargs) -> Iterator:
    """Write ``path`` through a temporary sibling: yields its open handle; on success the file is fsynced and
    ``os.replace``-d over ``path``, on any error (or a kill) the previous file stays and the temporary is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.parent / _temporary_name(path)
    try:
        with open(temporary, mode, **open_kwargs) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    _fsync_path(path.parent)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (:func:`atomic_file`: never half-written)."""
    with atomic_file(path) as handle:
        handle.write(data)
    return Path(path)


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_jsonl(path: str | Path, records: Iterable[dict]) -> Path:
    """Stream ``records`` as UTF-8 JSON lines into ``path`` atomically (:func:`atomic_file`)."""
    with atomic_file(path, "w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    return Path(path)


_HOST = "".join(c if c.isalnum() else "_" for c in socket.gethostname()) or "host"


def _temporary_name(target: Path) -> str:
    """``.NAME.tmp-PID@HOST-XXXXXXXX``: the writer's process and host, so only dead writers' leftovers are removed."""
    return f".{target.name}.tmp-{os.getpid()}@{_HOST}-{uuid.uuid4().hex[:8]}"


def _old(target: Path) -> Path:
    return target.parent / f".{target.name}.old"


def pid_alive(pid: int) -> bool:
    """True while process ``pid`` of this host runs (also when it is someone else's)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(target: Path) -> None:
    """Delete ``.NAME.tmp-PID@HOST-*`` siblings left by processes of this host that no longer run (killed
    mid-write). Temporaries of other hosts (a shared file system) are left alone."""
    if not target.parent.is_dir():
        return
    for path in target.parent.glob(f".{target.name}.tmp-*@{_HOST}-*"):
        pid = path.name.rsplit(".tmp-", 1)[1].split("@")[0]
        if pid.isdigit() and not pid_alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)


def readable_folder(target: str | Path) -> Path:
    """The complete version of a folder written with :func:`atomic_folder`: the folder itself, or its kept
    previous version when a process was killed between the two renames of a swap (with a warning)."""
    target = Path(target)
    old = _old(target)
    if not target.exists() and old.is_dir():
        logger.warning(
            "%s is missing but its previous version %s is complete (a write was interrupted): reading that",
            target,
            old,
        )
        return old
    return target


def replace_folder(new: Path, target: Path) -> None:
    """Swap the complete folder ``new`` in as ``target``; the previous ``target`` survives until then."""
    old = _old(target)
    if old.exists():
        if target.exists():  # left by an earlier swap that completed its renames
            shutil.rmtree(old)
        else:  # an earlier swap was killed between its renames: ``old`` is the last complete version
            os.rename(old, target)
    if target.exists():
        os.rename(target, old)
    fault_point("atomic:between_renames")
    os.rename(new, target)
    _fsync_path(target.parent)
    fault_point("atomic:after_swap")
    if old.exists():
        shutil.rmtree(old)


@contextlib.contextmanager
def atomic_folder(target: str | Path, replaces: str | None = None) -> Iterator[Path]:
    """Yield a temporary sibling of ``target`` to write into; on success it replaces ``target`` atomically.

    On an exception the temporary folder is removed and ``target`` is left as it was. A process killed while
    writing leaves ``target`` untouched (its temporary folder is removed by the next write). With ``replaces``
    (the file that marks a folder of this kind, e.g. ``worlds.json``) an existing non-empty ``target`` without
    that file is refused instead of replaced: a user's unrelated folder is never deleted.
    """
    target = Path(target)
    if replaces and target.is_dir() and any(target.iterdir()) and not (target / replaces).exists():
        raise FileExistsError(
            f"{target} is not empty and is not a folder written here (no {replaces}): refusing to replace it"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(target)
    temporary = target.parent / _temporary_name(target)
    temporary.mkdir()
    try:
        yield temporary
        fault_point("atomic:before_fsync")
        fsync_tree(temporary)
        fault_point("atomic:before_swap")
        replace_folder(temporary, target)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise


class CorruptFolderError(ValueError):
    """A saved folder disagrees with its own manifest (row counts, id checksums, unreadable files)."""


def ids_checksum(ids) -> str:
    """sha256 of an ORDERED list of ids (the manifest's check that rows and their ids still line up)."""
    return hashlib.sha256(json.dumps([str(i) for i in ids]).encode("utf-8")).hexdigest()


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes (huggingface_hub's chunked ``sha_fileobj``, as the Hub computes LFS hashes)."""
    with Path(path).open("rb") as handle:
        return sha_fileobj(handle).hex()


def files_sha256(folder: Path) -> dict[str, str]:
    """sha256 of every file below ``folder``, keyed by its path relative to ``folder`` (a manifest's content check)."""
    return {
        path.relative_to(folder).as_posix(): file_sha256(path)
        for path in sorted(p for p in folder.rglob("*") if p.is_file())
    }


def check_files_sha256(folder: Path, expected: dict[str, str], manifest: Path) -> None:
    """Every file ``expected`` lists (:func:`files_sha256`) is present below ``folder`` with that content; else a
    :class:`CorruptFolderError` naming the file and the manifest. Only the listed files are read."""
    for name, digest in expected.items():
        path = folder / name
        present = path.is_file()
        if not present or file_sha256(path) != digest:
            state = "is missing" if not present else "does not match its checksum"
            raise CorruptFolderError(
                f"{folder / name} {state} in {manifest} (changed, truncated or copied from another index since it "
                "was saved): rebuild the index"
            )


def read_json(path: Path, folder: Path):
    """``json.loads`` of ``path``; a missing or malformed file is a :class:`CorruptFolderError` naming both."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise CorruptFolderError(f"{folder}: {path} is missing (incomplete or damaged folder)") from error
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CorruptFolderError(f"{folder}: {path} is not valid JSON ({error})") from error


@contextlib.contextmanager
def staged_files(target: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling of the folder ``target``; on success every file written there is fsynced and
    moved into ``target`` with ``os.replace`` (each file appears whole; other files of ``target`` stay).

    For folders that also hold other things (a training ``output_dir`` with its checkpoints), where replacing the
    whole folder is not an option. The files are replaced one by one: a kill in the middle of the moves can leave
    some files new and some old, but never a half-written file.
    """
    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(target)
    staging = target.parent / _temporary_name(target)
    staging.mkdir()
    try:
        yield staging
        fsync_tree(staging)
        for path in sorted(p for p in staging.rglob("*") if p.is_file()):
            destination = target / path.relative_to(staging)
            destination.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, destination)
            fault_point("staged:after_file")
        _fsync_path(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
