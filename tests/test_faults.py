"""Fault injection: SIGKILL a subprocess inside a save, then load -> the previous state or a clear error.

Each save runs in a forked child process. Kill points are named by ``HARD_NCE_EL_FAULT`` (see hf_models/atomic.py)
or, for code without named points, installed as a hook in the child (``save_file``: SIGKILL on the first
safetensors write; this case fails on the pre-atomic EntityIndex.save). Never timing luck.
"""

from __future__ import annotations

import os
import signal
import time
import traceback
from collections.abc import Callable
from types import SimpleNamespace

import pytest
import torch

from hf_models.atomic import FAULT_ENV, CorruptFolderError
from hf_models.index.entity_index import EntityIndex, WorldEntities
from hf_models.modeling.scoring import Representation


def dummy_model() -> torch.nn.Module:
    """Saving and loading need no encoder: a parameter (for the device) and a dual-like config."""
    model = torch.nn.Linear(2, 2)
    model.config = SimpleNamespace(architecture="dual", num_query_vectors=1, num_key_vectors=1)
    return model


def make_index(seed: int) -> EntityIndex:
    """Two worlds of 6 entities each; ``seed`` changes every id and every vector (same shapes)."""
    generator = torch.Generator().manual_seed(seed)
    index = EntityIndex(dummy_model(), show_progress=False)
    for world in ("alpha", "beta"):
        ids = [f"{world}-{seed}-{i}" for i in range(6)]
        vectors = torch.randn(6, 3, 4, generator=generator)  # [E, L, H]
        index.worlds[world] = WorldEntities(
            ids, Representation(vectors=vectors, mask=torch.ones(6, 3).bool())
        )
    return index


def killed_in_child(work: Callable[[], object], fault: str | None = None, timeout: float = 120.0) -> int:
    """Run ``work()`` in a forked child process (with ``$HARD_NCE_EL_FAULT=fault``) -> its exit code, or minus the
    signal that ended it (-9 = SIGKILLed at the fault point)."""
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 1
        try:
            if fault:
                os.environ[FAULT_ENV] = fault
            work()
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise TimeoutError(f"the child writing with fault {fault!r} did not finish in {timeout} s")
        time.sleep(0.02)


def save_killed_by_safetensors(seed: int, folder) -> Callable[[], object]:
    """A hook for code without named points: SIGKILL on the first safetensors write."""

    def work():
        import safetensors.torch

        safetensors.torch.save_file = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)
        make_index(seed).save(folder)

    return work


def snapshot(index: EntityIndex) -> dict[str, tuple[list[str], torch.Tensor]]:
    return {w: (e.entity_ids, e.representation.vectors) for w, e in index.worlds.items()}


def same(a, b) -> bool:
    return a.keys() == b.keys() and all(a[w][0] == b[w][0] and torch.equal(a[w][1], b[w][1]) for w in a)


INDEX_POINTS = [
    ("patch", "save_file"),  # a hook: works on code without named points (it fails on the pre-atomic save)
    ("fault", "index:after_entity_ids"),
    ("fault", "atomic:before_fsync"),
    ("fault", "atomic:before_swap"),
    ("fault", "atomic:between_renames"),
    ("fault", "atomic:after_swap"),
]


@pytest.mark.parametrize(("kind", "point"), INDEX_POINTS, ids=[p for _, p in INDEX_POINTS])
def test_index_save_killed_loads_previous_or_new_never_a_mix(tmp_path, kind, point):
    folder = tmp_path / "index"
    make_index(seed=1).save(folder)
    previous, new = snapshot(make_index(seed=1)), snapshot(make_index(seed=2))
    if kind == "patch":
        rc = killed_in_child(save_killed_by_safetensors(2, folder))
    else:
        rc = killed_in_child(lambda: make_index(seed=2).save(folder), fault=point)
    assert rc == -signal.SIGKILL, f"the kill point {point} was never reached"
    try:
        loaded = snapshot(EntityIndex(dummy_model(), show_progress=False).load(folder))
    except CorruptFolderError as error:  # a clear error is acceptable; a silent mix is not
        assert str(folder) in str(error)
        return
    assert same(loaded, previous) or same(loaded, new), f"killed at {point}: loaded a mix of two saves"
    if point != "atomic:after_swap":
        assert same(loaded, previous), "the new save was not complete: the previous one must be read"
    # the next save works and cleans up after the killed one
    make_index(seed=3).save(folder)
    assert same(snapshot(EntityIndex(dummy_model()).load(folder)), snapshot(make_index(seed=3)))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index"], "temporary siblings left behind"


def test_index_load_checks_manifest(tmp_path):
    folder = tmp_path / "index"
    make_index(seed=1).save(folder)
    ids_file = folder / "world_0000" / "entity_ids.json"
    original = ids_file.read_text()
    ids_file.write_text(original[: len(original) // 2])  # truncated
    with pytest.raises(CorruptFolderError, match=r"index.*world_0000/entity_ids\.json.*not valid JSON"):
        EntityIndex(dummy_model()).load(folder)
    ids = __import__("json").loads(original)
    ids_file.write_text(__import__("json").dumps(ids[1:] + ids[:1]))  # reordered: same rows, other order
    with pytest.raises(CorruptFolderError, match=r"world_0000/entity_ids\.json.*checksum"):
        EntityIndex(dummy_model()).load(folder)
    ids_file.write_text(__import__("json").dumps(ids[:-1]))  # one id lost
    with pytest.raises(CorruptFolderError, match=r"world_0000/entity_ids\.json.*5 ids.*6"):
        EntityIndex(dummy_model()).load(folder)
    ids_file.write_text(original)
    faiss_like = (
        folder / "world_0000" / "extra.bin"
    )  # a file the manifest does not list is not read: no check
    faiss_like.write_bytes(b"x")
    EntityIndex(dummy_model()).load(folder)
    faiss_like.unlink()
    vectors = folder / "world_0000" / "representation.safetensors"
    from safetensors.torch import load_file, save_file

    tensors = load_file(vectors)
    save_file({"vectors": tensors["vectors"].flip(0), "mask": tensors["mask"]}, vectors)  # rows reordered
    with pytest.raises(
        CorruptFolderError, match=r"world_0000/representation\.safetensors does not match its checksum"
    ):
        EntityIndex(dummy_model()).load(folder)
    EntityIndex(dummy_model()).load(
        folder, verify_checksums=False
    )  # trusted files: only counts and ids checked
    save_file(tensors, vectors)
    EntityIndex(dummy_model()).load(folder)
    vectors = folder / "world_0001" / "representation.safetensors"
    vectors.write_bytes(vectors.read_bytes()[:100])  # half-written safetensors
    with pytest.raises(CorruptFolderError, match=r"world_0001/representation\.safetensors"):
        EntityIndex(dummy_model()).load(folder)


# ------------------------------------------------------------------------------------------ write_processed
def tables(seed: int):
    from .conftest import make_tiny_tables

    return make_tiny_tables({"alpha": "train", "beta": "val", "gamma": "test"}, 3, 2, seed=seed)


PROCESSED_POINTS = [
    "processed:after_split@2",  # train and val written, test not yet (the state issue 9 found)
    "atomic:before_fsync",
    "atomic:before_swap",
    "atomic:between_renames",
    "atomic:after_swap",
]


@pytest.mark.parametrize("point", PROCESSED_POINTS)
def test_write_processed_killed_loads_previous_or_new(tmp_path, point):
    from data_scripts.io import load_processed, write_processed

    folder = tmp_path / "data"
    old_mentions, old_entities = tables(seed=1)
    write_processed(old_mentions, old_entities, folder)
    (folder / "LICENSE.txt").write_text("licence")  # not part of the layout: carried over by every rewrite
    new_mentions, new_entities = tables(seed=2)
    rc = killed_in_child(lambda: write_processed(new_mentions, new_entities, folder), fault=point)
    assert rc == -signal.SIGKILL, f"the kill point {point} was never reached"
    mentions, entities = load_processed(folder)
    loaded = ({s: d.to_list() for s, d in mentions.items()}, sorted(entities["entity_id"]))
    previous = ({s: d.to_list() for s, d in old_mentions.items()}, sorted(old_entities["entity_id"]))
    new = ({s: d.to_list() for s, d in new_mentions.items()}, sorted(new_entities["entity_id"]))
    assert loaded == (new if point == "atomic:after_swap" else previous)
    write_processed(new_mentions, new_entities, folder)  # the next write cleans up after the killed one
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]
    assert (folder / "LICENSE.txt").read_text() == "licence", f"killed at {point}: the licence was lost"


# -------------------------------------------------------------------------------------- EntityLinker.save_index
@pytest.mark.parametrize(("kind", "point"), [("patch", "save_file"), ("fault", "index:after_entity_ids")])
def test_linker_save_index_killed_links_with_the_previous_index(tmp_path, tiny_bert_dir, kind, point):
    """Issue 9's case: rebuilding an index with another knowledge base, killed mid-save, must not link new entity
    rows with old vectors."""
    from hf_models import DualEncoderModel
    from hf_models.linking import EntityLinker

    from .conftest import make_tiny_tables
    from .test_linker import save_retriever

    retriever = save_retriever(DualEncoderModel, tiny_bert_dir, tmp_path / "dual")
    mentions, entities = make_tiny_tables({"alpha": "train"}, entities_per_world=8, mentions_per_world=4)
    records = [
        {k: r[k] for k in ("left_context", "mention", "right_context", "world")} for r in mentions["train"]
    ]
    old = EntityLinker.from_pretrained(retriever, max_length=24, show_progress=False).build_index(entities)
    folder = old.save_index(tmp_path / "kb")
    expected = [result.to_dict() for result in old.link(records, top_k=3)]
    other_kb = entities.select(list(reversed(range(len(entities))))).select(range(6))  # new rows, new order
    new = EntityLinker.from_pretrained(retriever, max_length=24, show_progress=False).build_index(other_kb)

    def save():
        if kind == "patch":
            import safetensors.torch

            safetensors.torch.save_file = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)
        new.save_index(folder)

    assert killed_in_child(save, fault=point if kind == "fault" else None) == -signal.SIGKILL
    reloaded = EntityLinker.from_pretrained(retriever, max_length=24, show_progress=False).load_index(folder)
    assert [result.to_dict() for result in reloaded.link(records, top_k=3)] == expected


def test_index_save_refuses_to_replace_an_unrelated_folder(tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "mine.txt").write_text("keep me")
    with pytest.raises(
        FileExistsError, match=r"notes is not empty and is not a folder written here \(no worlds"
    ):
        make_index(seed=1).save(tmp_path / "notes")
    assert (tmp_path / "notes" / "mine.txt").read_text() == "keep me"


def test_staged_files_killed_between_moves_leaves_whole_files(tmp_path):
    """Model folders (which also hold checkpoints) get their files moved in one by one: never a half-written file."""
    from hf_models.atomic import staged_files

    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "checkpoint-3").mkdir()
    for name in ("config.json", "model.safetensors"):
        (folder / name).write_text(f"old {name}")

    def save():
        with staged_files(folder) as staging:
            for name in ("config.json", "model.safetensors"):
                (staging / name).write_text(f"new {name}" * 1000)

    assert killed_in_child(save, fault="staged:after_file@1") == -signal.SIGKILL
    assert (folder / "config.json").read_text() == "new config.json" * 1000  # moved before the kill
    assert (folder / "model.safetensors").read_text() == "old model.safetensors"  # untouched, whole
    save()  # the next save completes and removes the killed one's staging folder
    assert (folder / "model.safetensors").read_text() == "new model.safetensors" * 1000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    assert (folder / "checkpoint-3").is_dir()


def test_processed_folder_with_a_changed_row_is_refused(tmp_path):
    """The manifest's file checksums catch what the ids checksum cannot: a changed label_id or world."""
    import shutil

    import pyarrow.parquet as pq

    from data_scripts.io import load_processed

    from .conftest import REPO_ROOT

    folder = shutil.copytree(REPO_ROOT / "data" / "glossary_el", tmp_path / "glossary_el")
    load_processed(folder)  # the shipped dataset carries a manifest with file checksums
    path = folder / "mentions" / "val.parquet"
    table = pq.read_table(path).to_pylist()
    table[0]["label_id"] = table[1]["label_id"]  # same ids, same row count: only the content changed
    path.chmod(0o644)
    pq.write_table(__import__("pyarrow").Table.from_pylist(table), path)
    with pytest.raises(CorruptFolderError, match=r"mentions/val\.parquet does not match its checksum"):
        load_processed(folder)
