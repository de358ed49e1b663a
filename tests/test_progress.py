"""Progress bars: quiet under set_progress(False) and on a non-terminal (no escape codes in log files)."""

from __future__ import annotations

import io

import pytest

from hf_models import progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def restore():
    progress.set_progress(
        True
    )  # an earlier test (a recipe run with --disable_tqdm) may have switched bars off
    yield
    progress.set_progress(True)


def draw(monkeypatch, stream) -> str:
    monkeypatch.setattr("sys.stderr", stream)
    for _ in progress.tqdm(range(3), desc="encoding entities (lego)", file=stream, mininterval=0):
        pass
    return stream.getvalue()


def test_bar_on_a_terminal_names_its_stage(monkeypatch):
    assert "encoding entities (lego)" in draw(monkeypatch, Terminal())


def test_no_escape_codes_to_a_non_terminal(monkeypatch):
    assert draw(monkeypatch, io.StringIO()) == ""


def test_switched_off(monkeypatch):
    progress.set_progress(False)
    assert draw(monkeypatch, Terminal()) == ""


def test_recipe_disable_tqdm_switches_progress_off():
    from hf_models.recipes.recipe import setup_logging
    from hf_models.training.training_args import NCETrainingArguments

    args = NCETrainingArguments(output_dir="unused", disable_tqdm=True, report_to="none", use_cpu=True)
    setup_logging(args)
    assert not progress.progress_enabled()
