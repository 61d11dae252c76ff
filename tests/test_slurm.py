"""The workflow on a real SLURM cluster: `snakemake --profile slurm` (issue 6).

The cluster is real: munged, slurmctld and slurmd from Debian's packages, one
node on localhost (tests/slurm_cluster.py). The tests run the user's command,
``snakemake --profile slurm`` from the project root, adding only what this test
cluster needs (``--slurm-status-command squeue``: no accounting here, so no
``sacct``; ``--slurm-no-account``). The cluster offers fake GPUs, so the
shipped profile's GPU requests are scheduled as on a real site.

Skipped (with the reason) only where the SLURM binaries are absent outside CI;
in CI (``CI=true`` or ``TLBENCH_REQUIRE_SHARED=1``) their absence is a failure.
"""

from __future__ import annotations

import copy
import csv
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import snakemake_fork
import yaml
from slurm_cluster import SlurmCluster, missing_binaries

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).with_name("snakemake")
TINY = ROOT / "configs/test/tiny.yaml"
TUNING_TINY = ROOT / "configs/test/tuning_tiny.yaml"  # has the tuning rule
SLURM_STUDY = ROOT / "configs/test/slurm.yaml"
PACKED_STUDY = ROOT / "configs/test/slurm_packed.yaml"  # 24 cheap runs, 2 expensive
TRAINING_RULES = (
    "trained_run",
    "pretrained_backbone",
    "backbone_features",
    "tuned_hyperparameters",
)
# What this test cluster needs beyond the shipped profile (no accounting: no sacct).
TEST_CLUSTER_ARGS = (
    "--slurm-status-command",
    "squeue",
    "--slurm-no-account",
    "--slurm-init-seconds-before-status-checks",
    "1",
    "--latency-wait",
    "5",
)


def _in_ci() -> bool:
    return (
        os.environ.get("CI", "").lower() in ("true", "1")
        or os.environ.get("TLBENCH_REQUIRE_SHARED") == "1"
    )


def _require_slurm() -> None:
    missing = missing_binaries()
    if missing:
        reason = (
            f"SLURM binaries not found: {', '.join(missing)} "
            "(apt-get install slurmctld slurmd slurm-client munge)"
        )
        if _in_ci():
            pytest.fail(reason + " — required in CI")
        pytest.skip(reason)
    if os.geteuid() != 0 and not _in_ci():
        pytest.skip("the test cluster's slurmd must run as root")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """One real SLURM cluster for the whole module, stopped by PID at the end."""
    _require_slurm()
    with SlurmCluster(tmp_path_factory.mktemp("slurm")) as running:
        yield running


def snakemake(*args: str, env: dict | None = None, timeout: int = 600, fresh: bool = False):
    """Run snakemake from the project root (where `--profile slurm` is looked up):
    forked from a process that has imported Snakemake once (tests/snakemake_fork.py:
    dry runs), or with ``fresh`` the `snakemake` program itself (a study that runs jobs)."""
    full_env = {**(env or os.environ), "TF_CPP_MIN_LOG_LEVEL": "2"}
    full_env["PATH"] = f"{SNAKEMAKE.parent}{os.pathsep}{full_env.get('PATH', '')}"
    if not fresh:
        return snakemake_fork.run(args, cwd=ROOT, env=full_env, timeout=timeout)
    return subprocess.run(
        [str(SNAKEMAKE), *args],
        cwd=ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def study_args(workdir: Path, config: Path) -> list[str]:
    return [
        "--snakefile",
        str(ROOT / "Snakefile"),
        "--directory",
        str(workdir),
        "--configfile",
        str(config),
    ]


def slurm_args(workdir: Path, config: Path) -> list[str]:
    """The user's command plus what this test cluster needs."""
    return ["--profile", "slurm", *study_args(workdir, config), *TEST_CLUSTER_ARGS]


def output_of(result: subprocess.CompletedProcess) -> str:
    return result.stdout + result.stderr


def metrics_files(results: Path) -> dict[str, dict]:
    """metrics.json of every run folder, by path relative to results/runs."""
    return {
        str(p.parent.relative_to(results / "runs")): json.loads(p.read_text())
        for p in sorted((results / "runs").rglob("metrics.json"))
    }


def relative_files(folder: Path, skip: tuple[str, ...] = ("logs",)) -> set[str]:
    return {
        str(p.relative_to(folder))
        for p in folder.rglob("*")
        if p.is_file() and p.relative_to(folder).parts[0] not in skip
    }


# --------------------------------------------------------------------------- no cluster needed


def test_profile_link_and_resources_dry_run(tmp_path):
    """`--profile slurm` resolves from the root: GPU for training, CPU preparation, local aggregation."""
    assert (ROOT / "slurm").resolve() == (ROOT / "profiles/slurm").resolve()
    profile = yaml.safe_load((ROOT / "profiles/slurm/config.yaml").read_text())
    assert profile["executor"] == "slurm"
    assert profile["slurm-requeue"] is True
    assert "slurm-status-command" not in profile  # sites with accounting use sacct (default)
    stdout = ""
    for config in (TINY, TUNING_TINY):
        result = snakemake("-n", *study_args(tmp_path / config.stem, config), "--profile", "slurm")
        assert result.returncode == 0, output_of(result)[-3000:]
        stdout += result.stdout
    jobs = re.split(r"\n(?=(?:local)?rule \w+:)", stdout)
    seen = set()
    for block in jobs:
        match = re.match(r"(?:local)?rule (\w+):", block.strip())
        if not match:
            continue
        rule = match.group(1)
        seen.add(rule)
        resources = re.search(r"resources: (.*)", block)
        if rule in TRAINING_RULES:
            assert "gpu=1" in resources.group(1), block
        elif rule == "prepared_dataset":
            assert "gpu=0" in resources.group(1), block
    assert {*TRAINING_RULES, "prepared_dataset", "study_csv"} <= seen


def test_profile_site_settings_reach_every_slurm_rule(tmp_path):
    """Uncommenting the SITE partition/account lines sets them on every SLURM rule
    (they survive profiles/default, which Snakemake applies after a user's profile)."""
    text = (ROOT / "profiles/slurm/config.yaml").read_text()
    for key in ("slurm_partition", "slurm_account"):
        text = re.sub(rf"^(\s*)# ({key}: )", r"\1\2", text, flags=re.MULTILINE)
    profile = tmp_path / "site"
    profile.mkdir()
    (profile / "config.yaml").write_text(text)
    stdout = ""
    for config in (TINY, TUNING_TINY):
        result = snakemake(
            "-n", *study_args(tmp_path / config.stem, config), "--profile", str(profile)
        )
        assert result.returncode == 0, output_of(result)[-3000:]
        stdout += result.stdout
    checked = set()
    for block in re.split(r"\n(?=rule \w+:)", stdout):
        match = re.match(r"rule (\w+):", block.strip())
        if not match:
            continue
        checked.add(match.group(1))
        resources = re.search(r"resources: (.*)", block).group(1)
        if match.group(1) in TRAINING_RULES:
            assert "slurm_partition=gpu" in resources and "slurm_account=my_project" in resources
        elif match.group(1) == "prepared_dataset":
            assert "slurm_partition=cpu" in resources and "slurm_account=my_project" in resources
    assert {*TRAINING_RULES, "prepared_dataset"} <= checked


def test_profile_packs_cheap_runs_dry_run(tmp_path):
    """With `--profile slurm` the 24 runs that train no backbone form 3 group jobs of 8
    (the profile's `group-components`) and the score one of its own; the 2 scratch runs
    and the feature cache stay jobs of their own."""
    result = snakemake("-n", *study_args(tmp_path, PACKED_STUDY), "--profile", "slurm")
    assert result.returncode == 0, output_of(result)[-3000:]
    # Jobs start at an unindented "[time]" line (members of a group are indented).
    jobs = re.split(r"\n(?=\[[^\]\n]*\](?: Group job \w+[^\n]*)?\n)", result.stdout)
    groups, single = {}, []
    for job in jobs:
        group = re.match(r"\[[^\]]*\] Group job (\w+)", job)
        rules = re.findall(r"^ *rule (\w+):", job, flags=re.MULTILINE)
        strategies = re.findall(r"wildcards: .*strategy=(\w+)", job)
        if group:
            groups.setdefault(group.group(1), []).append((rules, set(strategies)))
        elif rules == ["trained_run"]:
            single += strategies
    assert [len(rules) for rules, _ in groups["cheap_runs"]] == [8, 8, 8], groups
    assert all(s <= {"feature_extraction", "linear_probe"} for _, s in groups["cheap_runs"])
    assert [rules for rules, _ in groups["cheap_scores"]] == [["transferability_scores"]]
    assert sorted(single) == ["scratch", "scratch"], single
    assert re.search(r"^rule backbone_features:", result.stdout, flags=re.MULTILINE)


def test_workstation_profile_dry_run(tmp_path):
    result = snakemake("-n", *study_args(tmp_path, TINY), "--profile", "profiles/workstation")
    assert result.returncode == 0, output_of(result)[-3000:]


# --------------------------------------------------------------------------- real cluster


def _job_of(cluster: SlurmCluster, needle: str) -> str:
    """The id of the running SLURM job whose record mentions ``needle``."""
    for job in cluster.jobs():
        if job["state"] == "RUNNING":
            record = cluster.command("scontrol", "show", "job", "-o", job["id"])
            if needle in record:
                return job["id"]
    raise LookupError(f"no running job mentions {needle!r}: {cluster.jobs()}")


def _epoch(workdir: Path) -> int:
    """The last checkpointed epoch of the fit in progress (0: none)."""
    return ((_progress(workdir) or {}).get("current") or {}).get("epoch", 0)


def _progress(workdir: Path) -> dict | None:
    try:
        return json.loads((workdir / "progress.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


@pytest.mark.slow
def test_study_on_slurm_survives_cancelled_job(cluster, tmp_path):
    """Training runs as SLURM jobs. Mid-run, one job is requeued (as on preemption): it
    resumes under the same job id. The other is cancelled: Snakemake reports it;
    --rerun-incomplete resumes it from its checkpoint, retrains nothing finished,
    and the results have the shape of a local run's."""
    study = yaml.safe_load(SLURM_STUDY.read_text())
    epochs = study["training"]["epochs"]
    results = tmp_path / study["results"]
    victim = results / "runs/target/cnn/scratch/none/seed0"
    survivor = results / "runs/target/cnn/scratch/none/seed1"
    work = Path(f"{victim}.work")
    survivor_work = Path(f"{survivor}.work")
    env = {**cluster.env, "TF_CPP_MIN_LOG_LEVEL": "2"}
    env["PATH"] = f"{SNAKEMAKE.parent}{os.pathsep}{env['PATH']}"
    first_log = tmp_path / "first_run.log"
    with open(first_log, "w") as log:
        proc = subprocess.Popen(
            [str(SNAKEMAKE), *slurm_args(tmp_path, SLURM_STUDY)],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 240
        while min(_epoch(work), _epoch(survivor_work)) < 2:
            assert proc.poll() is None, first_log.read_text()[-5000:]
            assert time.monotonic() < deadline, "the runs never checkpointed 2 epochs"
            time.sleep(0.1)
        requeued = _job_of(cluster, "Comment=rule_trained_run_wildcards_target_cnn_scratch_none_1")
        job_id = _job_of(cluster, "Comment=rule_trained_run_wildcards_target_cnn_scratch_none_0")
        cluster.command("scontrol", "requeue", requeued)  # as SLURM does on preemption
        cluster.command("scancel", job_id)
        proc.wait(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    out = first_log.read_text()
    assert proc.returncode != 0
    assert re.search(rf"SLURM-job '{job_id}' failed, SLURM status is: 'CANCELLED'", out), out[
        -5000:
    ]
    assert "Error in rule trained_run" in out
    assert not victim.exists()
    checkpoint = _progress(work)["current"]["epoch"]
    assert 2 <= checkpoint < epochs
    survivor_metrics = survivor / "metrics.json"
    assert survivor_metrics.exists(), out[-5000:]
    before = survivor_metrics.stat().st_mtime_ns
    # The requeued job ran again under the same id and resumed from its checkpoint.
    requeued_metrics = json.loads(survivor_metrics.read_text())
    assert requeued_metrics["resumed"] is True and requeued_metrics["epochs_run"] == epochs
    assert requeued_metrics["environment"]["slurm_job_id"] == requeued
    assert not survivor_work.exists()

    rerun = snakemake(
        *slurm_args(tmp_path, SLURM_STUDY), "--rerun-incomplete", env=cluster.env, fresh=True
    )
    out = output_of(rerun)
    assert rerun.returncode == 0, out[-5000:]
    assert survivor_metrics.stat().st_mtime_ns == before  # the finished run is not retrained
    assert "seed=1" not in "".join(re.findall(r"rule trained_run:\n(?:    .*\n)*", out))
    metrics = json.loads((victim / "metrics.json").read_text())
    assert metrics["resumed"] is True and metrics["epochs_run"] == epochs
    assert metrics["environment"]["slurm_job_id"] not in (None, job_id)
    with open(victim / "history.csv") as f:
        assert [int(r["epoch"]) for r in csv.DictReader(f)] == list(range(1, epochs + 1))
    log = (results / "logs/runs/target/cnn/scratch/none/seed0.log").read_text()
    trained = [int(e) for e in re.findall(rf"Epoch (\d+)/{epochs}", log)]
    assert trained[0] == checkpoint + 1, trained  # nothing finished was lost
    assert not work.exists()

    # Every training job was a SLURM job; the outputs have the shape of a local run's.
    jobs = {job["id"]: job for job in cluster.jobs()}
    slurm_metrics = metrics_files(results)
    ids = [m["environment"]["slurm_job_id"] for m in slurm_metrics.values()]
    assert len(ids) == 2 and len(set(ids)) == 2 and all(i in jobs for i in ids), ids
    assert all(jobs[i]["state"] == "COMPLETED" for i in ids)
    for rule in ("study_csv", "general_tables", "training_curves", "environment", "all"):
        assert f"localrule {rule}:" in out, f"{rule} should run on the submit host"
    assert "localrule trained_run:" not in out
    local_dir = tmp_path / "local"
    local = snakemake(*study_args(local_dir, SLURM_STUDY), "--cores", "2", fresh=True)
    assert local.returncode == 0, output_of(local)[-5000:]
    local_results = local_dir / study["results"]
    assert relative_files(results) == relative_files(local_results)
    local_metrics = metrics_files(local_results)
    assert slurm_metrics.keys() == local_metrics.keys()
    for run, metrics in slurm_metrics.items():
        assert metrics.keys() == local_metrics[run].keys(), run
        assert metrics["status"] == local_metrics[run]["status"] == "ok"
        assert local_metrics[run]["environment"]["slurm_job_id"] is None
    with open(results / "tables/study.csv") as f:
        slurm_rows = list(csv.DictReader(f))
    with open(local_results / "tables/study.csv") as f:
        local_rows = list(csv.DictReader(f))
    assert len(slurm_rows) == len(local_rows) == 2
    assert slurm_rows[0].keys() == local_rows[0].keys()


@pytest.mark.slow
def test_failing_job_reports_reason_and_others_finish(cluster, tmp_path):
    """An invalid spec fails in its SLURM job: reason and SLURM log shown; --keep-going finishes the rest."""
    study = yaml.safe_load(SLURM_STUDY.read_text())
    study["training"]["epochs"] = 1
    study["strategies"]["broken"] = {"name": "two_phase", "params": {"unfreeze": "no_such_block"}}
    study["matrix"] = [
        {
            "datasets": ["target"],
            "backbones": ["cnn"],
            "strategies": ["scratch", "broken"],
            "augmentations": ["none"],
            "seeds": [0],
        }
    ]
    config = tmp_path / "study.yaml"
    config.write_text(yaml.safe_dump(study))
    results = tmp_path / study["results"]
    runs = [f"{study['results']}/runs/target/cnn/{s}/none/seed0" for s in ("scratch", "broken")]
    result = snakemake(
        *slurm_args(tmp_path, config), "--keep-going", *runs, env=cluster.env, fresh=True
    )
    out = output_of(result)
    assert result.returncode != 0
    assert "Error in rule trained_run" in out
    assert "no_such_block" in out, out[-5000:]  # the reason, from the job's log
    logs = re.findall(r"\S*slurm_logs\S*\.log", out)
    assert logs, out[-5000:]
    assert any((tmp_path / log).exists() or Path(log).exists() for log in logs), logs
    assert (results / "runs/target/cnn/scratch/none/seed0/metrics.json").exists()
    assert not (results / "runs/target/cnn/broken/none/seed0").exists()


# --------------------------------------------------------------------------- packed jobs


def _job_record(cluster: SlurmCluster, job_id: str) -> dict[str, str]:
    """`scontrol show job` of one job as a dict (Comment, TimeLimit, MinMemoryNode, ...)."""
    record = cluster.command("scontrol", "show", "job", "-o", job_id)
    return dict(field.split("=", 1) for field in record.split() if "=" in field)


def _finished_runs(workdir: Path, runs: list[str]) -> dict[str, tuple[int, str]]:
    """Finished runs: (metrics.json mtime in ns, SLURM job id) by run folder."""
    finished = {}
    for run in runs:
        metrics = workdir / run / "metrics.json"
        if metrics.exists():
            job = json.loads(metrics.read_text())["environment"]["slurm"]["job_id"]
            finished[run] = (metrics.stat().st_mtime_ns, job)
    return finished


@pytest.mark.slow
def test_cheap_runs_share_packed_jobs_and_a_cancelled_pack_redoes_only_its_rest(cluster, tmp_path):
    """The profile packs the runs that train no backbone (docs/slurm.md "Packed jobs"):
    24 of them take at most 6 SLURM jobs (the profile's 8 a job: 3, plus the resubmitted
    rest of the cancelled one), each asking for the sum of its runs' time and one run's
    memory, while the 2 scratch runs stay one job each. A packed job cancelled after its
    first run leaves that run in place; on the rerun only its unfinished runs are redone,
    and every run keeps its own log and records the SLURM job it ran in."""
    study = yaml.safe_load(PACKED_STUDY.read_text())
    results = tmp_path / study["results"]
    cheap, expensive = [], []
    for block in study["matrix"]:
        for strategy in block["strategies"]:
            for seed in block["seeds"]:
                run = f"{study['results']}/runs/target/cnn/{strategy}/none/seed{seed}"
                (expensive if strategy == "scratch" else cheap).append(run)
    assert len(cheap) >= 24 and len(expensive) == 2
    earlier = {job["id"] for job in cluster.jobs()}  # the module's cluster ran other tests
    env = {**cluster.env, "TF_CPP_MIN_LOG_LEVEL": "2"}
    env["PATH"] = f"{SNAKEMAKE.parent}{os.pathsep}{env['PATH']}"
    args = [str(SNAKEMAKE), *slurm_args(tmp_path, PACKED_STUDY), *expensive, *cheap]
    first_log = tmp_path / "first_run.log"
    start = time.monotonic()
    with open(first_log, "w") as log:
        proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        # Cancel the first packed job that has finished a run while others wait in it.
        deadline = time.monotonic() + 480
        victim = None
        while victim is None:
            assert proc.poll() is None, first_log.read_text()[-5000:]
            assert time.monotonic() < deadline, "no packed run finished"
            running = {j["id"] for j in cluster.jobs() if j["state"] == "RUNNING"}
            for _, job in _finished_runs(tmp_path, cheap).values():
                if job in running:
                    victim = job
                    break
            time.sleep(0.2)
        cluster.command("scancel", victim)
        proc.wait(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
    first_seconds = time.monotonic() - start
    out = first_log.read_text()
    assert proc.returncode != 0, out[-5000:]
    assert "Error in group cheap_runs" in out, out[-5000:]
    assert re.search(rf"JOB {victim} ON \S+ CANCELLED", out), out[-5000:]  # its SLURM log
    kept = _finished_runs(tmp_path, cheap)
    done_in_victim = [run for run, (_, job) in kept.items() if job == victim]
    assert done_in_victim, "the cancelled job's finished runs were removed"
    unfinished = [run for run in cheap if run not in kept]
    assert unfinished, "the cancelled job had finished all its runs"
    assert all(not (tmp_path / run).exists() for run in unfinished)

    rerun_start = time.monotonic()
    rerun = snakemake(
        *slurm_args(tmp_path, PACKED_STUDY), *expensive, *cheap, env=cluster.env, fresh=True
    )
    rerun_seconds = time.monotonic() - rerun_start
    assert rerun.returncode == 0, output_of(rerun)[-5000:]
    after = _finished_runs(tmp_path, cheap)
    assert set(after) == set(cheap)
    for run, (mtime, job) in kept.items():  # finished runs were not redone
        assert after[run] == (mtime, job), run
    resubmitted = {after[run][1] for run in unfinished}
    assert len(resubmitted) == 1 and resubmitted.isdisjoint({victim}), resubmitted

    # SLURM jobs: the cheap runs' jobs are the packed ones, at most 6 of them.
    jobs = {
        job["id"]: _job_record(cluster, job["id"])
        for job in cluster.jobs()
        if job["id"] not in earlier
    }
    packed = {i for i, r in jobs.items() if r["Comment"].startswith("rule_cheap_runs")}
    ran_in = {job for _, job in after.values()}
    assert ran_in <= packed and len(packed) <= 6, (packed, ran_in)
    assert len(ran_in) < len(cheap)  # fails with `--group-components cheap_runs=1`
    runtime, per_run = study["resources"]["packed_runtime"], 8  # the profile's pack size
    for job_id in packed - resubmitted:  # whole packs: the summed time, one run's memory
        assert jobs[job_id]["TimeLimit"] == f"00:{per_run * runtime:02d}:00", jobs[job_id]
        assert jobs[job_id]["MinMemoryNode"] == f"{study['resources']['mem_mb']}M"
    expensive_jobs = [
        json.loads((tmp_path / run / "metrics.json").read_text())["environment"]
        for run in expensive
    ]
    assert all(
        jobs[e["slurm_job_id"]]["Comment"].startswith("rule_trained_run") for e in expensive_jobs
    )
    for run in cheap:  # each run its own log, its own SLURM step
        log = results / "logs" / Path(run).relative_to(study["results"]).with_suffix(".log")
        assert log.exists(), log
        slurm = json.loads((tmp_path / run / "metrics.json").read_text())["environment"]["slurm"]
        assert slurm["step_id"] is not None
    # A changed spec reruns its own runs, not their packs: linear_probe's max_iter.
    changed = copy.deepcopy(study)
    changed["strategies"]["linear_probe"]["params"] = {"max_iter": 50}
    changed_config = tmp_path / "changed.yaml"
    changed_config.write_text(yaml.safe_dump(changed))
    dry = snakemake("-n", *slurm_args(tmp_path, changed_config), *expensive, *cheap)
    assert dry.returncode == 0, output_of(dry)[-3000:]
    due = re.findall(r"wildcards: .*strategy=(\w+), augmentation=none, seed=(\d+)", dry.stdout)
    probes = [run for run in cheap if "/linear_probe/" in run]
    assert sorted(f"/{strategy}/none/seed{seed}" for strategy, seed in due) == sorted(
        run[run.index("/linear_probe/") :] for run in probes
    ), due
    print(
        f"packed study: {len(packed)} SLURM jobs for {len(cheap)} cheap runs; "
        f"first call {first_seconds:.0f} s (one pack cancelled), rerun {rerun_seconds:.0f} s"
    )
