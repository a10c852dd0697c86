"""Where the shared data sets are found: RISKSTREAM_DATA, else ../shared/data beside the repository."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from stream.cli import cli
from stream.eval.data import DataNotFound, repository_root, shared_data_dir

REPO = Path(__file__).resolve().parents[2]


def _checkout(root: Path) -> Path:
    """A riskstream checkout at ``root`` (what repository_root recognises) with shared/data beside it."""
    (root / "stream").mkdir(parents=True)
    (root / "stream" / "__init__.py").write_text("")
    (root / "pyproject.toml").write_text("[project]\nname = 'riskstream'\n")
    return root


def test_the_environment_variable_wins(tmp_path: Path) -> None:
    (tmp_path / "nab").mkdir()
    assert shared_data_dir("nab", env={"RISKSTREAM_DATA": str(tmp_path)}) == tmp_path / "nab"
    assert shared_data_dir(env={"RISKSTREAM_DATA": str(tmp_path)}) == tmp_path


def test_without_it_the_data_is_beside_this_checkout() -> None:
    assert repository_root(Path(__file__)) == REPO
    assert shared_data_dir(env={}, must_exist=False) == REPO.parent / "shared" / "data"


def test_a_clone_anywhere_finds_shared_data_beside_it_from_the_working_directory(tmp_path: Path) -> None:
    clone = _checkout(tmp_path / "ci-build" / "riskstream")
    data = tmp_path / "ci-build" / "shared" / "data" / "only_in_this_clone"
    data.mkdir(parents=True)
    (clone / "bench").mkdir()
    # the package's own checkout has no such data set; the one the working directory is in does
    assert shared_data_dir("only_in_this_clone", env={}, cwd=clone / "bench") == data


def test_missing_data_names_every_place_it_looked(tmp_path: Path) -> None:
    with pytest.raises(DataNotFound) as e:
        shared_data_dir("nab", env={"RISKSTREAM_DATA": str(tmp_path)})
    assert str(e.value) == (f"shared data not found: nab is not at {tmp_path / 'nab'} (from RISKSTREAM_DATA); "
                            "set RISKSTREAM_DATA to the folder holding it")
    clone = _checkout(tmp_path / "elsewhere" / "riskstream")
    with pytest.raises(DataNotFound) as e:
        shared_data_dir("no_such_set", env={}, cwd=clone)
    message = str(e.value)
    assert "\n" not in message
    assert str(REPO.parent / "shared" / "data" / "no_such_set") in message
    assert str(tmp_path / "elsewhere" / "shared" / "data" / "no_such_set") in message


def test_riskstream_nab_without_data_is_one_line_and_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RISKSTREAM_DATA", str(tmp_path))
    res = CliRunner().invoke(cli, ["nab"])
    assert res.exit_code == 2
    assert res.output == (f"riskstream: error: shared data not found: nab is not at {tmp_path / 'nab'} (from "
                          "RISKSTREAM_DATA); set RISKSTREAM_DATA to the folder holding it\n")
