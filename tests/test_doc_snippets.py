"""Every Python and shell snippet of README.md and docs/*.md runs, or is marked as needing what a test cannot have.

A snippet is a fenced block tagged ``python`` / ``bash`` / ``sh`` / ``shell``, or an untagged block whose first line is
a command (``python``, ``accelerate``, ``make``, ...). The line before its fence may hold a marker::

    <!-- snippet: gpu data -->

Tags: ``gpu``, ``hub`` (network), ``data`` (a dataset that is not shipped), ``install`` (network + packages),
``benchmark`` (minutes, GBs), ``recursive`` (runs this test suite) -- never executed here; ``slow`` -- executed by
the slow test only; ``setup=NAME`` -- a prelude of :data:`SETUPS` defines the names a fragment uses.

The snippets of one document run in order in one fixture folder (a later snippet may use what an earlier one
wrote): ``outputs/demo_som``, ``out/som``, ``out/joint``, ``out/dual`` are tiny models saved like the recipes save
them, ``my_entities.jsonl`` / ``kb.jsonl`` / ``raw.txt`` / ``inputs.jsonl`` small inputs, and ``data/``,
``recipes/``, ``metrics/``, ``benchmarks/`` the repository's own folders.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from .conftest import REPO_ROOT

DOCS = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
LANGUAGES = {"python": "python", "py": "python", "bash": "shell", "sh": "shell", "shell": "shell"}
COMMAND = re.compile(r"^(python|accelerate|make|nice|pip|bash|hf|huggingface-cli)\b")
NEVER = {"gpu", "hub", "data", "install", "benchmark", "recursive"}
TAGS = NEVER | {"slow"}
MARKER = re.compile(r"^<!--\s*snippet:\s*(.*?)\s*-->$")

SETUPS = {
    # docs/bias.md: a trainer over the tiny tables and a tiny dual model
    "tiny_trainer": textwrap.dedent(
        """
        from transformers import AutoTokenizer
        from data_scripts.featurize import featurize_entities, featurize_mentions, prepare_tokenizer
        from hf_models import DualEncoderModel
        from hf_models.index.tables import EntityTable, MentionTable
        from hf_models.training.trainer import NCETrainer
        from hf_models.training.training_args import NCETrainingArguments
        from tests.conftest import make_tiny_tables

        tokenizer = AutoTokenizer.from_pretrained("out/dual")
        prepare_tokenizer(tokenizer)
        _mentions, _entities = make_tiny_tables({"alpha": "train", "beta": "train", "gamma": "val"})
        entities = EntityTable.from_dataset(featurize_entities(_entities, tokenizer, max_length=24))
        train_mentions, val_mentions = (
            MentionTable.from_dataset(featurize_mentions(_mentions[s], tokenizer, max_length=24), entities, split=s)
            for s in ("train", "val")
        )
        model = DualEncoderModel.from_pretrained("out/dual")
        args = NCETrainingArguments(
            output_dir="trainer_out", num_candidates=4, num_train_epochs=1, per_device_train_batch_size=4,
            use_cpu=True, report_to="none", disable_tqdm=True, save_strategy="no", eval_strategy="epoch",
            eval_top_k=6, metric_for_best_model="recall@6", mining_batch_size=8,
        )
        """
    ),
}


@dataclass
class Snippet:
    doc: Path
    line: int
    language: str  # "python" | "shell"
    code: str
    tags: set[str] = field(default_factory=set)
    setup: str | None = None

    @property
    def where(self) -> str:
        return f"{self.doc.relative_to(REPO_ROOT)}:{self.line}"


def snippets(doc: Path) -> list[Snippet]:
    """The Python / shell snippets of one markdown file, with their markers."""
    lines = doc.read_text().splitlines()
    found, position = [], 0
    while position < len(lines):
        fence = re.match(r"^```(\w*)\s*$", lines[position])
        if not fence:
            position += 1
            continue
        end = next(i for i in range(position + 1, len(lines)) if lines[i].startswith("```"))
        body = lines[position + 1 : end]
        language = LANGUAGES.get(fence.group(1))
        if language is None and not fence.group(1) and body and COMMAND.match(body[0].strip()):
            language = "shell"  # an untagged block of commands is a shell snippet too
        if language:
            previous = next((lines[i].strip() for i in range(position - 1, -1, -1) if lines[i].strip()), "")
            marker = MARKER.match(previous)
            words = marker.group(1).split() if marker else []
            tags = {w for w in words if not w.startswith("setup=")}
            setup = next((w.split("=", 1)[1] for w in words if w.startswith("setup=")), None)
            unknown = tags - TAGS
            assert not unknown, f"{doc.name}:{position + 1}: unknown snippet tag(s) {unknown}"
            assert setup is None or setup in SETUPS, f"{doc.name}:{position + 1}: unknown setup {setup!r}"
            found.append(Snippet(doc, position + 1, language, "\n".join(body) + "\n", tags, setup))
        position = end + 1
    return found


def test_every_snippet_is_found_and_marked_consistently() -> None:
    everything = [s for doc in DOCS for s in snippets(doc)]
    assert len(everything) >= 10, [s.where for s in everything]
    for snippet in everything:
        if snippet.language == "python":
            compile(snippet.code, snippet.where, "exec")  # even never-run snippets must be valid Python


# ---------------------------------------------------------------------- fixture folder
def _tiny_models(tiny_bert_dir: Path, root: Path) -> dict[str, Path]:
    import torch
    from transformers import AutoTokenizer

    from data_scripts.featurize import prepare_tokenizer
    from hf_models import DualEncoderModel, JointRerankerModel, SumOfMaxModel

    tokenizer = AutoTokenizer.from_pretrained(tiny_bert_dir)
    prepare_tokenizer(tokenizer)
    torch.manual_seed(0)
    models = {
        "som": SumOfMaxModel.from_encoder(str(tiny_bert_dir)),
        "joint": JointRerankerModel.from_encoder(str(tiny_bert_dir)),
        "dual": DualEncoderModel.from_encoder(str(tiny_bert_dir)),
    }
    folders = {}
    for name, model in models.items():
        model.config.max_length = 32
        model.save_pretrained(root / name)
        tokenizer.save_pretrained(root / name)
        folders[name] = root / name
    return folders


ENTITIES = [
    {"entity_id": "1", "title": "Lisp", "text": "Lisp is a family of programming languages."},
    {"entity_id": "2", "title": "Lisp Machine", "text": "A computer that runs Lisp as its native language."},
    {"entity_id": "3", "title": "Emacs", "text": "An extensible text editor written in Lisp."},
]
STARWARS = [
    {"entity_id": str(10 + i), "world": "starwars", "title": title, "text": text}
    for i, (title, text) in enumerate(
        [
            ("Jedi", "The Jedi Order was a monastic order."),
            ("Yoda", "Yoda was a legendary Jedi Master."),
            ("Dagobah", "Dagobah was a swamp planet."),
            ("Luke Skywalker", "Luke trained as a Jedi."),
        ]
    )
]


@pytest.fixture(scope="module")
def model_root(tiny_bert_dir, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("doc_models")
    _tiny_models(tiny_bert_dir, root)
    return root


def fixture_folder(model_root: Path, folder: Path, trained_demo: bool = False) -> Path:
    """A working directory in which the documented paths exist (``trained_demo``: the README's slow snippet
    trains ``outputs/demo_som`` itself, so it is not pre-filled)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "outputs").mkdir(exist_ok=True)
    (folder / "out").mkdir(exist_ok=True)
    if not trained_demo:
        (folder / "outputs" / "demo_som").symlink_to(model_root / "som")
    for name in ("som", "joint", "dual"):
        (folder / "out" / name).symlink_to(model_root / name)
    for name in ("data", "recipes", "metrics", "benchmarks", "tools", "accelerate_config_cpu.yaml"):
        (folder / name).symlink_to(REPO_ROOT / name)
    (folder / "my_entities.jsonl").write_text("".join(json.dumps(e) + "\n" for e in ENTITIES))
    (folder / "kb.jsonl").write_text("".join(json.dumps(e) + "\n" for e in STARWARS))
    (folder / "raw.txt").write_text("Luke trained as a Jedi.\nYoda lived on Dagobah.\n")
    (folder / "inputs.jsonl").write_text(json.dumps({"world": "starwars", "text": "Yoda was a Jedi."}) + "\n")
    return folder


DRIVER = textwrap.dedent(
    """
    import json, os, subprocess, sys, traceback
    for item in json.load(open(sys.argv[1])):
        print(f"--- {item['where']}", flush=True)
        if item["language"] == "shell":
            done = subprocess.run(["bash", "-euo", "pipefail", "-c", item["code"]])
            if done.returncode:
                sys.exit(f"{item['where']}: shell snippet exited {done.returncode}")
            continue
        namespace = {"__name__": "__main__"}
        try:
            if item["setup"]:
                exec(compile(item["setup"], item["where"] + " (setup)", "exec"), namespace)
            exec(compile(item["code"], item["where"], "exec"), namespace)
        except BaseException:
            traceback.print_exc()
            sys.exit(f"{item['where']}: python snippet failed")
    """
)


def run_snippets(items: list[Snippet], cwd: Path) -> None:
    request = [
        {
            "where": s.where,
            "language": s.language,
            "code": s.code,
            "setup": SETUPS[s.setup] if s.setup else None,
        }
        for s in items
    ]
    (cwd / ".snippets.json").write_text(json.dumps(request))
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_VERBOSITY="error", PYTHONPATH=str(REPO_ROOT))
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"  # `python` = this interpreter
    done = subprocess.run(
        [sys.executable, "-c", DRIVER, str(cwd / ".snippets.json")],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert done.returncode == 0, f"{done.stdout[-3000:]}\n{done.stderr[-5000:]}"


def _selected(doc: Path, slow: bool) -> list[Snippet]:
    chosen = [s for s in snippets(doc) if not s.tags & NEVER]
    if not slow:
        return [s for s in chosen if "slow" not in s.tags]
    return chosen if any("slow" in s.tags for s in chosen) else []


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_doc_snippets_run(doc: Path, model_root: Path, tmp_path: Path) -> None:
    items = _selected(doc, slow=False)
    if not items:
        pytest.skip(f"{doc.name}: no snippet runs in the fast test")
    run_snippets(items, fixture_folder(model_root, tmp_path / "cwd"))


@pytest.mark.slow
@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_doc_snippets_run_slow(doc: Path, model_root: Path, tmp_path: Path) -> None:
    items = _selected(doc, slow=True)
    if not items:
        pytest.skip(f"{doc.name}: no slow snippet")
    trains_demo = any("demo_som.yaml" in s.code for s in items)
    run_snippets(items, fixture_folder(model_root, tmp_path / "cwd", trained_demo=trains_demo))
