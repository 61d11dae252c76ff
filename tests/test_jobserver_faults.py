"""The job server fails open (issue 31): whatever keeps it from starting or from
forking one job, jobs run in their own processes; it serves its own user only
(SO_PEERCRED, both ways), freezes the garbage collector before forking, and kills
a forked job that runs past its Snakemake ``runtime``.

Faults are simulated in the server's process by a ``sitecustomize`` module on
``PYTHONPATH`` (``FAULT`` selects one): the server is the real
``python -m tlbench.workflow.jobserver`` that :func:`jobserver.start` starts."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tlbench.workflow import jobserver

ROOT = Path(__file__).resolve().parents[1]

SITECUSTOMIZE = textwrap.dedent(
    """
    import errno, os
    fault = os.environ.get("FAULT", "")
    if fault == "no_pidfd_open":  # an older kernel or Python
        del os.pidfd_open
    elif fault == "pidfd_open_refused":  # seccomp: the call is refused
        def pidfd_open(pid, flags=0):
            raise PermissionError(errno.EPERM, "Operation not permitted (seccomp)")
        os.pidfd_open = pidfd_open
    elif fault == "pidfd_open_refused_for_children":  # only once a job is forked
        real = os.pidfd_open
        def pidfd_open(pid, flags=0):
            if pid != os.getpid():
                raise PermissionError(errno.EPERM, "Operation not permitted (seccomp)")
            return real(pid, flags)
        os.pidfd_open = pidfd_open
    elif fault == "first_fork_fails":
        real_fork, calls = os.fork, []
        def fork():
            calls.append(1)
            if len(calls) == 1:
                raise BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable")
            return real_fork()
        os.fork = fork
    elif fault == "other_uid":  # this process runs as another user
        os.getuid = lambda: 12345
    """
)

#: A job script: delegates like scripts/_bootstrap.py (a Snakemake job's ``snakemake``
#: object carries its resources), then reports where it ran.
JOB = textwrap.dedent(
    """
    import gc, json, os, sys, time
    from types import SimpleNamespace
    runtime = float(sys.argv[2]) if len(sys.argv) > 2 else None
    snakemake = SimpleNamespace(resources={"runtime": runtime} if runtime else {})
    from tlbench.workflow.job_client import delegate
    delegate()
    print(json.dumps({"pid": os.getpid(), "forked_from": os.environ.get("TLBENCH_JOB_FORKED_FROM"),
                      "frozen": gc.get_freeze_count()}), flush=True)
    if sys.argv[1] == "hang":
        open(os.environ["PIDFILE"], "w").write(str(os.getpid()))
        time.sleep(300)
    """
)


@pytest.fixture
def faults(tmp_path, monkeypatch):
    """PYTHONPATH with the fault-injecting sitecustomize; no server exported."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(site), str(ROOT / "src")]))
    monkeypatch.delenv(jobserver.ENV, raising=False)
    monkeypatch.delenv("FAULT", raising=False)
    return site


def _job(tmp_path: Path, *args: str, env: dict | None = None) -> tuple[int, list[dict], str]:
    script = tmp_path / "job.py"
    script.write_text(JOB)
    done = subprocess.run(
        [sys.executable, str(script), *args],
        cwd=tmp_path,
        env={**os.environ, "FAULT": "", **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )
    seen = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    return done.returncode, seen, done.stderr


def _start(monkeypatch, capfd, fault: str):
    monkeypatch.setenv("FAULT", fault)  # the server's environment (the jobs' is reset)
    process = jobserver.start(preload=())
    monkeypatch.delenv("FAULT")
    return process, capfd.readouterr().err


@pytest.mark.parametrize("fault", ["no_pidfd_open", "pidfd_open_refused"])
def test_a_server_that_cannot_watch_its_forks_is_one_warning(
    faults, tmp_path, monkeypatch, capfd, fault
):
    """Reproduced: without ``os.pidfd_open`` (or with it refused) the server started,
    then died at the first job's fork, and every job failed ("ended while running
    this job; the job failed"). Now it does not start: one warning, and every job runs
    in its own process."""
    process, err = _start(monkeypatch, capfd, fault)
    try:
        assert process is None and jobserver.ENV not in os.environ
        assert err.count("job server did not start") == 1 and "pidfd_open" in err
        for _ in range(2):
            code, seen, job_err = _job(tmp_path, "ok")
            assert code == 0 and len(seen) == 1 and seen[0]["forked_from"] is None
            assert job_err == ""  # no line per job: the one warning said it
    finally:
        jobserver.stop(process)


def test_a_fork_that_cannot_be_watched_refuses_that_job_only(faults, tmp_path, monkeypatch, capfd):
    """pidfd_open refused once the child exists (seccomp): the child is stopped
    before it runs anything, that job runs in its own process, the server serves on."""
    process, _ = _start(monkeypatch, capfd, "pidfd_open_refused_for_children")
    try:
        assert process is not None
        for _ in range(2):
            code, seen, err = _job(tmp_path, "ok")
            assert code == 0 and len(seen) == 1 and seen[0]["forked_from"] is None, err
            assert "cannot watch the forked job" in err and "seccomp" in err
            assert "runs in its own process" in err
        assert process.poll() is None
    finally:
        jobserver.stop(process)


def test_an_error_in_one_request_refuses_that_request_only(faults, tmp_path, monkeypatch, capfd):
    """Reproduced: a fork that failed (EAGAIN) ended the server's loop; the job and
    every later one failed. Now that job runs in its own process and the next is forked."""
    process, _ = _start(monkeypatch, capfd, "first_fork_fails")
    try:
        code, seen, err = _job(tmp_path, "ok")
        assert code == 0 and len(seen) == 1 and seen[0]["forked_from"] is None, err
        assert "Resource temporarily unavailable" in err and "runs in its own process" in err
        code, seen, err = _job(tmp_path, "ok")
        assert code == 0 and seen[0]["forked_from"] == os.environ[jobserver.ENV], err
    finally:
        jobserver.stop(process)


def test_the_server_refuses_a_peer_of_another_user(faults, tmp_path, monkeypatch, capfd):
    """SO_PEERCRED, the server's side: a connection from another uid gets a refusal
    and nothing is forked (simulated: the server believes it runs as uid 12345)."""
    process, _ = _start(monkeypatch, capfd, "other_uid")
    try:
        code, seen, err = _job(tmp_path, "ok")
        assert code == 0 and seen[0]["forked_from"] is None, err
        assert f"uid {os.getuid()}" in err and "uid 12345" in err
        assert "runs in its own process" in err
    finally:
        jobserver.stop(process)


def test_a_job_refuses_a_server_of_another_user(faults, tmp_path, monkeypatch, capfd):
    """SO_PEERCRED, the job's side: a job does not hand its environment and streams to
    a server of another uid (simulated: the job believes it runs as uid 12345)."""
    process, _ = _start(monkeypatch, capfd, "")
    try:
        code, seen, err = _job(tmp_path, "ok", env={"FAULT": "other_uid"})
        assert code == 0 and seen[0]["forked_from"] is None, err
        assert f"uid {os.getuid()}" in err and "uid 12345" in err
        assert "runs in its own process" in err
    finally:
        jobserver.stop(process)


def test_the_server_freezes_its_objects_before_forking(faults, tmp_path, monkeypatch, capfd):
    """gc.freeze(): the preloaded modules' objects are not scanned (nor their pages
    copied) by the forked job's garbage collector."""
    process, _ = _start(monkeypatch, capfd, "")
    try:
        code, seen, err = _job(tmp_path, "ok")
        assert code == 0 and seen[0]["forked_from"], err
        assert seen[0]["frozen"] > 0
    finally:
        jobserver.stop(process)


def test_a_hung_forked_job_is_killed_after_its_runtime(faults, tmp_path, monkeypatch, capfd):
    """Reproduced: nothing bounded a forked job that hung. Now the job's Snakemake
    ``runtime`` (minutes) goes with its request, and the server kills it after that,
    saying so."""
    process, _ = _start(monkeypatch, capfd, "")
    pidfile = tmp_path / "child.pid"
    try:
        started = time.monotonic()
        code, seen, err = _job(tmp_path, "hang", "0.05", env={"PIDFILE": str(pidfile)})
        took = time.monotonic() - started
        assert code == 1 and seen[0]["forked_from"], err
        assert "ran past its runtime of 0.05 min" in err and "killed" in err
        assert 3 <= took < 60
        child = int(pidfile.read_text())
        with pytest.raises(ProcessLookupError):
            os.kill(child, 0)
    finally:
        jobserver.stop(process)


def test_raw_peer_of_another_uid_gets_nothing_forked(faults, tmp_path, monkeypatch, capfd):
    """The server's check needs no cooperating client: a raw request is refused."""
    process, _ = _start(monkeypatch, capfd, "other_uid")
    try:
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        conn.connect(os.environ[jobserver.ENV])
        request = {"argv": ["x"], "cwd": "/", "env": {}, "key": jobserver.import_key(os.environ)}
        socket.send_fds(conn, [json.dumps(request).encode()], [0, 1, 2])
        reply = conn.recv(4096).decode()
        conn.close()
        assert "uid 12345" in reply and not reply.startswith("exit")
    finally:
        jobserver.stop(process)


def test_a_long_tmpdir_is_one_warning_and_the_workflow_runs(tmp_path):
    """Reproduced through the workflow: under a TMPDIR whose socket path passes the
    108 bytes of a Unix socket's address, ``onstart`` raised "the tlbench job server
    did not start" and snakemake ran nothing. Now: one warning, and the job runs in its
    own process."""
    tmpdir = tmp_path / ("a-long-temporary-folder-" * 5)
    tmpdir.mkdir()
    config = tmp_path / "study.yaml"
    config.write_text(
        "datasets:\n  tiny: {loader: synthetic, num_classes: 2, per_class: 6, image_size: 8}\n"
        "backbones:\n  cnn: {name: small_cnn, weights: none, kwargs: {widths: [4, 8]}}\n"
        "strategies:\n  scratch: {name: scratch, training: {epochs: 1}}\n"
        "augmentations:\n  none: {name: none}\n"
        "seeds: [0]\n"
        "matrix:\n  - {datasets: [tiny], backbones: [cnn], strategies: [scratch], augmentations: [none]}\n"
    )
    snakemake = Path(sys.executable).with_name("snakemake")
    done = subprocess.run(
        [str(snakemake), "--snakefile", str(ROOT / "Snakefile"), "--directory", str(tmp_path),
         "--configfile", str(config), "--cores", "1", "results/prepared/tiny"],
        env={**os.environ, "TMPDIR": str(tmpdir), "TF_CPP_MIN_LOG_LEVEL": "2",
             "PATH": f"{snakemake.parent}{os.pathsep}{os.environ['PATH']}"},
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-5000:]
    assert output.count("job server did not start") == 1, output[-5000:]
    assert "a Unix socket's at most 107" in output
    assert (tmp_path / "results/prepared/tiny/manifest.json").is_file()


def test_a_preload_that_fails_is_one_warning(faults, tmp_path, monkeypatch, capfd):
    """Reproduced: the socket was there before the imports ran, so a server that then
    failed to import (a broken environment) left every job to say "Connection
    refused". Now the socket appears once the imports are done: one warning."""
    monkeypatch.setenv("FAULT", "")
    process = jobserver.start(preload=("tlbench_no_such_module",))
    err = capfd.readouterr().err
    try:
        assert process is None and jobserver.ENV not in os.environ
        assert err.count("job server did not start") == 1 and "tlbench_no_such_module" in err
        code, seen, job_err = _job(tmp_path, "ok")
        assert code == 0 and seen[0]["forked_from"] is None and job_err == ""
    finally:
        jobserver.stop(process)


def test_a_snakemake_jobs_runtime_is_what_the_server_is_sent(tmp_path):
    """Through Snakemake: a job's ``resources.runtime`` (minutes) is read from the job
    script's ``snakemake`` object; a rule without one is not bounded."""
    (tmp_path / "Snakefile").write_text(
        'rule bounded:\n    output: "bounded.txt"\n    resources: runtime=5\n    script: "job.py"\n'
        'rule unbounded:\n    output: "unbounded.txt"\n    script: "job.py"\n'
    )
    (tmp_path / "job.py").write_text(
        "from tlbench.workflow.job_client import snakemake_runtime\n"
        "open(snakemake.output[0], 'w').write(repr(snakemake_runtime()))\n"
    )
    snakemake = Path(sys.executable).with_name("snakemake")
    subprocess.run(
        [str(snakemake), "--cores", "1", "bounded.txt", "unbounded.txt"],
        cwd=tmp_path, check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    assert (tmp_path / "bounded.txt").read_text() == "5.0"
    assert (tmp_path / "unbounded.txt").read_text() == "None"
