"""The results page, ``docs/results.md``, and what its sections share.

Every measured study (``configs/measured/``) writes one section: a seed study
through :mod:`tlbench.report.pages.seeds` (rule ``seed_results``), any other through
:mod:`tlbench.report.pages.studies` (rule ``study_results``). This module has what
they share -- the cells table (mean ± sd over seeds), the wall time, the header
every section opens with (config, runs, wall time on the CPU that ran it, code
and library versions, the looks at each test split), the verdict table, the
BatchNorm comparison, Markdown and HTML of a section's blocks. The page that joins
the sections is :mod:`tlbench.report.pages.results_pages`. Nothing on the page is
typed by hand.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from tlbench.analysis import tables
from tlbench.analysis.lookcount import looks_sentence, total_looks
from tlbench.analysis.tables import SPLIT_LABELS, is_pilot, mean_sd, ok_runs, reported_split
from tlbench.analysis.verdict.intervals import OUTCOMES
from tlbench.report.pages.costs import cost_cells
from tlbench.report.pages.verdict import cheapest_text, method_lines, text, validation_words
from tlbench.report.render import render

CELL = ["dataset", "backbone", "strategy", "augmentation"]


def cell_table(df: pd.DataFrame) -> pd.DataFrame:
    """One row per cell (dataset, backbone, strategy, augmentation): mean ± sd over seeds.

    A pilot study (test split sealed) shows validation figures in place of test ones.
    """
    split = reported_split(df)
    shown = SPLIT_LABELS[split]
    runs = ok_runs(df)
    binary = bool((runs["num_classes"] == 2).all()) if len(runs) else False
    imbalanced = tables.imbalanced_columns(runs, split)
    rows = []
    for keys, group in runs.groupby(CELL, sort=False):
        first = group.iloc[0]
        row = dict(zip(CELL, keys, strict=True))
        row.update(
            {
                "architecture": first["backbone_arch"],
                "weights": first["weights"],
                "px": first["input_size"],
                "seeds": len(group),
                f"{shown} accuracy": mean_sd(group[f"{split}_accuracy"]),
                **{f"{shown} {w}": mean_sd(group[c]) for c, w in imbalanced.items()},
                f"{shown} loss": mean_sd(group[f"{split}_loss"]),
                "train accuracy": mean_sd(group["train_accuracy"]),
                "train loss": mean_sd(group["train_loss"]),
            }
        )
        if binary:
            row[f"{shown} ROC AUC"] = mean_sd(group[f"{split}_roc_auc"])
        row["train time (s)"] = mean_sd(group["train_seconds"], 1)
        row["epochs"] = mean_sd(group["epochs_run"], 1)
        row.update(cost_cells(group))
        rows.append(row)
    return pd.DataFrame(rows)


def format_seconds(seconds: float | None) -> str:
    """``1 h 02 min 05 s`` style."""
    if seconds is None or not math.isfinite(seconds):
        return "not recorded"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min {secs:02d} s"
    return f"{minutes} min {secs:02d} s"


# --------------------------------------------------------------------------- the page


Block = tuple[str, Any]  # ("h2" | "h3" | "p", text), ("ul", [texts]), ("table", DataFrame)


def study_header(
    df: pd.DataFrame,
    study: Mapping[str, Any],
    wall: Mapping[str, Any],
    looks: Mapping[str, Any] | None,
) -> tuple[list[Block], dict[str, int] | None]:
    """The paragraphs that open a measured study's section: config, runs, wall time on
    the CPU that ran it, code version and library versions; the pilot notice; the looks
    at each dataset's test split by every study on this machine (the machine's ledger,
    :func:`tlbench.analysis.lookcount.count_looks`) plus the earlier looks the config names
    (``earlier_test_looks``); what this machine forced to differ (the study's
    ``substitutions``). Returns the blocks and the looks per dataset, the earlier ones
    included (None without a ledger)."""

    commits = sorted(set(df["env_git_commit"].dropna().astype(str)))
    dirty = bool(df["env_git_dirty"].fillna(False).astype(bool).any())
    blocks: list[Block] = [
        (
            "p",
            f"Config: {study['config']} (results in {study['results']}). "
            f"Runs: {len(df)} ({int((df['status'] == 'ok').sum())} finished). "
            f"Wall time on {machine_text(df)}: {format_seconds(wall['seconds'])} "
            f"(first run start {wall['start']} to last run end {wall['end']}; the runs "
            f"themselves {format_seconds(wall['runs_seconds'])}). "
            f"Code: {', '.join(commits) or 'unknown'}"
            f"{' (with uncommitted changes)' if dirty else ''}; {_versions(df)}.",
        ),
    ]
    if is_pilot(df):
        blocks.append(
            (
                "p",
                "**Pilot study: the test split is sealed.** Every run trained and was "
                "evaluated on the train and validation splits only; the figures below are "
                "validation figures, and no check on test is measured.",
            )
        )
    evaluations = None
    if looks is not None:
        earlier = study.get("earlier_test_looks") or {}
        evaluations = total_looks(looks, earlier)
        # counted by the test images whatever their size (ledger.test_images), or before
        sized = any(not d.get("test_images") for d in looks.get("datasets", []))
        where = (
            "Looks at the test split: distinct run specs ever evaluated on each dataset's "
            + (
                "test split (the same images and labels, prepared at the same size) by any "
                "study or run on this machine, from the machine's ledger "
                f"{looks['machine_ledger']} (this machine only: looks made elsewhere are not "
                "in it, nor looks at these test images prepared at another size: counted "
                "before the ledger recorded the images apart from their size)"
                if sized
                else "test images (the same images and labels, at any size they were "
                "prepared at) by any study or run on this machine, from the machine's ledger "
                f"{looks['machine_ledger']} (this machine only: looks made elsewhere are not "
                "in it)"
            )
            + f", with this study's ledger {looks['study_ledger']} folded in"
            if looks["machine_ledger"] is not None
            else "Looks at the test split: distinct run specs ever evaluated on each "
            "dataset's test split by this study (its ledger, test_evaluations.jsonl: "
            "counted before the machine's ledger, so looks by other studies are not in it)"
        )
        blocks.append(("p", f"{where}: {looks_sentence(looks, earlier)}."))
    if study.get("substitutions"):
        blocks += [
            ("p", "Substitutions forced by this machine:"),
            ("ul", list(study["substitutions"])),
        ]
    return blocks, evaluations


def verdict_blocks(verdict: pd.DataFrame) -> list[Block]:
    """The verdict table (tlbench.analysis.verdict) in the section's words."""
    rows = []
    for _, v in verdict.iterrows():
        row = {"dataset": v["dataset"]}
        if "budget" in verdict:
            row["budget"] = v["budget"]
        row["chosen by validation"] = v["selected"]
        row["test accuracy [95 %]"] = (
            f"{v['test_accuracy']:.3f} [{v['ci_low']:.3f}, {v['ci_high']:.3f}]"
        )
        row["validation could choose"] = (
            "no: " + (text(v, "val_close") or "runner-up")
            if text(v, "val_warning")
            else "yes" + (f": {validation_words(v).strip()[3:]}" if validation_words(v) else "")
        )
        row["equivalent to it"] = text(v, "equivalent")
        row["inconclusive against it"] = text(v, "inconclusive")
        gain = v.get("transfer_gain")
        why = f" ({text(v, 'gain_reason')})" if text(v, "gain_reason") else ""
        row["transfer gain [95 %]"] = (
            f"{gain:+.3f} [{v['gain_low']:+.3f}, {v['gain_high']:+.3f}] {v['gain_verdict']}{why}"
            if isinstance(gain, float) and not math.isnan(gain)
            else ""
        )
        row["cheapest as good"] = cheapest_text(v)
        note = v.get("gain_note")
        if isinstance(note, str) and note and not row["transfer gain [95 %]"]:
            row["transfer gain [95 %]"] = note
        if "set_aside" in verdict:  # cells that did not learn (tlbench.analysis.set_aside)
            left = v["set_aside"]
            row["set aside (did not learn)"] = left if isinstance(left, str) else ""
        if not isinstance(v["selected"], str) or not v["selected"]:  # every cell set aside
            row["chosen by validation"] = row["test accuracy [95 %]"] = ""
        rows.append(row)
    blocks: list[Block] = [
        ("h3", "Verdict"),
        (
            "p",
            "Per dataset the cell chosen by mean validation figure over seeds, whether "
            "validation could tell it from the others (the cells it cannot tell apart, "
            "within 2 standard errors; grouped images counted as groups), its test "
            "accuracy with the 95 % interval of a paired hierarchical bootstrap over seeds "
            "and test images, the cells equivalent to it and those the data cannot tell "
            "from it, the transfer gain and the cheapest cell shown to be as good "
            "(equivalent or non-inferior; tlbench.analysis.verdict). Cells with a run "
            "that did not learn (training and validation accuracy at chance, one class "
            "predicted, or a diverged loss: tlbench.analysis.set_aside) are set aside and "
            "named; no verdict or transfer gain rests on them.",
        ),
        ("table", pd.DataFrame(rows)),
    ]
    warnings = [
        f"{v['dataset']}: {text(v, 'val_warning')}" for _, v in verdict.iterrows()
        if text(v, "val_warning")
    ]  # fmt: skip
    if warnings:
        blocks.append(("ul", warnings))
    notes = [line for line in method_lines(verdict) if line]
    return blocks + [("p", note.replace("*", "")) for note in notes]


def batchnorm_blocks(table: pd.DataFrame) -> list[Block]:
    """BatchNorm frozen against trained for the same cells
    (:func:`tlbench.analysis.verdict.pairs.batchnorm_table`); nothing when the study has no such pair."""
    if table is None or not len(table):
        return []
    rows = [
        {
            "dataset": v["dataset"],
            "backbone": v["backbone"],
            "strategy": v["strategy_name"],
            "augmentation": v["augmentation"],
            "seeds": v["seeds"],
            f"{v['criterion']} frozen / train": (
                f"{v['frozen_validation']:.4f} / {v['train_validation']:.4f}"
            ),
            "test accuracy frozen / train": (
                f"{v['frozen_accuracy']:.4f} / {v['train_accuracy']:.4f}"
            ),
            "frozen - train [95 %]": (
                f"{v['difference']:+.4f} [{v['diff_low']:+.4f}, {v['diff_high']:+.4f}]"
            ),
            "frozen is": v["verdict"] + (f" ({v['reason']})" if text(v, "reason") else ""),
            "train time (s) frozen / train": (
                f"{v['frozen_seconds']:.0f} / {v['train_seconds']:.0f}"
            ),
        }
        for _, v in table.iterrows()
    ]
    words = table["verdict"].value_counts()
    summary = ", ".join(f"{words[w]} {w}" for w in OUTCOMES if w in words)
    return [
        ("h3", "BatchNorm: frozen against trained"),
        (
            "p",
            "The same cells with the pretrained BatchNorm layers kept in inference mode "
            "(`batchnorm: frozen`, the default) and trained on batch statistics "
            "(`batchnorm: train`). The difference of mean test accuracy, frozen minus "
            "trained, with the 95 % interval of the paired hierarchical bootstrap over "
            "seeds and test images (simultaneous over the dataset's pairs), and the outcome "
            "of frozen against trained (better / worse: the interval lies above / below 0; "
            "equivalent: inside the margin "
            f"±{float(table['margin'].iloc[0]):g}; inconclusive: anything else; "
            f"tlbench.analysis.verdict): {summary}.",
        ),
        ("table", pd.DataFrame(rows)),
    ]


def to_markdown(blocks: Sequence[Block]) -> str:
    """Markdown of a section's blocks."""
    out = []
    for kind, content in blocks:
        if kind == "h2":
            out.append(f"## {content}\n")
        elif kind == "h3":
            out.append(f"### {content}\n")
        elif kind == "p":
            out.append(f"{content}\n")
        elif kind == "ul":
            out.append("".join(f"- {item}\n" for item in content))
        elif kind == "table":
            out.append(render(content, "md"))
        else:
            raise ValueError(f"unknown block kind {kind!r}")
    return "\n".join(out)


def to_html(blocks: Sequence[Block]) -> str:
    """A standalone HTML page of a section's blocks (for the Snakemake report)."""

    out = ['<html><head><meta charset="utf-8"></head><body>']
    for kind, content in blocks:
        if kind in ("h2", "h3", "p"):
            tag = {"p": "p"}.get(kind, kind)
            out.append(f"<{tag}>{html.escape(str(content))}</{tag}>")
        elif kind == "ul":
            out.append("<ul>" + "".join(f"<li>{html.escape(i)}</li>" for i in content) + "</ul>")
        elif kind == "table":
            out.append(render(content, "html"))
        else:
            raise ValueError(f"unknown block kind {kind!r}")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def machine_text(df: pd.DataFrame) -> str:
    """``2 CPU cores (AMD EPYC, avx2)``: wall times differ several-fold between CPUs."""
    cores = sorted({int(c) for c in df["env_cpu_count"].dropna()})
    gpus = sorted({str(g) for g in df["env_gpu"].dropna() if str(g)})
    text = f"{'/'.join(map(str, cores)) or '?'} CPU cores"
    columns = [c for c in ("env_cpu", "env_cpu_simd") if c in df.columns]
    cpus = {
        ", ".join(str(v) for v in row if pd.notna(v)) for row in df[columns].itertuples(index=False)
    }
    cpus = sorted(cpus - {""})
    if cpus:
        text += f" ({'; '.join(cpus)})"
    return text + (f" and {', '.join(gpus)}" if gpus else "")


def _versions(df: pd.DataFrame) -> str:
    first = df.iloc[0]
    return (
        f"Keras {first['env_keras']} on {first['env_backend']}, TensorFlow "
        f"{first['env_tensorflow']}, Python {first['env_python']}"
    )
