"""The results page (tlbench.report.pages.results) and the seed studies beside their seed reports
(tlbench.report.pages.seeds)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from tlbench.analysis import tables
from tlbench.core.errors import StudyConfigError
from tlbench.report import seed_reference
from tlbench.report.pages import results, results_pages, seed_checks, seeds
from tlbench.study.load import load_study


def _run(strategy, seed, test, train=0.99, *, name=None, backbone="mnv2", aug="none", **extra):
    """One row of a study.csv (the columns tlbench.report.pages.results reads)."""
    row = {
        "dataset": "gtsrb",
        "backbone": backbone,
        "strategy": strategy,
        "augmentation": aug,
        "seed": seed,
        "backbone_arch": "MobileNetV2",
        "weights": "none" if (name or strategy) in ("scratch", "autoencoder") else "imagenet",
        "strategy_name": name or strategy,
        "augmentation_name": aug,
        "input_size": 64,
        "num_classes": 43,
        "status": "ok",
        "reason": None,
        "test_accuracy": test,
        "test_loss": 0.1,
        "test_roc_auc": 0.99,
        "train_accuracy": train,
        "train_loss": 0.05,
        "train_seconds": 100.0 + seed,
        "epochs_run": 10,
        "started_utc": f"2026-11-23T10:0{seed}:00+00:00",
        "finished_utc": f"2026-11-23T10:0{seed}:30+00:00",
        "env_git_commit": "abc123",
        "env_git_dirty": False,
        "env_cpu_count": 2,
        "env_cpu": "AMD EPYC",
        "env_cpu_simd": "avx2",
        "env_gpu": None,
        "env_keras": "3.15.1",
        "env_backend": "tensorflow",
        "env_tensorflow": "2.21.0",
        "env_python": "3.11.7",
        "path": f"runs/{strategy}/{aug}/seed{seed}",
    }
    row.update(extra)
    row.setdefault("val_accuracy", test)  # validation tracks test unless a test says otherwise
    row.setdefault("val_loss", 0.1)
    row.setdefault("val_n", 1000)
    row.setdefault("val_roc_auc", row["test_roc_auc"])
    return row


def _study(rows):
    return pd.DataFrame(rows)


STRATEGIES_0 = ["feature_extraction", "fine_tune", "two_phase", "freeze_bottom"]


def _gtsrb_study(low=0.95):
    rows = []
    for seed in range(3):
        rows.append(_run("scratch", seed, 0.97))
        rows.append(_run("discriminative_lr", seed, 0.992 if seed == 1 else 0.985))
        rows.append(_run("autoencoder", seed, 0.96))
        for strategy in STRATEGIES_0:
            rows.append(_run(strategy, seed, low if strategy == "feature_extraction" else 0.98))
    return _study(rows)


def test_cell_table_gives_mean_and_sd_per_cell_and_auc_only_for_binary_tasks():
    df = _study([_run("fine_tune", s, acc) for s, acc in enumerate([0.9, 0.92, 0.94])])
    table = results.cell_table(df)
    assert len(table) == 1
    row = table.iloc[0]
    assert row["seeds"] == 3
    assert row["test accuracy"] == "0.9200 ± 0.0200"
    assert "test ROC AUC" not in table.columns  # 43 classes
    binary = results.cell_table(df.assign(num_classes=2))
    assert binary.iloc[0]["test ROC AUC"] == "0.9900 ± 0.0000"


def test_failed_runs_are_not_averaged():
    df = _study([_run("fine_tune", 0, 0.9), _run("fine_tune", 1, 0.1, status="failed")])
    assert results.cell_table(df).iloc[0]["seeds"] == 1


def test_wall_time_spans_first_start_to_last_end():
    wall = tables.wall_time(_gtsrb_study())
    assert wall["seconds"] == 2 * 60 + 30
    assert wall["runs_seconds"] == 21 * 30
    assert results.format_seconds(3725) == "1 h 02 min 05 s"
    assert results.format_seconds(None) == "not recorded"
    assert tables.wall_time(_gtsrb_study().drop(columns="started_utc"))["seconds"] is None


def test_seed000_checks_and_disagreement_with_the_seed():
    blocks, summary = seeds.seed_section(
        _gtsrb_study(), {"reference": "000", "config": "c.yaml", "results": "r"}
    )
    checks = {c["check"]: c for c in summary["checks"]}
    best = checks["validation-selected cell's mean test accuracy"]
    assert best["met"] == "yes" and best["measured"].startswith("0.9873 (mnv2/discriminative_lr")
    assert best["selected_by"] == "validation" and best["selected"]["selected_by"] == "validation"
    every = checks["every run of every training strategy: test accuracy"]
    assert every["met"] == "yes", every
    assert every["selected_by"].startswith("none: every run is checked")
    assert checks["study wall time on 2 CPU cores"]["met"] == "yes"
    text = results.to_markdown(blocks)
    assert "## Seed 000" in text
    assert "0.9760" in text and "0.0279" in text  # the seed's fine-tuning train/test
    assert "We disagree" in text
    assert "0.9481" in text  # the seed's own overall table is on the page
    html = results.to_html(blocks)
    assert html.startswith("<html>") and "<table>" in html


def test_seed000_selects_the_cell_by_validation_and_reports_its_test_accuracy(tmp_path):
    from tlbench.core.atomic import write_json

    df = _gtsrb_study()
    # scratch: the best validation accuracy, a lower test accuracy than discriminative_lr
    df.loc[df["strategy"] == "scratch", "val_accuracy"] = 0.999
    blocks, summary = seeds.seed_section(
        df, {"reference": "000", "config": "c", "results": "r"}, looks=None
    )
    best = summary["checks"][0]
    assert best["check"] == "validation-selected cell's mean test accuracy"
    assert best["measured"].startswith("0.9700 (mnv2/scratch/none, mean over seeds; chosen by")
    assert "validation accuracy 0.9990, validation n = 1000, among 7" in best["measured"]
    assert best["met"] == "NO" and best["selected"]["cell"][2] == "scratch"
    write_json(tmp_path / "seed000.json", summary)  # as scripts/seed_results.py writes it
    saved = json.loads((tmp_path / "seed000.json").read_text())
    naming = [c for c in saved["checks"] if "(" in c["measured"]]  # checks naming a run/cell
    assert naming and all("selected_by" in c for c in naming)
    assert saved["checks"][0]["selected_by"] == "validation"
    text = results.to_markdown(blocks)
    assert "selected_by" in text
    assert "cell from random init chosen the same way (mnv2/scratch/none, 0.9990) 0.9700" in text


def test_validation_that_cannot_choose_is_said_beside_the_choice():
    rows = [_run("fine_tune", 0, 0.9, val_accuracy=0.96, val_n=100),
            _run("two_phase", 0, 0.8, val_accuracy=0.95, val_n=100)]  # fmt: skip
    check = seed_checks.selected_cell_check("test_accuracy", "test accuracy", 0.5)
    measured, met, chosen = check.measure(_study(rows), {})
    assert met and chosen.cell[2] == "fine_tune"
    assert "Validation cannot choose" in measured and "n = 100" in measured


def test_looks_at_the_test_split_are_on_the_page_and_in_the_summary(tiny_prepared, tmp_path):
    from tlbench.analysis import ledger, lookcount

    path = tmp_path / "test_evaluations.jsonl"
    for spec_hash in ("a", "b", "a"):
        ledger.append(path, {"dataset": "gtsrb", "prepared_fingerprint": "f",
                             "spec_hash": spec_hash, "time_utc": "t", "code": {}})  # fmt: skip
    blocks, summary = seeds.seed_section(
        _gtsrb_study(), {"reference": "000", "config": "c", "results": "r"},
        looks=lookcount.count_looks(path, {"gtsrb": tiny_prepared}),
    )  # fmt: skip
    assert summary["test_evaluations"] == {"gtsrb": 2}
    json.dumps(summary)  # the section's summary, test_looks included, is JSON
    assert summary["test_looks"]["datasets"][0]["run_specs"] == 2
    text = results.to_markdown(blocks)
    assert "gtsrb: 2 distinct run specs (3 evaluations; 2 of the run specs by this study" in text
    assert ledger.machine_ledger_path().parent.name in text and "this machine only" in text
    page = results_pages.results_page([summary], ["section"])
    assert "test looks" in page and "gtsrb: 2" in page and "machine-wide ledger" in page
    # a section generated before the machine's ledger is said to count its study only
    before = {k: v for k, v in summary.items() if k != "test_looks"} | {"seed": "001"}
    page = results_pages.results_page([summary, before], ["section", "old"])
    assert "for 1 section(s) generated before that ledger, by the study alone" in page
    # as is one whose evidence held its study's ledger only (lookcount.study_only_looks)
    study_only = {**summary["test_looks"], "machine_ledger": None}
    page = results_pages.results_page([summary, {**before, "test_looks": study_only}], ["a", "b"])
    assert "for 1 section(s) generated before that ledger, by the study alone" in page


def test_the_overview_names_the_cpu_beside_each_wall_time():
    """CPUs differ several-fold: the page's overview names the cores and CPU that ran each
    study beside its wall time, and where to read them for an older summary."""
    df = _gtsrb_study().assign(env_cpu_count=2, env_cpu="AMD EPYC", env_cpu_simd="avx2")
    _, summary = seeds.seed_section(df, {"reference": "000", "config": "c", "results": "r"})
    assert summary["machine"] == "2 CPU cores (AMD EPYC, avx2)"
    older = {k: v for k, v in summary.items() if k != "machine"} | {"seed": "001"}
    overview = results_pages.results_page([summary, older], ["a", "b"]).split("## ")[0]
    row = next(line for line in overview.splitlines() if line.startswith("| 000"))
    assert "2 CPU cores (AMD EPYC, avx2)" in row
    row = next(line for line in overview.splitlines() if line.startswith("| 001"))
    assert "named in its section" in row


def test_pilot_seed_study_shows_validation_and_measures_no_test_check():
    df = _gtsrb_study().assign(pilot=True, test_accuracy=float("nan"), test_loss=float("nan"))
    df["val_accuracy"] = 0.95
    blocks, summary = seeds.seed_section(df, {"reference": "000", "config": "c", "results": "r"})
    text = results.to_markdown(blocks)
    assert "Pilot study: the test split is sealed" in text
    assert "validation accuracy" in results.cell_table(df).columns
    assert "test accuracy" not in results.cell_table(df).columns
    checks = summary["checks"]
    assert checks[0]["measured"].startswith("test split sealed") and checks[0]["met"] == "NO"
    assert checks[1]["measured"].startswith("test split sealed")


def test_every_run_check_fails_on_a_low_run_or_a_missing_strategy():
    _, summary = seeds.seed_section(
        _gtsrb_study(low=0.5), {"reference": "000", "config": "c", "results": "r"}
    )
    every = summary["checks"][1]
    assert every["met"] == "NO" and "0.5000 (feature_extraction" in every["measured"]
    df = _gtsrb_study()
    df = df[df["strategy_name"] != "autoencoder"]
    _, summary = seeds.seed_section(df, {"reference": "000", "config": "c", "results": "r"})
    assert summary["checks"][1]["met"] == "NO"
    assert "not run: autoencoder" in summary["checks"][1]["measured"]


def test_epochs_to_reach_counts_classifier_epochs_against_the_same_seed():
    rows = [
        _run("scratch", 0, 0.6, path="s0"),
        _run("autoencoder", 0, 0.62, path="a0"),
        _run("scratch", 1, 0.6, path="s1"),
        _run("autoencoder", 1, 0.5, path="a1"),
    ]
    histories = {
        "s0": pd.DataFrame({"phase": ["train"] * 4, "val_accuracy": [0.3, 0.5, 0.7, 0.6]}),
        "a0": pd.DataFrame(
            {
                "phase": ["ae_stage1", "ae_stage1", "train", "train"],
                "val_accuracy": [None, None, 0.71, 0.8],
            }
        ),
        "s1": pd.DataFrame({"phase": ["train"] * 2, "val_accuracy": [0.4, 0.9]}),
        "a1": pd.DataFrame(
            {"phase": ["ae_stage1", "train", "train"], "val_accuracy": [None, 0.5, 0.6]}
        ),
    }
    conv = tables.epochs_to_reach(_study(rows), "autoencoder", history=histories.__getitem__)
    by_seed = conv.set_index("seed")
    assert by_seed.loc[0, "baseline epochs to its best"] == 3
    assert by_seed.loc[0, "epochs to reach it"] == 1
    assert by_seed.loc[0, "pretraining epochs"] == 2
    assert pd.isna(by_seed.loc[1, "epochs to reach it"])  # never reached 0.9
    assert by_seed.loc[1, "classifier epochs run"] == 2


def test_seed002_page_checks_auc_and_the_four_ways():
    rows = []
    for seed in range(3):
        for strategy, auc in [
            ("fine_tune", 0.93),
            ("feature_extraction", 0.96),
            ("freeze_bottom", 0.94),
            ("discriminative_lr", 0.95),
        ]:
            rows.append(_run(strategy, seed, 0.9, num_classes=2, test_roc_auc=auc))
    blocks, summary = seeds.seed_section(
        _study(rows), {"reference": "002", "config": "c", "results": "r", "substitutions": ["x"]}
    )
    assert [c["met"] for c in summary["checks"]] == ["yes", "yes"]
    text = results.to_markdown(blocks)
    assert "- x" in text
    assert "Wall time on 2 CPU cores (AMD EPYC, avx2): " in text  # CPUs differ several-fold
    assert "feature_extraction 0.9600" in text and "ranks 1 of 4" in text


def test_seed002_page_shows_the_verdict_and_batchnorm_frozen_against_trained():
    """The verdict table follows the checks; the seed's ranking of the ways is over the
    default policy (BatchNorm frozen) only, and the comparison has its own table."""
    rows = []
    for seed in range(3):
        for strategy, name, policy, auc in [
            ("fine_tune", None, "frozen", 0.93),
            ("feature_extraction", None, "frozen", 0.96),
            ("fine_tune_bn_train", "fine_tune", "train", 0.50),
        ]:
            rows.append(_run(strategy, seed, 0.9, name=name, num_classes=2, test_roc_auc=auc,
                             batchnorm=policy))  # fmt: skip
    verdict = pd.DataFrame([{
        "dataset": "gtsrb", "selected": "mnv2/feature_extraction/none", "test_accuracy": 0.9,
        "ci_low": 0.85, "ci_high": 0.95,
        "inconclusive": "mnv2/fine_tune/none [-0.0500, +0.0400] (seeds to resolve: 9)",
        "transfer_gain": float("nan"), "gain_low": float("nan"), "gain_high": float("nan"),
        "gain_verdict": "", "cheapest_as_good": "", "margin": 0.01,
    }])  # fmt: skip
    batchnorm = pd.DataFrame([{
        "dataset": "gtsrb", "backbone": "mnv2", "strategy_name": "fine_tune",
        "augmentation": "none", "seeds": "3/3", "criterion": "val_roc_auc",
        "frozen_validation": 0.93, "train_validation": 0.5, "frozen_accuracy": 0.9,
        "train_accuracy": 0.9, "difference": 0.0, "diff_low": -0.03, "diff_high": 0.03,
        "verdict": "inconclusive", "frozen_seconds": 100.0, "train_seconds": 101.0, "margin": 0.01,
    }])  # fmt: skip
    blocks, _ = seeds.seed_section(
        _study(rows), {"reference": "002", "config": "c", "results": "r"},
        verdict=verdict, batchnorm=batchnorm,
    )  # fmt: skip
    text = results.to_markdown(blocks)
    assert text.index("### Acceptance") < text.index("### Verdict") < text.index("### The seed")
    assert "| gtsrb     | mnv2/feature_extraction/none | 0.900 [0.850, 0.950]" in text
    assert "### BatchNorm: frozen against trained" in text
    assert "+0.0000 [-0.0300, +0.0300]" in text and "1 inconclusive." in text
    assert "tied" not in text and "none shown as good" in text
    # the ranking of the ways is over the frozen cells: the trained twin's 0.50 is not in it
    assert "mean test ROC AUC feature_extraction 0.9600, fine_tune 0.9300." in text


def test_every_seed_has_a_page():
    assert set(seeds.SEED_PAGES) == set(seed_reference.SEED_IDS)


def test_page_joins_sections_with_an_overview(tmp_path):
    for seed, runs in (("002", 30), ("000", 21)):
        (tmp_path / f"seed{seed}.md").write_text(f"## Seed {seed}\n")
        summary = {"seed": seed, "title": f"t{seed}", "config": "c", "runs": runs,
                   "wall_seconds": 60.0, "checks": [{"met": "yes"}, {"met": "NO"}]}  # fmt: skip
        (tmp_path / f"seed{seed}.json").write_text(json.dumps(summary))
    page = results_pages.page_from_files([tmp_path / "seed002.json", tmp_path / "seed000.json"])
    assert page.startswith("# Results")
    assert page.index("## Seed 000") < page.index("## Seed 002")
    assert "| 1 of 2 " in page and "1 min 00 s" in page
    assert page.count("not measured yet") == 3  # 001, 003, 004


def test_committed_page_is_the_committed_sections_joined():
    """docs/results.md is generated: the committed sections (docs/results/seedNNN.json and
    .md, one per measured study) join into exactly the committed page, so a study rerun
    rewrites its own section and keeps every other seed's."""
    root = Path(__file__).resolve().parents[1]
    summaries = sorted((root / "docs" / "results").glob("*.json"))
    assert summaries, "docs/results/seedNNN.json missing: the page cannot be regenerated"
    for path in summaries:
        assert path.with_suffix(".md").is_file(), f"{path.with_suffix('.md')} missing"
    assert results_pages.page_from_files(summaries) == (root / "docs" / "results.md").read_text()


def _config(**extra):
    return {
        "datasets": {"d": {"loader": "synthetic", "image_size": 16}},
        "backbones": {"b": {"name": "small_cnn", "weights": "none"}},
        "strategies": {"s": {"name": "scratch"}},
        "augmentations": {"none": {"name": "none"}},
        "matrix": [
            {"datasets": ["d"], "backbones": ["b"], "strategies": ["s"], "augmentations": ["none"]}
        ],  # fmt: skip
        **extra,
    }


def test_seed_study_block_is_validated_and_defaults_its_page():
    study = load_study(_config(seed_study={"reference": "003"}))
    assert study.seed_study["page"] == "docs/results/seed003.md"
    assert study.seed_study["substitutions"] == []
    assert load_study(_config()).seed_study is None
    with pytest.raises(StudyConfigError, match="seed_study.reference"):
        load_study(_config(seed_study={"reference": "007"}))
    with pytest.raises(StudyConfigError, match="seed_study"):
        load_study(_config(seed_study={"reference": "003", "pages": "x"}))


def test_seed001_compares_two_phase_with_the_frozen_model_of_the_same_augmentation():
    rows = []
    for seed, acc in enumerate([0.95, 0.96, 0.97]):
        rows.append(_run("transfer", seed, acc, name="feature_extraction", aug="seed001"))
        rows.append(_run("transfer", seed, 0.5, name="feature_extraction", aug="none"))
        rows.append(_run("ft_a", seed, acc + 0.01, name="two_phase", aug="seed001"))
        rows.append(_run("ft_b", seed, acc + 0.01, name="two_phase", aug="seed001"))
    findings = seeds.SEED_PAGES.get("001").findings(_study(rows), {})
    assert "0.08 points" in findings[0]  # the seed's own gain, from its table
    assert "0.9600 ± 0.0100" in findings[0]  # frozen, seed001 only (not the 'none' cell)
    assert "ft_a 0.9700 ± 0.0100 (+1.00 points)" in findings[0]
    assert findings[1].startswith("ft_a and ft_b give the same test accuracy")
    # with the page's pairwise table the difference is a stated verdict with its interval
    pairwise = pd.DataFrame([
        {"a": "mnv2/ft_a/seed001", "b": "mnv2/transfer/seed001", "difference": 0.01,
         "diff_low": -0.004, "diff_high": 0.0235, "verdict": "inconclusive", "reason": "",
         "family": 6},
        {"a": "mnv2/transfer/seed001", "b": "mnv2/ft_a/seed001", "difference": -0.01,
         "diff_low": -0.0235, "diff_high": 0.004, "verdict": "inconclusive", "reason": "",
         "family": 6},
    ])  # fmt: skip
    (stated, _) = seeds.SEED_PAGES.get("001").findings(_study(rows), {"pairwise": pairwise})
    assert (
        "ft_a 0.9700 ± 0.0100 (+1.00 points [95 % interval of the difference, simultaneous "
        "over 6 pairs -0.40 to +2.35 points: inconclusive])" in stated
    )
    assert "ft_b 0.9700 ± 0.0100 (+1.00 points)" in stated  # no pair in the table: no claim


def test_seed003_separates_augmentation_from_the_learning_rate():
    rows = []
    for seed in range(3):
        rows.append(_run("m3", seed, 0.60, aug="none", name="scratch", learning_rate=1e-3))
        rows.append(_run("m4", seed, 0.55, aug="seed003", name="scratch", learning_rate=1e-3))
        rows.append(_run("m5", seed, 0.65, aug="seed003", name="scratch", learning_rate=3e-4))
    (text,) = seeds.SEED_PAGES.get("003").findings(_study(rows), {})
    assert "0.6678 with augmentation against 0.6031 without (+6.5 points)" in text
    assert (
        "m4 with seed003: 0.5500 ± 0.0000 against m3" in text and "the same learning rate" in text
    )
    assert "(+5.0 points, learning rate 0.0003 vs 0.001)" in text


def test_seed_checks_ask_for_the_seed_eras_strategies_not_the_whole_registry():
    """A strategy added to the registry (issue 32's methods) must not make seed 000's
    "every training strategy" check say "not run": the check's list is fixed, and
    every name on it is still a registered strategy."""
    from tlbench.report.pages.seed_checks import TRAINING_STRATEGIES
    from tlbench.strategies.base import STRATEGIES

    assert set(TRAINING_STRATEGIES) <= set(STRATEGIES.names())
    assert not {"lp_ft", "l2_sp", "bss", "bitfit", "norm_only", "surgical", "lora"} & set(
        TRAINING_STRATEGIES
    )
