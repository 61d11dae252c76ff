"""A measured study's evidence (tlbench.analysis.evidence) and `make results-pages`
(tlbench.report.pages.results_pages): the committed results page is what the committed
evidence gives."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tlbench.analysis import runs
from tlbench.analysis.evidence import SUFFIX, evidence_path, read_evidence, write_evidence
from tlbench.report.pages import results_pages

ROOT = Path(__file__).resolve().parents[1]


def _run(folder: Path, rng: np.random.Generator, classes: int, n: int = 50) -> Path:
    folder.mkdir(parents=True)
    y_true = rng.integers(0, classes, n)
    prob = rng.dirichlet(np.ones(classes), n).astype(np.float32)
    np.savez(
        folder / "predictions.npz",
        y_true=y_true.astype(np.int64),
        y_prob=prob,
        classes=np.array([f"c{i}" for i in range(classes)]),
        split=np.array("test"),
        groups=np.repeat(np.arange(n // 5), 5),
        val_y_true=y_true[:20],
        val_y_pred=rng.integers(0, classes, 20),
    )
    history = {"epoch": [1, 2], "phase": "head", "loss": [1.0, 0.5], "accuracy": [0.4, 0.6]}
    history.update({"val_loss": [1.1, 0.7], "val_accuracy": [0.3, 0.5]})
    pd.DataFrame(history).to_csv(folder / "history.csv", index=False)
    return folder


@pytest.mark.parametrize("classes", [2, 43])
def test_evidence_keeps_what_the_pages_read_and_is_the_same_bytes_each_time(tmp_path, classes):
    rng = np.random.default_rng(classes)
    paths = [str(_run(tmp_path / "results" / f"run{i}", rng, classes)) for i in range(3)]
    study = pd.DataFrame(
        {
            "dataset": "d",
            "seed": [0, 1, 2, 3],
            "status": ["ok"] * 3 + ["failed"],
            "path": [*paths, str(tmp_path / "results" / "failed")],
        }  # fmt: skip
    )
    looks = {"machine_ledger": "~/.local/share/tlbench/test_evaluations.jsonl",
             "study_ledger": "results/test_evaluations.jsonl",
             "datasets": [{"dataset": "d", "run_specs": 3, "evaluations": 4}]}  # fmt: skip
    one, two = tmp_path / f"one{SUFFIX}", tmp_path / f"two{SUFFIX}"
    for target in (one, two):
        write_evidence(target, study, looks=looks, meta={"configs": ["c.yaml"]})
    assert one.read_bytes() == two.read_bytes()  # regenerated evidence is unchanged in git
    assert not any(n.endswith("y_prob.npy") for n in zipfile.ZipFile(one).namelist())

    evidence = read_evidence(one, tmp_path / "unpacked")
    assert evidence.meta["configs"] == ["c.yaml"]
    assert evidence.looks == looks  # the counts the section was generated with
    assert list(evidence.study["seed"]) == [0, 1, 2, 3]
    for original, unpacked in zip(paths, evidence.study["path"], strict=False):
        y_true, correct = runs.read_predicted(original)
        y_true2, correct2 = runs.read_predicted(unpacked)
        np.testing.assert_array_equal(y_true, y_true2)
        np.testing.assert_array_equal(correct, correct2)  # the verdict's input, unchanged
        np.testing.assert_array_equal(runs.read_groups(original), runs.read_groups(unpacked))
        pd.testing.assert_frame_equal(runs.read_history(original), runs.read_history(unpacked))
        with (
            np.load(Path(original) / "predictions.npz") as a,
            np.load(Path(unpacked) / "predictions.npz") as b,
        ):
            np.testing.assert_array_equal(a["val_y_pred"], b["val_y_pred"])
            if classes == 2:  # ROC AUC's input
                np.testing.assert_allclose(a["y_prob"][:, 1], b["p_pos"])
            else:
                assert "p_pos" not in b.files
    failed = Path(evidence.study["path"].iloc[3])
    assert failed.is_dir() and not any(failed.iterdir())  # a failed run: no predictions


def test_evidence_path_is_beside_its_section():
    assert evidence_path("docs/results/seed002.md") == Path(f"docs/results/seed002{SUFFIX}")


def test_the_committed_results_page_is_what_the_committed_evidence_gives(tmp_path, monkeypatch):
    """`make results-pages` in a copy of docs/results: every section with evidence and
    the page come out as committed."""
    committed = ROOT / "docs" / "results"
    folder = tmp_path / "results"
    shutil.copytree(committed, folder)
    page = tmp_path / "results.md"
    monkeypatch.chdir(ROOT)  # the configs the evidence names are read from the project
    written = results_pages.rebuild(folder, page)
    assert page.read_text() == (ROOT / "docs" / "results.md").read_text()
    rebuilt = [p for p in written if p.parent == folder]
    assert len(rebuilt) == 2 * len(list(committed.glob(f"*{SUFFIX}")))
    for path in rebuilt:
        assert path.read_text() == (committed / path.name).read_text(), path.name


def test_evidence_written_before_the_machine_ledger_reads_its_study_s_looks(tmp_path):
    """A looks.csv (the study ledger's table, before the machine's ledger) is read as the
    study's own looks, and its section says so."""
    from tlbench.analysis.lookcount import looks_sentence

    target = tmp_path / f"old{SUFFIX}"
    write_evidence(target, pd.DataFrame({"dataset": ["d"], "seed": [0]}))
    old = pd.DataFrame({"dataset": ["d"], "distinct run specs": [2], "test evaluations": [3],
                        "prepared versions": [1], "first": ["t0"], "last": ["t1"]})  # fmt: skip
    with zipfile.ZipFile(target, "a") as archive:
        archive.writestr("looks.csv", old.to_csv(index=False))
    looks = read_evidence(target, tmp_path / "unpacked").looks
    assert looks["machine_ledger"] is None
    assert looks["datasets"][0]["run_specs"] == 2 and looks["datasets"][0]["last"] == "t1"
    assert looks_sentence(looks) == "d: 2 distinct run specs (3 evaluations)"
    from test_results import _run

    from tlbench.analysis.tables import wall_time
    from tlbench.report.pages import results as pages

    df = pd.DataFrame([_run("scratch", 0, 0.9)]).assign(dataset="d")
    blocks, counts = pages.study_header(df, {"config": "c", "results": "r"}, wall_time(df), looks)
    text = pages.to_markdown(blocks)
    assert "counted before the machine's ledger, so looks by other studies are not in it" in text
    assert counts == {"d": 2}


def test_section_settings_merge_configs_and_cli_values_as_snakemake_does(tmp_path):
    """A later config file and ``--config`` values override nested keys one by one (as
    ``snakemake --configfile a b --config ...`` does); the rest of the block is kept."""
    override = tmp_path / "override.yaml"
    override.write_text("verdict: {margin: 0.05}\nresults_section: {title: Renamed}\n")
    meta = {
        "configs": [str(ROOT / "configs" / "measured" / "across_datasets.yaml"), str(override)],
        "cli_config": {"verdict": {"reps": "300"}},
    }
    params, verdict = results_pages.section_settings(meta)
    assert params["title"] == "Renamed"
    assert params["substitutions"], "the first file's substitutions are kept"
    assert params["results"] == "results/across_datasets"
    assert verdict["margin"] == 0.05
    assert verdict["reps"] == 300


def test_a_section_names_the_cheapest_cell_by_the_study_s_verdict_cost(tmp_path, monkeypatch):
    """The section's verdict is computed with the config's ``verdict.cost`` as the
    report's is (not the default), so both name the same cheapest cell."""
    from types import SimpleNamespace

    from tlbench.report.pages import sections

    seen = {}

    def fake_write_verdict(study, table, ranking, front, **kwargs):
        seen.update(kwargs)
        for stem in (table, ranking):
            pd.DataFrame({"dataset": ["d"]}).to_csv(f"{stem}.csv", index=False)

    monkeypatch.setattr(sections, "write_verdict", fake_write_verdict)
    settings = {"margin": 0.02, "reps": 300, "seed": 1, "cost": "train_seconds"}
    sections.verdict_tables(SimpleNamespace(study=pd.DataFrame()), settings, tmp_path)
    assert seen == {"margin": 0.02, "reps": 300, "seed": 1, "cost": "train_seconds"}
