"""Benchmark: the verdict's error rates, measured on simulated studies whose truth is known.

Each scenario of :data:`verdict_sim.SCENARIOS` is simulated ``--studies`` times (cells with
known true accuracies and differences from a reference cell, seed-to-seed spread, image
difficulty shared by the cells, grouped images, 1 / 3 / 5 seeds, label budgets; see
benchmarks/verdict_sim.py). Every study is given to two versions of the verdict code,
each in its own process with its own ``src`` on ``PYTHONPATH`` and through its own adapter
(benchmarks/verdict_adapters.py):

* ``before``: the code before issue 34, commit af49858 (``git archive`` of this repository
  into a temporary folder, or ``--before-src``);
* ``after``: the code after issue 34 (``--after-src``, default this tree's ``src``).

Both versions see the same studies (the same random numbers), except that label-budget
runs are drawn as each version's pipeline draws them (verdict_adapters.SUBSETS). Measured
per scenario and version: coverage of the 95 % intervals of each difference from the
reference and of each cell's accuracy; the share of comparisons said better / worse /
equivalent / inconclusive when the true difference is zero, inside the margin or beyond
it; the family-wise rate of "better" or "worse" among the comparisons whose true
difference is zero; power (the right direction said when the difference is beyond the
margin). Every rate carries a 95 % Monte-Carlo interval: Wilson's, at the number of
comparisons divided by the design effect of comparisons sharing a study.

    python benchmarks/bench_verdict_calibration.py [--studies 200] [--reps 1000] [--jobs 2]

Writes ``OUT/verdict_calibration.json`` and the page ``OUT/verdict_calibration.md``
(generated; do not edit), atomically. Each version's raw figures stay in a work folder
(``work_folder`` in the JSON); ``--reuse FOLDER`` takes a version's from there when they
were made with the same settings and runs only the others.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling modules below
import verdict_adapters  # noqa: E402
import verdict_sim  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
VERSIONS = ("before", "after")
#: Acceptance of issue 34, for every scenario.
COVERAGE_MIN, EQUIVALENT_MAX, FAMILY_MAX = 0.93, 0.05, 0.05


# --------------------------------------------------------------------------- worker


def run_version(
    version: str,
    scenarios: list[verdict_sim.Scenario],
    studies: int,
    reps: int,
    seed: int,
    subsets: str,
) -> dict[str, Any]:
    """Every study of every scenario through ``version``'s adapter (in this process),
    label-budget subsets drawn per ``subsets`` (``dataset`` or ``seed``)."""
    adapter = verdict_adapters.ADAPTERS[version]
    out: dict[str, Any] = {}
    for index, scenario in enumerate(scenarios):
        rng = np.random.default_rng([seed, index])
        started, records, seed_sd = time.perf_counter(), [], []
        for study_seed in range(studies):
            study = verdict_sim.simulate(scenario, rng, subsets)
            result = adapter(study, reps, study_seed)
            result["observed"] = [float(m.mean()) for m in study.correct]
            records.append(result)
            if scenario.seeds > 1:
                seed_sd.append(np.mean([m.mean(axis=1).std(ddof=1) for m in study.correct]))
        out[scenario.name] = {
            "records": records,
            "seconds": time.perf_counter() - started,
            "seed_sd": float(np.mean(seed_sd)) if seed_sd else None,
        }
    return out


# --------------------------------------------------------------------------- rates


def rate(hits: np.ndarray) -> dict[str, float]:
    """Rate of a ``(studies, per study)`` 0/1 array, with a 95 % Monte-Carlo interval.

    Wilson's interval at the effective number of trials: the trials divided by the
    design effect (the variance of the per-study sums about the rate over the binomial
    variance; at least 1) of trials that share a study.
    """
    # deferred: statsmodels only in the parent process, not in the version's workers
    from statsmodels.stats.proportion import proportion_confint

    hits = np.asarray(hits, dtype=float)
    if hits.ndim != 2 or hits.size == 0:
        raise ValueError(f"rate needs a non-empty (studies, trials) array, got {hits.shape}")
    studies, per = hits.shape
    n = hits.size
    p = float(hits.mean())
    design = 1.0
    if 0 < p < 1 and studies > 1:
        sums = hits.sum(axis=1)
        clustered = float(np.sum((sums - p * per) ** 2)) * studies / (studies - 1)
        design = max(1.0, clustered / (n * p * (1 - p)))
    effective = n / design
    low, high = proportion_confint(p * effective, effective, alpha=0.05, method="wilson")
    return {"rate": p, "low": float(low), "high": float(high), "trials": n, "studies": studies}


def summarise(scenario: verdict_sim.Scenario, part: dict[str, Any]) -> dict[str, Any]:
    """The rates of one scenario and version from its worker's records."""
    records = part["records"]
    truth = np.array(scenario.truth)
    classes = np.array([scenario.truth_class(d) for d in truth])
    p = np.array(scenario.accuracies)
    diff = np.array([r["difference"] for r in records])  # (studies, comparisons, 2)
    acc = np.array([r["accuracy"] for r in records])
    band = np.array([r["band"] for r in records])  # what the outcomes read
    covered_band = (band[..., 0] <= truth) & (truth <= band[..., 1])
    said = np.array([r["outcome"] for r in records])  # (studies, comparisons)
    words = np.array([r["said"] for r in records])  # the version's own words
    sign = np.sign(truth)
    metrics: dict[str, Any] = {
        "coverage_difference": rate((diff[..., 0] <= truth) & (truth <= diff[..., 1])),
        "coverage_accuracy": rate((acc[..., 0] <= p) & (p <= acc[..., 1])),
        "width_difference": float(np.mean(diff[..., 1] - diff[..., 0])),
        "coverage_band": rate(covered_band.all(axis=1, keepdims=True)),
        "width_band": float(np.mean(band[..., 1] - band[..., 0])),
    }
    outcomes: dict[str, Any] = {}
    for name in verdict_sim.CLASSES:
        columns = classes == name
        if columns.any():
            outcomes[name] = {o: rate(said[:, columns] == o) for o in verdict_adapters.OUTCOMES}
            found, counts = np.unique(words[:, columns], return_counts=True)
            outcomes[name]["said"] = dict(zip(map(str, found), map(int, counts), strict=True))
    zero = classes == "zero"
    if zero.any():
        resolved = np.isin(said[:, zero], ("better", "worse"))
        metrics["family_wise"] = rate(resolved.any(axis=1, keepdims=True))
    beyond = classes == "beyond"
    if beyond.any():
        right = np.where(sign[beyond] > 0, "better", "worse")
        wrong = np.where(sign[beyond] > 0, "worse", "better")
        metrics["power"] = rate(said[:, beyond] == right)
        metrics["wrong_sign"] = rate(said[:, beyond] == wrong)
    checks = {"coverage_difference": metrics["coverage_difference"]["rate"] >= COVERAGE_MIN}
    checks["coverage_accuracy"] = metrics["coverage_accuracy"]["rate"] >= COVERAGE_MIN
    if "beyond" in outcomes:
        checks["equivalent_beyond"] = outcomes["beyond"]["equivalent"]["rate"] <= EQUIVALENT_MAX
    if "family_wise" in metrics:
        checks["family_wise"] = metrics["family_wise"]["rate"] <= FAMILY_MAX
    return {
        "metrics": metrics,
        "outcomes": outcomes,
        "checks": checks,
        "passes": all(checks.values()),
        "seconds": part["seconds"],
        "seed_sd": part["seed_sd"],
    }


# --------------------------------------------------------------------------- page


SUBSET_TEXT = {
    "dataset": "one subset of the training images per dataset and budget, shared by every "
    "seed (drawn from the split seed: pipeline.py:60-64, budget.py:126 at af49858)",
    "seed": "one subset per run, drawn from the run's seed",
}


def cell(r: dict[str, float] | None, check: bool | None = None) -> str:
    """A rate and its Monte-Carlo interval, ``fails`` beside a missed threshold."""
    if r is None:
        return "n/a"
    text = f"{r['rate']:.3f} [{r['low']:.3f}, {r['high']:.3f}]"
    return text + (" **fails**" if check is False else "")


def _get(entry: dict[str, Any], version: str, *path: str) -> Any:
    value: Any = entry["results"].get(version)
    for key in path:
        value = None if value is None else value.get(key)
    return value


ACCEPTANCE = (  # (column title, path in a scenario's summary, name of its check)
    ("coverage of differences", ("metrics", "coverage_difference"), "coverage_difference"),
    ("coverage of accuracies", ("metrics", "coverage_accuracy"), "coverage_accuracy"),
    ("P(equivalent | beyond margin)", ("outcomes", "beyond", "equivalent"), "equivalent_beyond"),
    ("family-wise P(better or worse | zero)", ("metrics", "family_wise"), "family_wise"),
    ("power", ("metrics", "power"), None),
    ("every difference of a study covered by the intervals the outcomes read",
     ("metrics", "coverage_band"), None),
)  # fmt: skip


def markdown(report: dict[str, Any]) -> str:
    """The page (``verdict_calibration.md``), from the report alone."""
    s, versions = report["settings"], report["versions"]
    lines = [
        "# Verdict calibration (generated by benchmarks/bench_verdict_calibration.py; do not edit)",
        "",
        f"Simulated studies whose truth is known (benchmarks/verdict_sim.py), "
        f"{s['studies']} per scenario, each given to every version of the verdict code below with "
        f"{s['reps']} bootstrap replicates and 95 % intervals. Every study has a reference "
        "cell and cells whose true difference from it is zero, inside the margin or beyond "
        "it; each comparison is with the reference (validation's choice is not simulated).",
        "",
    ]
    for name, v in versions.items():
        lines.append(
            f"- **{name}**: {v['describe']} (its process: {v['seconds']:.0f} s wall clock). "
            f"Adapter: {v['adapter']}"
        )
    lines += [
        "",
        "Before issue 34 the verdict said better / worse / tied; its *tied* is read as it "
        "meant it: *equivalent* when `compare` flagged the interval inside the margin "
        '(printed "equivalent within the margin"), *inconclusive* otherwise. Both were '
        "*tied*, and the budget answer took any tied cell as good as the chosen one. "
        "Label-budget runs are drawn as each version's pipeline draws them:",
        "",
        *(f"- {name}: {SUBSET_TEXT[v['subsets']]}." for name, v in versions.items()),
        "",
        f"Acceptance (issue 34, every scenario): coverage >= {COVERAGE_MIN}, "
        f"P(equivalent | true difference beyond the margin) <= {EQUIVALENT_MAX}, family-wise "
        f"P(better or worse | true difference zero) <= {FAMILY_MAX}; **fails** marks a "
        "figure that misses it. Each rate: estimate [95 % Monte-Carlo interval] (Wilson, "
        "at the comparisons divided by the design effect of sharing a study).",
        "",
        f"CPU: {report['cpu']} x{report['cpu_count']}, load average "
        f"{report['load_average'][0]:.2f} at the end. Command: `{report['command']}`",
        "",
        "## Acceptance",
        "",
    ]
    for title, path, check in ACCEPTANCE:
        lines += [f"### {title}", "", "| scenario | " + " | ".join(versions) + " |"]
        lines.append("|---|" + "---:|" * len(versions))
        for entry in report["scenarios"]:
            row = [
                cell(
                    _get(entry, v, *path),
                    None if check is None else _get(entry, v, "checks", check),
                )
                for v in versions
            ]
            lines.append(f"| {entry['name']} | " + " | ".join(row) + " |")
        lines.append("")
    lines += ["## Scenarios", "", "| scenario | what | images | groups | seeds | margin "
              "| true differences | seed sd of accuracy (simulated) |",
              "|---|---|---:|---:|---:|---:|---|---|"]  # fmt: skip
    for e in report["scenarios"]:
        sd = ", ".join(
            f"{v} {_get(e, v, 'seed_sd'):.4f}" for v in versions if _get(e, v, "seed_sd")
        )
        truth = ", ".join(f"{d:+.4f}" for d in e["truth"])
        groups = "none" if e["group_size"] == 1 else f"{e['images'] // e['group_size']}"
        lines.append(
            f"| {e['name']} | {e['text']} | {e['images']} | {groups} "
            f"| {e['seeds']} | {e['margin']} | {truth} | {sd or 'n/a (one seed)'} |"
        )
    lines += ["", "## Outcomes", ""]
    for e in report["scenarios"]:
        lines += [f"### {e['name']}", "", "| true difference | version | "
                  + " | ".join(verdict_adapters.OUTCOMES) + " |",
                  "|---|---|" + "---:|" * len(verdict_adapters.OUTCOMES)]  # fmt: skip
        for truth in verdict_sim.CLASSES:
            for v in versions:
                rates = _get(e, v, "outcomes", truth)
                if rates:
                    row = " | ".join(cell(rates[o]) for o in verdict_adapters.OUTCOMES)
                    lines.append(f"| {truth} | {v} | {row} |")
        for v in versions:
            width = _get(e, v, "metrics", "width_difference")
            wrong = cell(_get(e, v, "metrics", "wrong_sign"))
            band = _get(e, v, "metrics", "width_band")
            lines.append(
                f"{'' if v != next(iter(versions)) else chr(10)}- {v}: mean width of a "
                f"difference's interval {width:.4f} (of the interval the outcome reads "
                f"{band:.4f}); wrong sign beyond the margin {wrong}."
            )
        lines.append("")
    return "\n".join(lines)


# --------------------------------------------------------------------------- main


def before_src(tmp: Path) -> Path:
    """``src`` of :data:`verdict_adapters.BEFORE_COMMIT`, from this repository's git."""
    archive = tmp / "before.tar"
    commit = verdict_adapters.BEFORE_COMMIT
    subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", "-o", str(archive), commit, "src"],
        check=True,
    )
    with tarfile.open(archive) as tar:
        tar.extractall(tmp / "before", filter="data")
    return tmp / "before" / "src"


def describe(version: str, src: Path) -> str:
    """Which code a column ran: the commit of ``src`` and whether it had changes."""
    if version == "before":
        return f"commit {verdict_adapters.BEFORE_COMMIT} (before issue 34)"
    head = subprocess.run(
        ["git", "-C", str(src), "log", "-1", "--format=%h %s"], capture_output=True, text=True
    )
    dirty = subprocess.run(
        ["git", "-C", str(src), "status", "--porcelain", "--", "."], capture_output=True, text=True
    )
    if head.returncode:
        return f"{src} (not a git tree)"
    changed = ", with uncommitted changes" if dirty.stdout.strip() else ""
    return f"commit {head.stdout.strip()[:60]}{changed}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=200, help="per scenario")
    parser.add_argument("--reps", type=int, default=1000, help="bootstrap replicates")
    parser.add_argument("--seed", type=int, default=0)
    names = [s.name for s in verdict_sim.SCENARIOS]
    parser.add_argument("--scenarios", default=",".join(names), help="comma-separated")
    parser.add_argument("--versions", default=",".join(VERSIONS), help="comma-separated")
    parser.add_argument("--before-src", type=Path, help="default: git archive of af49858")
    parser.add_argument("--after-src", type=Path, default=ROOT / "src")
    parser.add_argument("--jobs", type=int, default=1, help="versions run at once")
    parser.add_argument(
        "--after-subsets",
        choices=("dataset", "seed"),
        default=verdict_adapters.SUBSETS["after"],
        help="how the after version's pipeline draws label-budget subsets",
    )
    parser.add_argument(
        "--reuse", type=Path, help="an earlier run's work folder: run only what it lacks"
    )
    parser.add_argument("--subsets", help=argparse.SUPPRESS)  # internal: the worker's
    parser.add_argument("--settings", help=argparse.SUPPRESS)  # internal: kept for --reuse
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # internal: run one version
    parser.add_argument("--raw", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    by_name = {s.name: s for s in verdict_sim.SCENARIOS}
    chosen = [n for n in args.scenarios.split(",") if n]
    versions = [v for v in args.versions.split(",") if v]
    if unknown := [n for n in chosen if n not in by_name]:
        parser.error(f"--scenarios: unknown {unknown}; valid: {', '.join(names)}")
    if not versions or (unknown := [v for v in versions if v not in VERSIONS]):
        parser.error(f"--versions {args.versions!r}: valid {', '.join(VERSIONS)}")
    if args.studies < 2 or args.reps < 10:
        parser.error(f"--studies {args.studies} (>= 2), --reps {args.reps} (>= 10)")
    scenarios = [by_name[n] for n in chosen]
    if args.worker:
        # deferred: which tlbench this is depends on the worker's PYTHONPATH
        import tlbench

        started = time.perf_counter()
        result = run_version(
            args.worker, scenarios, args.studies, args.reps, args.seed, args.subsets
        )
        raw = {"tlbench": tlbench.__file__, "seconds": time.perf_counter() - started}
        raw["settings"] = json.loads(args.settings)
        args.raw.write_text(json.dumps({**raw, "scenarios": result}))
        return 0

    # deferred: the parent's tlbench (this tree's), after the workers' arguments are checked
    from tlbench.core.atomic import atomic_file, write_json
    from tlbench.core.provenance import environment

    tmp = args.reuse or Path(tempfile.mkdtemp(prefix="verdict-calibration-"))
    tmp.mkdir(parents=True, exist_ok=True)
    sources = {"before": args.before_src, "after": args.after_src}
    subsets = {"before": verdict_adapters.SUBSETS["before"], "after": args.after_subsets}
    if "before" in versions and sources["before"] is None:
        sources["before"] = before_src(tmp)
    common = ["--studies", str(args.studies), "--reps", str(args.reps), "--seed", str(args.seed)]
    common += ["--scenarios", ",".join(chosen)]
    settings = {
        v: [*common, "--subsets", subsets[v], str(Path(sources[v]).resolve())] for v in versions
    }
    pending = [v for v in versions if not (args.reuse and (tmp / f"{v}.json").exists())]
    described = {v: describe(v, Path(sources[v])) for v in versions}  # before it can change
    for v in set(versions) - set(pending):  # an earlier run's figures: the same settings?
        kept = json.loads((tmp / f"{v}.json").read_text()).get("settings")
        if kept != settings[v]:
            raise SystemExit(f"--reuse {tmp}: its {v} run had settings {kept}, not {settings[v]}")
    running: list[tuple[str, subprocess.Popen]] = []
    while pending or running:
        while pending and len(running) < max(1, args.jobs):
            v = pending.pop(0)
            env = {**os.environ, "PYTHONPATH": str(Path(sources[v]).resolve())}
            cmd = [sys.executable, __file__, "--worker", v, "--raw", str(tmp / f"{v}.json")]
            cmd += ["--subsets", subsets[v], "--settings", json.dumps(settings[v])]
            running.append((v, subprocess.Popen(cmd + common, env=env)))
        v, proc = running.pop(0)
        if proc.wait():
            raise SystemExit(f"the {v} worker failed (exit {proc.returncode}); see above")
    raw = {v: json.loads((tmp / f"{v}.json").read_text()) for v in versions}
    for v in versions:
        expected = Path(sources[v]).resolve()
        if not Path(raw[v]["tlbench"]).resolve().is_relative_to(expected):
            raise SystemExit(f"the {v} worker imported {raw[v]['tlbench']}, not from {expected}")
    report = {
        "work_folder": str(tmp),
        "cpu": environment().get("cpu"),
        "cpu_count": os.cpu_count(),
        "load_average": os.getloadavg(),
        "command": " ".join(
            ["python", "benchmarks/bench_verdict_calibration.py", *(argv or sys.argv[1:])]
        ),
        "settings": {"studies": args.studies, "reps": args.reps, "seed": args.seed},
        "thresholds": {
            "coverage_min": COVERAGE_MIN,
            "equivalent_beyond_max": EQUIVALENT_MAX,
            "family_wise_max": FAMILY_MAX,
        },
        "versions": {
            v: {
                "describe": described[v],
                "adapter": " ".join(inspect.getdoc(verdict_adapters.ADAPTERS[v]).split()),
                "seconds": raw[v]["seconds"],
                "subsets": subsets[v],
            }
            for v in versions
        },
        "scenarios": [
            {
                "name": s.name,
                "text": s.text,
                "images": s.images,
                "group_size": s.group_size,
                "seeds": s.seeds,
                "margin": s.margin,
                "accuracies": list(s.accuracies),
                "truth": list(s.truth),
                "results": {v: summarise(s, raw[v]["scenarios"][s.name]) for v in versions},
            }
            for s in scenarios
        ],
    }
    write_json(args.out / "verdict_calibration.json", report)
    with atomic_file(args.out / "verdict_calibration.md") as page:
        page.write(markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
