"""A user's folder is safe (issue 31): never delete what tlbench did not write, fed through
the real command line (``tlbench prepare``, ``tlbench run``); docs/faults.md."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from engine_helpers import tiny_spec
from PIL import Image

from tlbench.cli import main
from tlbench.core.atomic import MARKER


def _photos(root: Path, per_class: int = 12) -> Path:
    """Issue 31's folder: photos/ with cat/ and dog/ (12 PNGs each) and my_notes.txt."""
    for c, colour in (("cat", (200, 30, 30)), ("dog", (30, 200, 30))):
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            Image.new("RGB", (10, 8), (colour[0], colour[1], i * 9)).save(root / c / f"{i}.png")
    (root / "my_notes.txt").write_text("my notes")
    return root


def _listing(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _ds_yaml(tmp_path: Path, source: Path, **options) -> Path:
    config = tmp_path / "ds.yaml"
    config.write_text(yaml.safe_dump({"loader": "folder", "source": str(source), **options}))
    return config


@pytest.mark.parametrize("where", ["photos", "photos/prepared", "."])
def test_prepare_into_its_source_is_refused_and_deletes_nothing(tmp_path, capsys, where):
    """`tlbench prepare ds.yaml photos --image-size 16` deleted the photos (issue 31)."""
    photos = _photos(tmp_path / "photos")
    config = _ds_yaml(tmp_path, photos)
    before = _listing(tmp_path)
    out = tmp_path / where
    status = main(["prepare", str(config), str(out), "--image-size", "16"])
    err = capsys.readouterr().err
    assert status == 2, err
    relation = {"photos": "equal to", "photos/prepared": "inside", ".": "containing"}[where]
    assert f"output folder {out} is {relation} the dataset's source {photos}" in err
    assert _listing(tmp_path) == before  # every file still there
    assert not (tmp_path / "photos" / "prepared").exists()


def test_prepare_into_a_folder_of_other_files_is_refused(tmp_path, capsys):
    config = _ds_yaml(tmp_path, _photos(tmp_path / "photos"))
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "thesis.tex").write_text("years of work")
    status = main(["prepare", str(config), str(tmp_path / "out"), "--image-size", "8"])
    err = capsys.readouterr().err
    assert status == 2
    assert f"output folder {tmp_path / 'out'} exists and holds files tlbench did not write" in err
    assert "thesis.tex" in err and "nothing was deleted" in err
    assert (tmp_path / "out" / "thesis.tex").read_text() == "years of work"


def test_prepare_replaces_its_own_output_marked_or_of_the_old_layout(tmp_path, capsys):
    config = _ds_yaml(tmp_path, _photos(tmp_path / "photos"))
    out = tmp_path / "prepared"
    args = ["prepare", str(config), str(out), "--image-size", "8"]
    assert main(args) == 0
    assert (out / MARKER).read_text() == "prepared\n"
    assert main(args) == 0  # marked: replaced
    (out / MARKER).unlink()  # a folder prepared before the marker existed: the old layout
    assert main(args) == 0 and (out / MARKER).is_file()
    (out / MARKER).unlink()
    (out / "notes.txt").write_text("mine")  # the old layout plus a file of the user's: refused
    assert main(args) == 2
    assert "notes.txt" in capsys.readouterr().err and (out / "notes.txt").is_file()
    (out / "notes.txt").unlink()
    (out / MARKER).write_text("run\n")  # another kind of output: refused
    assert main(args) == 2
    assert "holds a tlbench output of kind 'run', not 'prepared'" in capsys.readouterr().err


def test_run_into_a_results_folder_of_runs_is_refused_before_training(
    tiny_prepared, tmp_path, capsys
):
    """`tlbench run spec.yaml results/` wiped every earlier run in results/ (issue 31)."""
    results = tmp_path / "results"
    earlier = results / "runs" / "tiny" / "seed0"
    earlier.mkdir(parents=True)
    (earlier / "metrics.json").write_text(json.dumps({"status": "ok"}))
    (results / "study.csv").write_text("a,b\n")
    before = _listing(results)
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(tiny_spec(tiny_prepared, training={"epochs": 1})))
    status = main(["run", str(spec), str(results)])
    err = capsys.readouterr().err
    assert status == 2
    assert f"output folder {results} exists and holds files tlbench did not write" in err
    assert _listing(results) == before


# ---------------------------------------------------------------- the study's results folder


def _study_with_folder(source: Path | str, results: Path | str) -> dict:
    from test_faults import _tiny_study

    config = _tiny_study()
    config["datasets"]["mine"]["source"] = str(source)
    config["results"] = str(results)
    return config


@pytest.mark.parametrize("results", ["data", "data/photos", "data/photos/results"])
def test_results_holding_a_source_fails_the_dry_run_naming_both(tmp_path, results):
    """A study whose results: holds a dataset's source: `snakemake -n` fails, no job."""
    from test_workflow import snakemake

    photos = _photos(tmp_path / "data" / "photos")
    before = _listing(tmp_path / "data")
    config = tmp_path / "study.yaml"
    config.write_text(yaml.safe_dump(_study_with_folder(photos, tmp_path / results)))
    result = snakemake("-n", "--configfile", str(config))
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert f"results: '{tmp_path / results}' is " in output
    assert f"datasets.mine.source '{photos}'" in output
    assert "Job stats" not in output and "rule " not in output
    assert _listing(tmp_path / "data") == before
