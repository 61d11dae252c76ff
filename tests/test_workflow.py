"""The Snakemake workflow: dry runs of every study config, lint, config errors,
and (slow) small studies end to end through Snakemake, report included."""

from __future__ import annotations

import base64
import html
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import snakemake_fork
import yaml
from browser import chromium, require_chromium
from conftest import require_shared

from tlbench.report.pages import results_pages

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).with_name("snakemake")
CONFIGS = [
    ROOT / "config.yaml",
    *sorted(ROOT.glob("configs/*.yaml")),
    *sorted(ROOT.glob("configs/test/*.yaml")),
    *sorted(ROOT.glob("configs/measured/*.yaml")),
]
ARTIFACTS = ROOT / "test-artifacts"


def snakemake(
    *args: str, cwd: Path = ROOT, env: dict | None = None, timeout: int = 1800, fresh=False
):
    """Run snakemake with this interpreter's environment; return the completed process.

    Forked from a process that has imported Snakemake once (tests/snakemake_fork.py:
    dry runs, lint, reports), or with ``fresh`` the `snakemake` program itself (a study
    that runs jobs)."""
    full_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
    full_env["PATH"] = f"{SNAKEMAKE.parent}{os.pathsep}{full_env.get('PATH', '')}"
    if not fresh:
        return snakemake_fork.run(args, cwd=cwd, env=full_env, timeout=timeout)
    return subprocess.run(
        [str(SNAKEMAKE), *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def job_counts(output: str) -> dict[str, int]:
    """The "Job stats" table of a (dry) run as {rule: count}."""
    counts = {}
    in_table = False
    for line in output.splitlines():
        if line.startswith("Job stats:"):
            in_table = True
            continue
        if in_table:
            match = re.fullmatch(r"(\w+)\s+(\d+)", line.strip())
            if match and match.group(1) != "total":
                counts[match.group(1)] = int(match.group(2))
            elif line.strip().startswith("total"):
                break
    return counts


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: str(p.relative_to(ROOT)))
def test_dry_run(config):
    """Every study config expands into a complete DAG."""
    assert config.exists(), f"{config} is missing"
    result = snakemake("-n", "--configfile", str(config), "--quiet", "rules")
    assert result.returncode == 0, result.stdout + result.stderr
    counts = job_counts(result.stdout + result.stderr)
    assert counts.get("trained_run", 0) >= 1, result.stdout
    assert counts.get("all") == 1


def test_lint_is_clean():
    result = snakemake("--lint")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Congratulations" in result.stdout + result.stderr
    assert not re.search(r"\b(Lints for|warning)", result.stdout, re.IGNORECASE), result.stdout


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("training={'optimizer': 'adamw'}", ["training.optimizer", "'adamw'", "adam, sgd"]),
        ("seeds=[0,-1]", ["seeds[1]"]),
        ("epochs=3", ["'epochs'", "valid keys"]),
    ],
)
def test_bad_config_is_rejected_naming_the_key(override, named):
    result = snakemake("-n", "--config", override)
    assert result.returncode != 0
    for text in named:
        assert text in result.stderr + result.stdout, result.stderr


def test_bad_checkpoint_interval_stops_the_workflow_before_any_job():
    result = snakemake("-n", env={"TLBENCH_CHECKPOINT_SECONDS": "soon"})
    assert result.returncode != 0
    assert "TLBENCH_CHECKPOINT_SECONDS='soon'" in result.stderr + result.stdout, result.stderr


def test_unknown_matrix_name_is_rejected(tmp_path):
    config = yaml.safe_load((ROOT / "configs/test/tiny.yaml").read_text())
    config["matrix"][0]["strategies"] = ["finetune"]
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config))
    result = snakemake("-n", "--configfile", str(path))
    assert result.returncode != 0
    assert "matrix[0].strategies[0]: unknown name 'finetune'" in result.stderr + result.stdout


def test_configfile_replaces_the_default_study(tmp_path):
    """--configfile X runs X alone: nothing of config.yaml (e.g. its seeds) leaks in."""
    config = yaml.safe_load((ROOT / "configs/test/tiny.yaml").read_text())
    del config["seeds"]  # default [0]; config.yaml has [0, 1, 2]
    config["matrix"] = [
        {
            "datasets": ["target"],
            "backbones": ["cnn_scratch"],
            "strategies": ["scratch"],
            "augmentations": ["none"],
        }
    ]
    path = tmp_path / "one_run.yaml"
    path.write_text(yaml.safe_dump(config))
    result = snakemake("-n", "--configfile", str(path), "--quiet", "rules")
    assert result.returncode == 0, result.stderr
    counts = job_counts(result.stdout + result.stderr)
    assert counts["trained_run"] == 1 and counts["prepared_dataset"] == 1, counts
    # --config alone still extends config.yaml
    result = snakemake("-n", "--config", "seeds=[5]", "--quiet", "rules")
    assert result.returncode == 0, result.stderr
    assert job_counts(result.stdout + result.stderr)["trained_run"] > 1


def embedded_result(report: Path, path: str) -> str:
    """The content of result ``path`` as embedded in a Snakemake HTML report (base64 data URI)."""
    text = report.read_text()
    start = text.find(f'"{path}": {{"name"')
    assert start >= 0, f"{path} is not in the report"
    match = re.compile(r'"data_uri": "data:[^"]*;base64,([^"]+)"').search(text, start)
    assert match, f"{path} has no embedded content in the report"
    return base64.b64decode(match.group(1)).decode("utf-8", errors="replace")


def rendered_text(dom: str) -> str:
    """The visible text of a dumped DOM (scripts and styles removed)."""
    dom = re.sub(r"<(script|style)\b.*?</\1>", " ", dom, flags=re.DOTALL)
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", dom)))


def _run_study(workdir: Path, config: Path, extra: list[str], env: dict | None = None) -> None:
    result = snakemake(
        "--snakefile",
        str(ROOT / "Snakefile"),
        "--directory",
        str(workdir),
        "--configfile",
        str(config),
        "--cores",
        "2",
        *extra,
        env=env,
        fresh=True,
    )
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-10000:]


def _dry_output(workdir: Path, config: Path, extra: Sequence[str] = ()) -> str:
    """The output of a successful dry run of ``config`` in ``workdir``."""
    result = snakemake(
        "--snakefile",
        str(ROOT / "Snakefile"),
        "--directory",
        str(workdir),
        "--configfile",
        str(config),
        "-n",
        *extra,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    return output


def _dry_counts(workdir: Path, config: Path, extra: Sequence[str]) -> dict[str, int]:
    return job_counts(_dry_output(workdir, config, extra))


def test_scores_of_a_pretrained_backbone_wait_for_its_pretraining_run(tmp_path):
    """configs/test/tiny.yaml: cnn_source's score job reads its pretraining run (the
    source classifier of NCE and LEEP) besides its feature cache and prepared data."""
    output = _dry_output(tmp_path, ROOT / "configs/test/tiny.yaml")
    job = output.split("rule transferability_scores:", 1)[1].split("\n\n", 1)[0]
    inputs = re.search(r"input: (.*)", job).group(1).split(", ")
    assert sorted(inputs) == [
        "results/tiny/features/target/cnn_source",
        "results/tiny/prepared/target",
        "results/tiny/pretrained/cnn_source",
    ], job


def test_prescreened_block_waits_for_its_checkpoint(tmp_path):
    """configs/test/prescreen.yaml: the prescreened block's three backbones are scored
    (features, scores) and its runs wait for the prescreen checkpoint; only the
    unscreened block's run is planned before the checkpoint has run."""
    output = _dry_output(tmp_path, ROOT / "configs/test/prescreen.yaml")
    counts = job_counts(output)
    assert counts["prescreen"] == 1, counts
    assert counts["transferability_scores"] == 3 and counts["backbone_features"] == 3, counts
    assert counts["trained_run"] == 1, counts
    assert "results/prescreen/tables/prescreen_block1.csv" in output
    assert "runs/target/cnn_scratch/scratch/none/seed0" in output
    assert "feature_extraction/none/seed0" not in output  # decided by the checkpoint
    assert "checkpoint jobs" in output


@pytest.mark.slow
def test_tiny_study_end_to_end(tmp_path):
    """configs/test/tiny.yaml through Snakemake: tables, figures, no-op rerun, partial rerun, report."""
    config = ROOT / "configs/test/tiny.yaml"
    study = yaml.safe_load(config.read_text())
    results = tmp_path / study["results"]
    _run_study(tmp_path, config, [])

    import pandas as pd

    table = pd.read_csv(results / "tables/study.csv")
    assert len(table) == 6
    assert set(table["status"]) == {"ok"}, table[["strategy", "status"]]
    # every run was forked from the workflow's job server (Keras imported once)
    forked = {
        json.loads(path.read_text())["environment"]["job_process"]
        for path in results.glob("runs/**/metrics.json")
    }
    assert forked == {"forked from the job server"}
    assert set(table["strategy"]) == {"scratch", "feature_extraction", "fine_tune"}
    assert table["test_accuracy"].between(0, 1).all()
    general = (results / "tables/target/general.html").read_text()
    assert "Test accuracy" in general
    assert (results / "tables/suspicious_runs.csv").stat().st_size > 0
    # the verdict: the cell chosen by mean validation accuracy, its test accuracy from
    # the runs' predictions.npz equal to the mean of their metrics.json test accuracies
    cells = table.groupby(["backbone", "strategy", "augmentation"])
    by_validation = cells[["val_accuracy", "test_accuracy"]].mean()
    by_validation["val_loss"] = -cells["val_loss"].mean()
    chosen = by_validation.sort_values(["val_accuracy", "val_loss"], ascending=False).index[0]
    verdict = pd.read_csv(results / "tables/verdict.csv")
    assert list(verdict["dataset"]) == ["target"]
    assert verdict["selected"][0] == "/".join(chosen)
    assert verdict["test_accuracy"][0] == pytest.approx(by_validation.loc[chosen, "test_accuracy"])
    assert verdict["ci_low"][0] <= verdict["test_accuracy"][0] <= verdict["ci_high"][0]
    assert verdict["best_scratch"][0].startswith("cnn_scratch/")  # weights: none
    assert verdict["best_pretrained"][0].startswith("cnn_source/")  # pretrained on `source`
    # one list per dataset, in validation order, with intervals and verdicts
    ranking = pd.read_csv(results / "tables/strategy_ranking.csv")
    assert list(ranking["rank"]) == [1, 2, 3, 4]
    assert "/".join(ranking.loc[0, ["backbone", "strategy", "augmentation"]]) == "/".join(chosen)
    assert ranking["verdict"][0] == "selected"
    assert set(ranking["verdict"][1:]) <= {"better", "worse", "equivalent", "inconclusive"}
    assert (ranking["validation"].diff().dropna() <= 0).all()
    front = (results / "tables/verdict.rst").read_text()
    assert front.startswith("Verdict\n") and f"``{'/'.join(chosen)}``" in front
    assert not (results / "figures/critical_difference.png").exists()  # one dataset
    for name in ("curves", "heatmaps", "pareto", "cost", "confusion_matrix", "predictions"):
        png = results / f"figures/target/{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
    assert (results / "figures/runs/target/cnn_source/fine_tune/none/seed0/curves.png").exists()
    assert (results / "features/target/cnn_source").is_dir()
    # every run that evaluated a test split (the pretraining run too) left one ledger line
    from tlbench.analysis import ledger

    looks = ledger.read(results / "test_evaluations.jsonl")
    assert sorted(line["dataset"] for line in looks) == ["source"] + ["target"] * 6
    assert len({line["spec_hash"] for line in looks}) == 7
    ledger_table = pd.read_csv(results / "tables/test_evaluations.csv").set_index("dataset")
    assert ledger_table.loc["target", "distinct run specs"] == 6
    scores = pd.read_csv(results / "tables/transferability.csv")  # cnn_scratch: random, unscored
    assert scores[["dataset", "backbone"]].values.tolist() == [["target", "cnn_source"]]
    assert np.isfinite(scores[["logme", "hscore", "knn_accuracy"]].to_numpy()).all()
    tau = pd.read_csv(results / "tables/transferability_tau.csv")
    assert set(tau["strategy"]) == {"feature_extraction", "fine_tune"}
    assert tau["weighted_tau"].isna().all()  # one backbone: undefined, and said so
    assert tau["note"].str.startswith("undefined: 1 scored backbone(s)").all()
    metrics = yaml.safe_load(
        (results / "runs/target/cnn_scratch/scratch/flip/seed1/metrics.json").read_text()
    )
    assert metrics["run"] == {
        "dataset": "target",
        "backbone": "cnn_scratch",
        "strategy": "scratch",
        "augmentation": "flip",
        "seed": 1,
    }

    # a second invocation has nothing to do
    assert _dry_counts(tmp_path, config, []) == {}

    # the run spec is a param: a new learning rate for fine_tune reruns that run only
    changed = yaml.safe_load(config.read_text())
    changed["strategies"]["fine_tune"]["training"] = {"learning_rate": 0.01}
    changed_path = tmp_path / "changed.yaml"
    changed_path.write_text(yaml.safe_dump(changed))
    counts = _dry_counts(tmp_path, changed_path, ["--quiet", "rules"])
    assert counts["trained_run"] == 1, counts
    assert "prepared_dataset" not in counts and "pretrained_backbone" not in counts

    # deleting one run reruns that run and the aggregation only
    shutil.rmtree(results / "runs/target/cnn_scratch/scratch/flip/seed1")
    counts = _dry_counts(tmp_path, config, ["--quiet", "rules"])
    assert counts["trained_run"] == 1
    assert counts["training_curves"] == 1
    assert counts["study_csv"] == 1
    for rule in ("prepared_dataset", "pretrained_backbone", "backbone_features"):
        assert rule not in counts, counts
    _run_study(tmp_path, config, [])
    looks = ledger.read(results / "test_evaluations.jsonl")  # the rerun looked once more
    assert len(looks) == 8 and len({line["spec_hash"] for line in looks}) == 7

    report = tmp_path / "report.html"
    _run_study(tmp_path, config, ["--report", str(report)])
    general = embedded_result(report, f"{study['results']}/tables/target/general.html")
    assert "<table>" in general and "Test accuracy" in general
    assert "cnn_source_fine_tune" in general
    for figure in ("figures/target/pareto.png", "environment/environment.html"):
        assert embedded_result(report, f"{study['results']}/{figure}")
    # the report opens on the verdict: its front section comes before the study description
    text = report.read_text()
    assert 0 <= text.find("The budget answer") < text.find("What the study compares")
    # the answer's figure opens it (tests/test_answer_figure.py: on the first screen)
    assert 0 <= text.find("tlbench-verdict-figure") < text.find("The budget answer")
    verdict_html = embedded_result(report, f"{study['results']}/tables/verdict.html")
    assert "<table>" in verdict_html and "cheapest_as_good" in verdict_html


@pytest.mark.slow
def test_pilot_study_seals_the_test_split(tmp_path):
    """--config pilot=true: runs on a prepared folder without test files, no ledger line,
    validation figures in the tables, the report's front page says the test split is sealed."""
    config = yaml.safe_load((ROOT / "configs/test/tiny.yaml").read_text())
    config["matrix"] = [{"datasets": ["target"], "backbones": ["cnn_scratch"],
                         "strategies": ["scratch"], "augmentations": ["none"]}]  # fmt: skip
    path = tmp_path / "pilot.yaml"
    path.write_text(yaml.safe_dump(config))
    results = tmp_path / config["results"]
    _run_study(tmp_path, path, [f"{config['results']}/prepared/target", "--config", "pilot=true"])
    for name in ("test_x.npy", "test_y.npy"):
        (results / "prepared/target" / name).unlink()
    _run_study(tmp_path, path, ["--config", "pilot=true"])
    metrics = yaml.safe_load(
        (results / "runs/target/cnn_scratch/scratch/none/seed0/metrics.json").read_text()
    )
    assert metrics["pilot"] is True and metrics["test"] is None
    assert not (results / "test_evaluations.jsonl").exists()
    general = (results / "tables/target/general.md").read_text()
    assert "Validation accuracy" in general and "Test accuracy" not in general
    looks = (results / "tables/test_evaluations.csv").read_text()
    assert "target,0,0,0" in looks
    assert "the test split is sealed" in (results / "tables/verdict.rst").read_text()
    report = tmp_path / "report.html"
    _run_study(tmp_path, path, ["--config", "pilot=true", "--report", str(report)])
    assert "Pilot study: the test split is sealed." in html.unescape(report.read_text())


@pytest.mark.slow
@pytest.mark.shared
def test_hymenoptera_study_with_imagenet_weights(tmp_path, monkeypatch):
    """configs/test/hymenoptera.yaml (MobileNetV2 ImageNet, real images) and its rendered report."""
    datasets = require_shared("datasets", "hymenoptera")
    keras_home = require_shared("keras", "models").parent
    # as a (small) reproduction of seed 002: its results-page section is written too
    study = yaml.safe_load((ROOT / "configs/test/hymenoptera.yaml").read_text())
    study["seed_study"] = {"reference": "002", "substitutions": ["a small test study"]}
    config = tmp_path / "hymenoptera_seed002.yaml"
    config.write_text(yaml.safe_dump(study))
    env = {"KERAS_HOME": str(keras_home)}
    mirror = ["--config", f"data_mirror={datasets.parent}"]
    _run_study(tmp_path, config, mirror, env=env)
    results = tmp_path / study["results"]

    import pandas as pd

    table = pd.read_csv(results / "tables/study.csv")
    assert set(table["status"]) == {"ok"}
    feature_extraction = table[table["strategy"] == "feature_extraction"]["test_accuracy"]
    assert feature_extraction.min() > 0.7, table  # ImageNet features separate ants from bees

    section = (tmp_path / "docs/results/seed002.md").read_text()
    assert section.startswith("## Seed 002") and "- a small test study" in section
    auc = f"{table.groupby('strategy')['test_roc_auc'].mean().max():.4f}"
    assert auc in section  # the best cell's mean ROC AUC, in the acceptance table
    assert "### Verdict" in section  # from tables/verdict.csv: chosen by validation, outcomes
    page = (tmp_path / "docs/results.md").read_text()
    assert page.startswith("# Results") and section in page
    # written from its evidence alone: `make results-pages` rebuilds the same section and
    # page with the results folder gone (tlbench.report.pages.results_pages)
    assert (tmp_path / "docs/results/seed002.evidence.zip").is_file()
    assert "[seed002.evidence.zip](results/seed002.evidence.zip)" in page
    moved = results.rename(tmp_path / "results_moved")
    rebuilt = tmp_path / "rebuilt"
    shutil.copytree(tmp_path / "docs/results", rebuilt)
    monkeypatch.chdir(tmp_path)  # where the config the evidence names lies
    results_pages.rebuild(rebuilt, tmp_path / "rebuilt.md")
    assert (rebuilt / "seed002.md").read_text() == section
    assert (tmp_path / "rebuilt.md").read_text() == page
    moved.rename(results)

    report = tmp_path / "report.html"
    _run_study(tmp_path, config, [*mirror, "--report", str(report)], env=env)
    general = embedded_result(report, f"{study['results']}/tables/hymenoptera/general.html")
    assert "Test accuracy" in general and "mobilenetv2_035_feature_extraction" in general
    seed_page = embedded_result(report, f"{study['results']}/results/seed_results.html")
    assert "Seed 002" in seed_page and "<table>" in seed_page

    require_chromium("the report was built but not rendered in a browser")
    ARTIFACTS.mkdir(exist_ok=True)
    # the report itself: the app renders its navigation and the study description
    dom = browser(report, ARTIFACTS / "hymenoptera_report.png")
    for text in ("Tables", "Per dataset", "Environment", "hymenoptera"):
        assert text in dom, f"{text!r} not rendered in the report"
    # the general table as the report embeds it (the report shows it in an iframe)
    table_page = ARTIFACTS / "hymenoptera_general_table.html"
    table_page.write_text(general)
    dom = browser(table_page, ARTIFACTS / "hymenoptera_general_table.png")
    assert "Test accuracy" in dom and "mobilenetv2_035_fine_tune" in dom


def browser(page: Path, screenshot: Path) -> str:
    """Render ``page`` in headless Chromium: save a screenshot, return the visible text."""
    chromium(page, "--window-size=1400,1000", f"--screenshot={screenshot}")
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", screenshot
    return rendered_text(chromium(page, "--window-size=1400,1000", "--dump-dom"))


def first_screen(page: Path) -> str:
    """The text on the first screen (1400 x 1000) of ``page`` in headless Chromium, read by
    tests/data/first_screen.html from inside the browser (what is laid out in view, not
    what the DOM holds further down or above the top edge)."""
    wrapper = page.with_name(f"first_screen_{page.stem}.html")
    template = (ROOT / "tests/data/first_screen.html").read_text()
    wrapper.write_text(template.replace('src="REPORT"', f'src="{page.name}"'))
    dom = chromium(
        wrapper, "--allow-file-access-from-files", "--window-size=1400,1000", "--dump-dom"
    )
    shown = re.search(r'<pre id="visible">(.*?)</pre>', dom, re.DOTALL)
    assert shown, dom[-2000:]
    return re.sub(r"\s+", " ", html.unescape(shown.group(1)))


@pytest.mark.slow
def test_compare_on_a_folder_prints_the_answer_and_writes_the_report(tmp_path):
    """`tlbench compare PATH` on a tiny folder of class folders: the config, the estimate,
    the workflow, the answer in the terminal (the ranking's first cell), report.html whose
    first screen in Chromium shows the verdict."""
    from PIL import Image

    keras_home = require_shared("keras", "models").parent
    rng = np.random.default_rng(0)
    for c, colour in enumerate([(200, 40, 40), (40, 200, 40), (40, 40, 200)]):
        (tmp_path / "photos" / f"kind{c}").mkdir(parents=True)
        for i in range(20):
            pixels = np.clip(rng.normal(colour, 40, size=(40, 40, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(tmp_path / "photos" / f"kind{c}" / f"{i}.png")
    env = {
        **os.environ,
        "KERAS_HOME": str(keras_home),
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "PATH": f"{SNAKEMAKE.parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    command = [str(SNAKEMAKE.with_name("tlbench")), "compare", "photos", "--cores", "2"]
    command += ["--backbone", "mobilenet_25", "--image-size", "32", "--epochs", "2"]
    result = subprocess.run(
        [*command, "--seeds", "1"], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=1800,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-10000:]
    out = result.stdout
    assert "photos: 3 classes, 60 images" in out and "estimated time:" in out, out
    study = yaml.safe_load((tmp_path / "tlbench-study.yaml").read_text())
    assert study["datasets"]["photos"]["source"] == str(tmp_path / "photos")

    import pandas as pd

    ranking = pd.read_csv(tmp_path / "results/tables/strategy_ranking.csv")
    best = ranking.sort_values("rank").iloc[0]
    chosen = f"{best['backbone']}/{best['strategy']}/{best['augmentation']}"
    answer = out[out.index("photos: chosen by validation") :].splitlines()
    said = [line for line in answer if line.startswith("  validation cannot tell it from")]
    answer = [line for line in answer if line not in said]  # when validation cannot choose
    assert answer[0] == f"photos: chosen by validation: {chosen}", out
    assert answer[1].startswith(f"  test accuracy {best['test_accuracy']:.3f} (95 % interval")
    assert answer[2].startswith("  shown as good as it on test") and "cheapest" in answer[4]
    assert answer[3].startswith("  not told apart from it (inconclusive")
    assert answer[5] == f"report: {tmp_path / 'report.html'}"
    assert answer[6].startswith("measured time: ")
    assert (tmp_path / "report.html").stat().st_size > 0
    require_chromium("the report was written but not opened")
    shown = first_screen(tmp_path / "report.html")
    assert "Verdict" in shown and chosen in shown, shown[:2000]


def test_conda_env_pins_match_requirements():
    """envs/tlbench.yaml (the jobs' conda env) pins exactly what requirements.txt pins."""
    requirements = [
        line.strip()
        for line in (ROOT / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    env = yaml.safe_load((ROOT / "envs/tlbench.yaml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    assert sorted(pip) == sorted(requirements)


def test_no_deps_pins_are_installed_by_the_makefile_and_the_conda_env():
    """requirements-no-deps.txt (keras-hub, whose tensorflow-text would pull the full
    tensorflow over tensorflow-cpu) is installed without dependencies in both places."""
    pins = [
        line.strip()
        for line in (ROOT / "requirements-no-deps.txt").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert pins
    post_deploy = (ROOT / "envs/tlbench.post-deploy.sh").read_text()
    assert f"pip install --no-deps {' '.join(pins)}" in post_deploy
    assert "--no-deps -r requirements-no-deps.txt" in (ROOT / "Makefile").read_text()


@pytest.mark.slow
def test_new_users_image_folder_runs_from_a_few_line_config(tmp_path):
    """A folder of class subfolders the project has never seen, and a config of a few lines."""
    from PIL import Image

    rng = np.random.default_rng(0)
    photos = tmp_path / "my photos"
    for c, colour in enumerate([(200, 40, 40), (40, 200, 40), (40, 40, 200)]):
        (photos / f"kind {c}").mkdir(parents=True)
        for i in range(15):
            pixels = np.clip(rng.normal(colour, 40, size=(20, 24, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(photos / f"kind {c}" / f"img{i}.png")
    config = tmp_path / "my_study.yaml"
    config.write_text(
        f"datasets:\n  mine: {{loader: folder, source: '{photos}', image_size: 16}}\n"
        "backbones:\n  cnn: {name: small_cnn, weights: none, kwargs: {widths: [4, 8]}}\n"
        "strategies:\n  scratch: {name: scratch, training: {epochs: 2}}\n"
        "augmentations:\n  none: {name: none}\n"
        "seeds: [0]\n"
        "matrix:\n  - {datasets: [mine], backbones: [cnn], strategies: [scratch], augmentations: [none]}\n"
    )
    assert len(config.read_text().splitlines()) <= 12
    _run_study(tmp_path, config, [])

    import pandas as pd

    table = pd.read_csv(tmp_path / "results/tables/study.csv")
    assert list(table["status"]) == ["ok"]
    manifest = yaml.safe_load((tmp_path / "results/prepared/mine/manifest.json").read_text())
    classes = yaml.safe_load((tmp_path / "results/prepared/mine/classes.json").read_text())
    assert classes == ["kind 0", "kind 1", "kind 2"]
    assert sum(manifest["counts"].values()) == 45


def test_dry_run_of_a_budget_axis_has_one_run_per_cell_budget_and_seed(tmp_path):
    """Label budgets (tlbench.datasets.budget) multiply the runs, not the feature caches."""
    config = yaml.safe_load((ROOT / "configs/test/tiny.yaml").read_text())
    config["datasets"]["target"]["budgets"] = [2, 0.5, "all"]
    path = tmp_path / "budgets.yaml"
    path.write_text(yaml.safe_dump(config))
    counts = _dry_counts(tmp_path, path, [])
    cells_by_seed = 1 * 2 * 2 + 2 * 1  # (cells x seeds) of the two blocks
    assert counts["trained_run"] == cells_by_seed * 3
    assert counts["training_curves"] == 1  # one job per dataset draws every run's curves
    assert counts["backbone_features"] == 1  # one cache per (dataset, backbone)
    assert counts["learning_curves"] == 1
