"""The sections of measured studies that are not seed studies (tlbench.report.pages.studies)."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
from test_results import _config, _run
from verdict_helpers import write_budget_study, write_run

from tlbench.analysis import runs
from tlbench.analysis.verdict.assess import assess, ranking
from tlbench.core.errors import StudyConfigError
from tlbench.report.pages import results, results_pages, studies, transferability
from tlbench.study.load import load_study

#: measured test accuracy of feature_extraction per backbone (linear_probe: 0.01 lower)
ACCURACY = {"b1": 0.70, "b2": 0.80, "b3": 0.90, "b4": 0.60}


def _study() -> pd.DataFrame:
    rows = []
    for backbone, acc in ACCURACY.items():
        for seed in (0, 1):
            rows.append(
                _run("feature_extraction", seed, acc, backbone=backbone, train_seconds=10.0)
            )
        rows.append(_run("linear_probe", 0, acc - 0.01, backbone=backbone, train_seconds=0.5))
    return pd.DataFrame(rows)


def _scores() -> pd.DataFrame:
    """LogME orders the backbones as the accuracy does; k-NN in reverse."""
    rows = []
    for backbone, acc in ACCURACY.items():
        rows.append({"dataset": "gtsrb", "backbone": backbone, "weights": "imagenet",
                     "input_size": 96, "logme": acc * 10, "logme_seconds": 0.05,
                     "hscore": math.nan, "hscore_seconds": 0.01,
                     "knn_accuracy": 1 - acc, "knn_accuracy_seconds": 0.2,
                     "leep": -0.5 if backbone == "b1" else math.nan,
                     "leep_seconds": 0.001 if backbone == "b1" else math.nan,
                     "source_predict_seconds": 2.0 if backbone == "b1" else math.nan,
                     "note": "hscore: undefined (N <= D)"
                     + ("" if backbone == "b1" else "; leep: no source classifier")})  # fmt: skip
    return pd.DataFrame(rows)


def test_tiny_features_are_shown_with_their_rms_and_explained():
    """A random-init control's features of RMS 1e-17: the table shows the RMS as text
    (rounding would make it 0) and the page says what is scale-free and what is not."""
    df = _study()
    scores = _scores().assign(feature_rms=[0.4, 2e-17, 0.3, 1.2])
    beside = transferability.scores_beside_accuracy(scores, df).set_index("backbone")
    assert list(beside["feature RMS"]) == [f"{v:.1e}" for v in scores["feature_rms"]]
    (note,) = transferability.tiny_features_note(scores)
    tiny = scores.loc[scores["feature_rms"] < 1e-6, "backbone"].tolist()
    assert note.startswith(f"Tiny features: {tiny[0]} (2e-17)")
    assert "invariant to the features' scale" in note
    assert transferability.tiny_features_note(scores.assign(feature_rms=1.0)) == []
    assert transferability.tiny_features_note(_scores()) == []


def test_transferability_section_puts_scores_beside_accuracy_with_tau_and_cost():
    from tlbench.analysis.transferability.tau import tau_table

    df, scores = _study(), _scores()
    tau = tau_table(scores, df)
    study = {"title": "Transferability", "page": "docs/results/transfer.md",
             "config": "c.yaml", "results": "results/t"}  # fmt: skip
    blocks, summary = studies.study_section(df, study, scores=scores, tau=tau)
    page = results.to_markdown(blocks)
    assert page.startswith("## Transferability")
    assert summary["section"] == "transfer" and summary["runs"] == 12

    beside = transferability.scores_beside_accuracy(scores, df)
    row = beside.set_index("backbone").loc["b3"]
    assert row["FE test"] == pytest.approx(0.90) and row["LP test"] == pytest.approx(0.89)
    assert row["LogME"] == pytest.approx(9.0)

    pivot = transferability.tau_pivot(tau).set_index(["strategy", "accuracy"])
    assert pivot.loc[("feature_extraction", "test"), "LogME"] == "+1.00 [+1.00, +1.00]"
    assert pivot.loc[("feature_extraction", "test"), "k-NN val acc"] == "-1.00 [-1.00, -1.00]"
    assert pivot.loc[("feature_extraction", "test"), "H-score"] == ""

    findings = transferability.tau_findings(tau)
    logme = next(line for line in findings if line.startswith("LogME"))
    assert "against test accuracy mean +1.00 over 2" in logme and "2 of 2 positive" in logme
    # three backbones in a perfect order: the bootstrap interval is [1, 1], the
    # permutation p-value 1/3 (two-sided, exact): the findings say both
    assert "2 of 2 with a permutation p-value of 0.05 or more" in logme
    knn = next(line for line in findings if line.startswith("k-NN"))
    assert "mean -1.00" in knn and "0 of 2 positive and 2 negative" in knn
    assert any(line.startswith("H-score: undefined") for line in findings)

    cost = transferability.cost_table(scores, df).set_index("score")
    assert cost.loc["LogME", "FE / score"] == pytest.approx(10.0 / 0.05)
    assert cost.loc["LogME", "LP / score"] == pytest.approx(0.5 / 0.05)
    assert "H-score" not in cost.index  # undefined everywhere: no cost to report
    # LEEP: defined for one backbone, its cost with the source model's predictions
    assert cost.loc["LEEP", "backbones"] == 1
    assert cost.loc["LEEP", "seconds per backbone"] == pytest.approx(2.001)
    assert page.count("- leep: no source classifier") == 1  # notes: each statement once
    assert "What scoring costs" in page and "hscore: undefined (N <= D)" in page


def test_verdict_rows_are_in_the_section():
    verdict = pd.DataFrame([{"dataset": "gtsrb", "selected": "b3 / feature_extraction / none",
                             "test_accuracy": 0.9, "ci_low": 0.88, "ci_high": 0.92,
                             "equivalent": "b2 / linear_probe / none [-0.0050, +0.0010]",
                             "transfer_gain": 0.1, "gain_low": 0.05, "gain_high": 0.15,
                             "gain_verdict": "better", "cheapest_as_good": "b2 / linear_probe / none",
                             "val_n": 400, "val_groups": 20, "val_se": 0.05,
                             "val_warning": "Validation cannot choose: ...",
                             "val_close": "b2 / linear_probe / none",
                             "margin": 0.01}])  # fmt: skip
    study = {"title": "T", "page": "docs/results/t.md", "config": "c", "results": "r"}
    page = results.to_markdown(studies.study_section(_study(), study, verdict=verdict)[0])
    assert "0.900 [0.880, 0.920]" in page and "+0.100 [+0.050, +0.150] better" in page
    assert "b2 / linear_probe / none [-0.0050, +0.0010]" in page
    assert "no: b2 / linear_probe / none" in page  # validation could not choose
    assert "- gtsrb: Validation cannot choose: ..." in page
    assert "tied" not in page


def test_page_lists_other_studies_after_the_seeds(tmp_path):
    (tmp_path / "seed002.md").write_text("## Seed 002\n")
    seed = {"seed": "002", "title": "t", "config": "c", "runs": 3, "wall_seconds": 60.0,
            "checks": [{"met": "yes"}]}  # fmt: skip
    (tmp_path / "seed002.json").write_text(json.dumps(seed))
    (tmp_path / "alpha.md").write_text("## Alpha study\n")
    other = {"section": "alpha", "page": "docs/results/alpha.md", "title": "Alpha study",
             "config": "configs/measured/alpha.yaml", "runs": 7, "wall_seconds": 120.0}  # fmt: skip
    (tmp_path / "alpha.json").write_text(json.dumps(other))
    page = results_pages.page_from_files([tmp_path / "alpha.json", tmp_path / "seed002.json"])
    assert page.index("## Seed 002") < page.index("## Alpha study")
    assert "[Alpha study](results/alpha.md)" in page and "2 min 00 s" in page
    assert page.count("not measured yet") == 4  # the seed overview is unchanged


def test_results_section_block_is_validated_and_excludes_a_seed_study():
    block = {"title": "T", "page": "docs/results/t.md"}
    assert load_study(_config(results_section=block)).results_section == block
    assert load_study(_config()).results_section is None
    with pytest.raises(StudyConfigError, match="results_section.page"):
        load_study(_config(results_section={"title": "T", "page": "elsewhere/t.md"}))
    with pytest.raises(StudyConfigError, match="results_section"):
        load_study(_config(results_section={"title": "T"}))
    with pytest.raises(StudyConfigError, match="one of seed_study and results_section"):
        load_study(_config(results_section=block, seed_study={"reference": "003"}))


def _budget_study(root) -> pd.DataFrame:
    """Transfer (FE) ahead of scratch at 5 and 10 images per class, level at 'all', and
    (for a crossover) scratch ahead of a linear probe at 'all' only."""
    cells = {"mnv2/feature_extraction/none": {}, "mnv2/scratch/none": {},
             "mnv2/linear_probe/none": {}}  # fmt: skip
    for budget, per_class, fe, scratch, probe in (
        ("n5", 5, 0.80, 0.40, 0.60), ("n10", 10, 0.85, 0.60, 0.61), ("all", 80, 0.90, 0.90, 0.62)
    ):  # fmt: skip
        for name, acc in zip(cells, (fe, scratch, probe), strict=True):
            cells[name][budget] = (per_class, [acc - 0.005, acc, acc + 0.005], 0)
    return write_budget_study(root, cells)


def test_budget_section_has_curves_crossovers_and_the_gain_per_budget(tmp_path):
    df = _budget_study(tmp_path)
    verdict = pd.DataFrame([
        {"dataset": "digits", "budget": b, "gain_verdict": v} for b, v in
        (("n5", "better"), ("n10", "better"), ("all", "equivalent"))])  # fmt: skip
    blocks = studies.budget_blocks(df, verdict, {"margin": 0.01, "reps": 300, "seed": 0})
    page = results.to_markdown(blocks)
    table = next(content for kind, content in blocks if kind == "table")
    assert list(table.columns) == [
        "cell", "5 images per class", "10 images per class", "'all' (80 per class)"]  # fmt: skip
    fe = table.set_index("cell").loc["mnv2/feature_extraction/none"]
    assert fe["5 images per class"].startswith("0.800 [")
    crossover = next(content for kind, content in blocks if kind == "ul")
    assert crossover == [
        "linear_probe beats scratch up to 5 images per class; at 10 images per class the "
        "data cannot tell them apart; from 'all' on scratch beats linear_probe."
    ]
    assert "paired bootstrap" in page and "tied" not in page
    assert "better at 5 images per class, 10 images per class; equivalent at 'all'" in page
    assert "same 50 validation images" in page
    assert studies.budget_blocks(_study()) == []  # no budgets: no such part


def test_cells_part_shows_validation_beside_test_and_only_without_other_tables():
    df = pd.DataFrame([_run("fine_tune", s, 0.9 + 0.01 * s, val_accuracy=0.8) for s in range(3)])
    study = {"title": "T", "page": "docs/results/t.md", "config": "c", "results": "r"}
    blocks, _ = studies.study_section(df, study)
    table = next(content for kind, content in blocks if kind == "table")
    columns = list(table.columns)
    assert columns.index("val accuracy") == columns.index("test accuracy") - 1
    assert table["val accuracy"].iloc[0].startswith("0.800")
    assert table["test accuracy"].iloc[0].startswith("0.910")
    from tlbench.analysis.transferability.tau import tau_table

    scores = _scores()
    with_scores, _ = studies.study_section(
        _study(), study, scores=scores, tau=tau_table(scores, _study())
    )
    assert ("h3", "Every cell (mean ± sd over seeds)") not in with_scores


def test_no_transferability_part_when_too_few_backbones_are_scored():
    from tlbench.analysis.transferability.tau import tau_table

    df, scores = _study(), _scores()
    two = scores[scores["backbone"].isin(["b1", "b2"])]
    study = {"title": "T", "page": "docs/results/t.md", "config": "c", "results": "r"}
    blocks, _ = studies.study_section(df, study, scores=two, tau=tau_table(two, df))
    heads = [content for kind, content in blocks if kind == "h3"]
    assert "Do the scores rank the backbones as training does?" not in heads
    assert "Every cell (mean ± sd over seeds)" in heads
    blocks, _ = studies.study_section(df, study, scores=scores, tau=tau_table(scores, df))
    assert "Do the scores rank the backbones as training does?" in [
        c for k, c in blocks if k == "h3"
    ]


def test_substitutions_of_a_results_section_are_on_its_page_under_the_header():
    df = pd.DataFrame([_run("fine_tune", s, 0.9, val_accuracy=0.8) for s in range(3)])
    study = {"title": "T", "page": "docs/results/t.md", "config": "c", "results": "r"}
    plain, _ = studies.study_section(df, study)
    assert "Substitutions" not in results.to_markdown(plain)
    notes = ["budget 'all' not run: seed 000 runs it", "shared the cores at nice 19"]
    blocks, _ = studies.study_section(df, {**study, "substitutions": notes})
    listed = [("p", "Substitutions forced by this machine:"), ("ul", notes)]
    assert blocks[2:4] == listed
    # after the header, before the rest
    assert results.to_markdown(blocks) == results.to_markdown(plain[:2] + listed + plain[2:])


def test_earlier_test_looks_are_validated_at_parse_time():
    looks = {"d": {"count": 9, "note": "nine pilots scored on test (commit abc)"}}
    block = {"title": "T", "page": "docs/results/t.md", "earlier_test_looks": looks}
    assert load_study(_config(results_section=block)).results_section["earlier_test_looks"] == looks
    seed = {"reference": "003", "earlier_test_looks": looks}
    assert load_study(_config(seed_study=seed)).seed_study["earlier_test_looks"] == looks
    with pytest.raises(StudyConfigError, match="earlier_test_looks: gtsrb is not a dataset"):
        load_study(_config(seed_study={**seed, "earlier_test_looks": {"gtsrb": looks["d"]}}))
    for bad in ({"count": 0, "note": "x"}, {"count": 9}, {"count": 9, "note": ""}):
        with pytest.raises(StudyConfigError, match="earlier_test_looks"):
            load_study(_config(results_section={**block, "earlier_test_looks": {"d": bad}}))


def test_each_cell_is_shown_against_the_chosen_one_with_its_outcome_and_cost(tmp_path):
    """The methods section's table: the validation-chosen cell first, then each cell's
    difference with its simultaneous interval and outcome (a clearly worse cell reads
    worse, a close one inconclusive), its cost beside it; none for a pilot's ranking."""
    paths = []
    for name, acc, val, seconds in (("m/fine_tune/none", 0.90, 0.9, 30.0),
                                    ("m/bitfit/none", 0.89, 0.8, 20.0),
                                    ("m/linear_probe/none", 0.50, 0.7, 2.0)):  # fmt: skip
        paths += write_run(tmp_path, name, accuracy_per_seed=[acc, acc, acc],
                           val=[val] * 3, seconds=seconds, pretrained=True)  # fmt: skip
    study = runs.collect_runs(paths)
    study["flops_seen"] = study["strategy"].map(
        {"fine_tune": 3e12, "bitfit": 3e12, "linear_probe": 2.5e11}
    )
    blocks = studies.comparison_blocks(ranking(assess(study).cells))
    table = blocks[-1][1].set_index("cell")
    assert list(table.index) == ["m/fine_tune/none", "m/bitfit/none", "m/linear_probe/none"]
    assert table.loc["m/fine_tune/none", "outcome"] == "chosen"
    assert table.loc["m/bitfit/none", "outcome"] == "inconclusive"
    assert table.loc["m/linear_probe/none", "outcome"] == "worse"
    assert table.loc["m/linear_probe/none", "difference from the chosen [95 %]"].startswith(
        "-0.400 ["
    )
    assert table.loc["m/linear_probe/none", "TFLOPs seen"] == "0.250"
    assert table.loc["m/bitfit/none", "train (s)"] == "20.0"
    assert "tied" not in results.to_markdown(blocks)
    pilot = pd.DataFrame({"dataset": ["digits"] * 2, "rank": [1, 2], "val_accuracy": [0.9, 0.8]})
    assert studies.comparison_blocks(pilot) == []
