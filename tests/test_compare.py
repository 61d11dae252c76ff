"""tlbench compare / init without training: the folder survey and its one error, the
backbones the Keras cache holds, the cost model and --hours sizing, the config `snakemake -n`
accepts, the answer printed from the ranking table, and the progress display."""

from __future__ import annotations

import io
import os
import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import snakemake_fork
import yaml

from tlbench.cli import main
from tlbench.core import progress as progress_module
from tlbench.core.progress import progress
from tlbench.report.pages.answer import answer_text
from tlbench.study import compare, defaults

ROOT = Path(__file__).resolve().parents[1]


def image_folder(root: Path, classes=("cats", "dogs", "owls"), per_class=12) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 255, size=(10, 12, 3), dtype=np.uint8) // (c + 1)
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return root


def keras_home(tmp_path: Path, *keys: str) -> Path:
    """A Keras cache holding (empty stand-ins of) the weight files of ``keys``."""
    models = tmp_path / "keras" / "models"
    models.mkdir(parents=True)
    for key in keys:
        (models / defaults.backbone_by_key(key).file).write_bytes(b"")
    return models.parent


def test_inspect_folder_counts_classes_and_images(tmp_path):
    data = compare.inspect_folder(image_folder(tmp_path / "my pets"))
    assert data.per_class == {"cats": 12, "dogs": 12, "owls": 12}
    assert data.images == 36 and data.splits == {"all": 36}
    assert compare.dataset_name(data) == "my_pets"
    # 12 per class: 20 % test, then 10 % of the rest validation
    assert data.train_per_class == int(12 * 0.8 * 0.9)


def test_inspect_folder_reads_a_zip(tmp_path):
    folder = image_folder(tmp_path / "src")
    archive = tmp_path / "pets.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        for path in sorted(folder.rglob("*.png")):
            handle.write(path, f"pets/{path.relative_to(folder)}")
    data = compare.inspect_folder(archive)
    assert sorted(data.per_class) == ["cats", "dogs", "owls"] and data.images == 36
    assert compare.dataset_name(data) == "pets"


@pytest.mark.parametrize(
    "make, found",
    [
        (lambda p: p.mkdir(), "no class folders with images found"),
        (lambda p: (p / "notes").mkdir(parents=True) or (p / "notes/a.txt").write_text("x"),
         "no image file"),
        (lambda p: image_folder(p, classes=("only",)), "found one class folder"),
        (lambda p: p.write_text("hello"), "a file that is not a zip or tar archive"),
        (lambda p: None, "does not exist"),
    ],
    ids=["empty", "text files", "one class", "plain file", "missing"],
)  # fmt: skip
def test_a_folder_that_is_not_a_dataset_gets_one_clear_error(tmp_path, capsys, make, found):
    path = tmp_path / "stuff"
    make(path)
    assert main(["init", str(path), "--config", str(tmp_path / "s.yaml")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert f"{path} is not a dataset" in err and "one subfolder of images per class" in err
    assert found in err, err
    assert not (tmp_path / "s.yaml").exists()


@pytest.mark.parametrize(
    "option, message",
    [
        (["--image-size", "16"], "--image-size 16: must be at least 32"),
        (["--epochs", "0"], "--epochs 0: must be at least 1"),
        (["--seeds", "0"], "--seeds 0: must be at least 1"),
        (["--hours", "0"], "--hours 0: must be more than 0"),
        (["--backbone", "resnet_51"], "backbone 'resnet_51' is not one tlbench compare knows"),
    ],
)
def test_bad_settings_are_one_line_errors(tmp_path, capsys, option, message):
    folder = image_folder(tmp_path / "pets")
    args = ["init", str(folder), "--config", str(tmp_path / "s.yaml"), "--backbone", "vgg16"]
    assert main([*args, *option]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "s.yaml").exists()


def test_cached_backbones_are_the_weight_files_in_keras_home(tmp_path, monkeypatch):
    home = keras_home(tmp_path, "resnet50", "mobilenetv2_035")
    monkeypatch.setenv("KERAS_HOME", str(home))
    assert [b.key for b in defaults.cached_backbones()] == ["mobilenetv2_035", "resnet50"]
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "empty"))
    assert defaults.cached_backbones() == []


def test_no_cached_weights_is_an_error_naming_the_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "nothing"))
    folder = image_folder(tmp_path / "pets")
    assert main(["init", str(folder), "--config", str(tmp_path / "s.yaml")]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path / "nothing" / "models") in err and "--backbone" in err


def test_every_default_backbone_has_a_measured_cost():
    costs = defaults.load_costs()
    for entry in defaults.IMAGENET:
        assert {"forward", "train"} <= set(costs["seconds_per_image"][entry.key]), entry.key
    for key in ("side", "workflow_seconds", "prepare_seconds_per_image", "run_overhead_seconds"):
        assert costs[key] > 0, key


COSTS = {
    "side": 100,
    "workflow_seconds": 0.0,
    "prepare_seconds_per_image": 0.0,
    "run_overhead_seconds": 0.0,
    "seconds_per_image": {e.key: {"forward": 0.01, "train": 0.1} for e in defaults.IMAGENET},
}


def summary(per_class: int, classes: int = 2) -> compare.DataSummary:
    counts = {f"c{i}": per_class for i in range(classes)}
    return compare.DataSummary(Path("/data/x"), counts, {"all": per_class * classes}, counts)


def test_estimate_counts_the_images_each_run_reads():
    """One backbone, no budgets, one seed, one epoch, 100 px (the table's side): features
    of every image once, then two_phase, fine_tune and scratch each train one epoch on
    train and evaluate val (per epoch) and val + test."""
    data = summary(250, classes=2)  # 500 images: test 100, val 40, train 360
    plan = compare.Plan([defaults.IMAGENET[0]], side=100, epochs=1, seeds=[0])
    one_run = 360 * 0.1 + 40 * 0.01 + (40 + 100) * 0.01
    assert compare.estimate(plan, data, COSTS) == pytest.approx(500 * 0.01 + 3 * one_run)
    # the cost scales with pixels, seeds and epochs
    doubled = compare.Plan([defaults.IMAGENET[0]], side=200, epochs=1, seeds=[0])
    assert compare.estimate(doubled, data, COSTS) == pytest.approx(4 * (500 * 0.01 + 3 * one_run))


def test_hours_shrink_the_study_in_order_and_say_what_they_dropped():
    data = summary(500)
    five = list(defaults.IMAGENET[:5])
    full, seconds = compare.plan(data, five, costs=COSTS)
    assert full.budgets == [10, 50] and full.side == 128 and full.epochs == 20
    assert len(full.seeds) == 3 and not full.notes
    fitted, fitted_seconds = compare.plan(data, five, hours=seconds / 3600 / 20, costs=COSTS)
    assert fitted_seconds <= seconds / 20
    assert fitted.notes[0] == "label budgets dropped" and fitted.budgets == []
    assert any("dropped (the costliest)" in note for note in fitted.notes)
    assert len(fitted.seeds) == 3  # seeds are never traded away
    with pytest.raises(ValueError, match="more than --hours 1e-06; ask for more hours"):
        compare.plan(data, five, hours=1e-6, costs=COSTS)


def test_backbones_are_ordered_by_their_measured_cost():
    """The cheapest backbone (by the cost table, not by the list's order) gives the scratch
    baseline's architecture, and the costliest is the first dropped to fit --hours."""
    a, b, c = defaults.IMAGENET[:3]
    costs = {**COSTS, "seconds_per_image": dict(COSTS["seconds_per_image"])}
    costs["seconds_per_image"][a.key] = {"forward": 0.5, "train": 5.0}
    chosen, seconds = compare.plan(summary(30), [a, b, c], costs=costs)
    assert [e.key for e in chosen.backbones] == [b.key, c.key, a.key]
    assert compare.study_config(summary(30), chosen)["matrix"][1]["backbones"] == [
        f"{b.key}_scratch"
    ]
    fitted, _ = compare.plan(summary(30), [a, b, c], hours=0.999 * seconds / 3600, costs=costs)
    assert fitted.notes[0] == f"backbone {a.key} dropped (the costliest)"


def test_small_classes_get_no_label_budgets_and_many_backbones_a_prescreen():
    small, _ = compare.plan(summary(30), list(defaults.IMAGENET[:2]), costs=COSTS)
    assert small.budgets == []
    chosen, _ = compare.plan(summary(500), list(defaults.IMAGENET[:5]), costs=COSTS)
    config = compare.study_config(summary(500), chosen)
    assert config["matrix"][0]["prescreen"] == {"score": "logme", "keep": 3}
    assert config["datasets"]["x"]["budgets"] == [10, 50, "all"]
    assert config["matrix"][1]["strategies"] == ["scratch"]
    scratch = config["backbones"][config["matrix"][1]["backbones"][0]]
    assert scratch["weights"] == "none" and scratch["name"] == defaults.IMAGENET[0].name


def test_init_writes_a_config_that_snakemake_accepts(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("KERAS_HOME", str(keras_home(tmp_path, "mobilenetv2_035")))
    folder = image_folder(tmp_path / "pets", per_class=60)
    config = tmp_path / "tlbench-study.yaml"
    assert main(["init", str(folder), "--config", str(config), "--hours", "3"]) == 0
    out = capsys.readouterr().out
    assert "3 classes, 180 images" in out and "estimated time:" in out and "an estimate" in out
    study = yaml.safe_load(config.read_text())
    assert list(study["backbones"]) == ["mobilenetv2_035", "mobilenetv2_035_scratch"]
    assert study["matrix"][0]["strategies"] == [
        "linear_probe", "feature_extraction", "two_phase", "fine_tune",
    ]  # fmt: skip
    assert study["seeds"] == [0, 1, 2] and study["datasets"]["pets"]["budgets"] == [10, "all"]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    args = ["-n", "--snakefile", str(ROOT / "Snakefile"), "--directory", str(tmp_path)]
    result = snakemake_fork.run(
        [*args, "--configfile", str(config), "--quiet", "rules"], cwd=tmp_path, env=env, timeout=600
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "trained_run" in result.stdout + result.stderr
    # a second init with other settings keeps the (maybe edited) file unless --force
    assert main(["init", str(folder), "--config", str(config), "--seeds", "1"]) == 2
    assert "exists and differs: pass --force" in capsys.readouterr().err
    assert main(["init", str(folder), "--config", str(config), "--seeds", "1", "--force"]) == 0
    assert yaml.safe_load(config.read_text())["seeds"] == [0]


def ranking(budget: bool = False) -> pd.DataFrame:
    rows = [
        ("mnv2", "two_phase", 1, 0.91, 0.88, 0.94, "selected", 300.0, True),
        ("mnv2", "fine_tune", 2, 0.90, 0.86, 0.93, "equivalent", 400.0, True),
        ("mnv2", "feature_extraction", 3, 0.89, 0.85, 0.92, "inconclusive", 20.0, False),
        ("mnv2", "freeze_bottom", 4, 0.90, 0.85, 0.93, "inconclusive", 100.0, True),
        ("mnv2_scratch", "scratch", 5, 0.60, 0.55, 0.65, "worse", 5.0, False),
        ("mnv2", "linear_probe", 6, 0.95, 0.93, 0.97, "better", 2.0, False),
    ]
    table = pd.DataFrame(
        rows,
        columns=["backbone", "strategy", "rank", "test_accuracy", "ci_low", "ci_high",
                 "verdict", "train_seconds", "non_inferior"],
    )  # fmt: skip
    table.insert(0, "dataset", "pets")
    table["augmentation"], table["seeds"] = "none", 3
    if budget:
        table = pd.concat([table.assign(budget="n10"), table.assign(budget="all")])
    return table


def test_the_answer_names_the_chosen_cell_those_as_good_and_the_cheapest():
    text = answer_text(ranking(), "/home/me/report.html")
    lines = text.splitlines()
    assert lines[0] == "pets: chosen by validation: mnv2/two_phase/none"
    assert lines[1] == "  test accuracy 0.910 (95 % interval 0.880 to 0.940, 3 seeds)"
    # shown as good: equivalent, or inconclusive but non-inferior; an inconclusive cell
    # that may be worse is never counted as good, nor picked as the cheapest (issue 34)
    assert lines[2].endswith(
        "(equivalent or non-inferior): mnv2/fine_tune/none, mnv2/freeze_bottom/none"
    )
    assert lines[3].endswith("mnv2/feature_extraction/none")
    assert lines[4].startswith("  cheapest of those: mnv2/freeze_bottom/none (100 s")
    assert lines[-1] == "report: /home/me/report.html"
    verdict = pd.DataFrame(
        {"dataset": ["pets"], "val_close": ["mnv2/fine_tune/none; mnv2/freeze_bottom/none"],
         "val_n": [153], "val_se": [0.0271], "val_groups": [float("nan")]}
    )  # fmt: skip
    said = answer_text(ranking(), "r.html", verdict).splitlines()
    assert said[1] == (
        "  validation cannot tell it from (n = 153, standard error 0.027): "
        "mnv2/fine_tune/none, mnv2/freeze_bottom/none"
    )
    assert said[2:] == lines[1:-1] + ["report: r.html"]
    by_budget = answer_text(ranking(budget=True), "r.html").splitlines()
    assert by_budget[0].startswith("pets, 10 labelled images per class: chosen by validation")
    assert by_budget[5].startswith("pets, all training images: chosen by validation")


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_is_plain_lines_in_a_log_and_a_bar_on_a_terminal(monkeypatch):
    log = io.StringIO()
    with progress("preparing train", 1000, stream=log) as shown:
        for _ in range(1000):
            shown.advance()
    lines = log.getvalue().splitlines()
    assert lines[0] == "preparing train: 1/1000 images (0 %)"
    assert lines[1] == "preparing train: 100/1000 images (10 %)"
    assert lines[-1] == "preparing train: 1000/1000 images (100 %)" and len(lines) == 11
    small = io.StringIO()
    with progress("preparing val", progress_module.MIN_STEPS - 1, stream=small) as shown:
        shown.advance()
    assert small.getvalue() == ""
    terminal = Terminal()
    with progress("preparing test", 300, stream=terminal) as shown:
        for _ in range(300):
            shown.advance()
    drawn = terminal.getvalue()
    assert "preparing test (images)" in drawn and "300/300" in drawn and "━" in drawn
