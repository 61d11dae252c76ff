"""The job server (tlbench.workflow.jobserver): jobs forked from one process that imported
Keras once, each still its own process with the job's working directory,
environment, command line, streams and exit status; a run trained there is the
run trained in a fresh interpreter, bit for bit."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from tlbench.workflow import jobserver

ROOT = Path(__file__).resolve().parents[1]

#: A job script: delegates like scripts/_bootstrap.py, then reports where it ran.
JOB = textwrap.dedent(
    """
    import json, os, sys
    from tlbench.workflow.job_client import delegate
    delegate()
    print(json.dumps({
        "pid": os.getpid(),
        "cwd": os.getcwd(),
        "argv": sys.argv,
        "job_var": os.environ.get("JOB_VAR"),
        "server_var": os.environ.get("TLBENCH_JOB_SERVER"),
        "forked_from": os.environ.get("TLBENCH_JOB_FORKED_FROM"),
    }), flush=True)
    print("to stderr", file=sys.stderr, flush=True)
    if sys.argv[1] == "fail":
        raise ValueError("the job failed")
    if sys.argv[1] == "sleep":
        open(sys.argv[2], "w").write(str(os.getpid()))
        import time
        time.sleep(120)
    sys.exit(int(sys.argv[1]))
    """
)


@pytest.fixture
def server(monkeypatch):
    """A job server that preloads nothing (the mechanism alone), its socket exported."""
    monkeypatch.delenv(jobserver.ENV, raising=False)
    process = jobserver.start(preload=())
    yield process
    jobserver.stop(process)


def _job(tmp_path: Path, *args: str, env: dict | None = None) -> subprocess.Popen:
    script = tmp_path / "job.py"
    script.write_text(JOB)
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    return subprocess.Popen(
        [sys.executable, str(script), *args],
        cwd=work,
        env={**os.environ, "JOB_VAR": "from the job", **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(process: subprocess.Popen) -> tuple[int, dict, str]:
    out, err = process.communicate(timeout=60)
    return process.returncode, json.loads(out.splitlines()[0]), err


def test_a_job_runs_forked_with_its_cwd_environment_argv_streams_and_status(server, tmp_path):
    process = _job(tmp_path, "3")
    code, seen, err = _finish(process)
    assert code == 3
    assert seen["pid"] != process.pid  # another process: the server's child
    assert seen["cwd"] == str(tmp_path / "work")
    assert seen["argv"] == [str(tmp_path / "job.py"), "3"]
    assert seen["job_var"] == "from the job"
    assert seen["server_var"] is None  # the child does not delegate again
    assert seen["forked_from"] == os.environ[jobserver.ENV]
    assert "to stderr" in err


def test_an_exception_in_a_forked_job_is_status_1_with_its_traceback(server, tmp_path):
    code, seen, err = _finish(_job(tmp_path, "fail"))
    assert code == 1
    assert seen["forked_from"]
    assert "ValueError: the job failed" in err


def test_a_job_whose_import_time_environment_differs_runs_in_its_own_process(server, tmp_path):
    process = _job(tmp_path, "0", env={"KERAS_BACKEND": "a-backend-the-server-lacks"})
    code, seen, err = _finish(process)
    assert code == 0
    assert seen["pid"] == process.pid
    assert seen["forked_from"] is None
    assert "KERAS_BACKEND" in err and "runs in its own process" in err


def test_no_job_is_forked_once_a_backend_runtime_ran_in_the_server(tmp_path, monkeypatch):
    """A preloaded module that runs a TensorFlow op starts its thread pools in the
    server; a job forked from it could hang (it did: the forked run never finished),
    so every job runs in its own process, saying why."""
    (tmp_path / "runs_an_op.py").write_text("import keras\nkeras.ops.ones((1,)) * 2\n")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), *sys.path]))
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    monkeypatch.delenv(jobserver.ENV, raising=False)
    process = jobserver.start(preload=("runs_an_op",))
    try:
        job = _job(tmp_path, "0")
        code, seen, err = _finish(job)
    finally:
        jobserver.stop(process)
    assert (code, seen["pid"], seen["forked_from"]) == (0, job.pid, None)
    assert "TensorFlow's runtime started in the job server before the fork" in err


def test_a_job_runs_in_its_own_process_when_tlbench_sources_changed(tmp_path, monkeypatch):
    """The server compares tlbench's sources with those it imported at every request."""
    server = jobserver.Server(str(tmp_path / "socket"))
    try:
        request = {"argv": ["x"], "cwd": "/", "env": {}, "key": jobserver.import_key(os.environ)}
        assert server._refusal(request) is None
        path, mtime, size = server.sources[0]
        server.sources[0] = (path, mtime - 1, size)  # as if the file changed since
        assert "sources changed" in server._refusal(request)
    finally:
        server.close()


def test_without_a_server_the_job_runs_in_its_own_process(tmp_path, monkeypatch):
    monkeypatch.delenv(jobserver.ENV, raising=False)
    process = _job(tmp_path, "0")
    code, seen, err = _finish(process)
    assert (code, seen["pid"], err.strip()) == (0, process.pid, "to stderr")


def test_a_gone_server_is_said_and_the_job_runs_in_its_own_process(tmp_path):
    process = _job(tmp_path, "0", env={jobserver.ENV: str(tmp_path / "no-socket")})
    code, seen, err = _finish(process)
    assert (code, seen["pid"]) == (0, process.pid)
    assert "no-socket" in err


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as handle:  # a zombie is gone
            return handle.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:  # reaped between the two looks (CI: seen once)
        return False


def _pid_written(pidfile: Path, job: subprocess.Popen) -> int:
    """The pid the forked job writes into ``pidfile`` once it runs (not the job's own)."""
    deadline = time.monotonic() + 30
    while not pidfile.exists() or not pidfile.read_text():
        assert time.monotonic() < deadline and job.poll() is None
        time.sleep(0.05)
    child = int(pidfile.read_text())
    assert child != job.pid and _alive(child)
    return child


def _wait_gone(pid: int) -> None:
    deadline = time.monotonic() + 10
    while _alive(pid):
        assert time.monotonic() < deadline, "the forked job outlived its job"
        time.sleep(0.05)


def test_a_killed_job_kills_its_forked_process(server, tmp_path):
    pidfile = tmp_path / "child.pid"
    process = _job(tmp_path, "sleep", str(pidfile))
    child = _pid_written(pidfile, process)
    process.send_signal(signal.SIGKILL)  # as Snakemake kills a job
    process.wait()
    _wait_gone(child)


def test_jobs_of_a_killed_server_fail_and_their_processes_die(server, tmp_path):
    """A server killed mid-job (e.g. by the out-of-memory killer): the job fails, saying
    so, and its forked process dies with the server; it is not run a second time beside
    a process that may still write its outputs."""
    pidfile = tmp_path / "child.pid"
    process = _job(tmp_path, "sleep", str(pidfile))
    child = _pid_written(pidfile, process)
    server.kill()
    out, err = process.communicate(timeout=30)
    assert process.returncode == 1
    assert "ended while running this job; the job failed" in err
    assert out.count('"pid"') == 1  # the job did not start again in its own process
    _wait_gone(child)


def test_the_server_exits_when_the_workflow_process_is_gone(tmp_path):
    path = tmp_path / "socket"
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    server = subprocess.Popen(
        [sys.executable, "-m", "tlbench.workflow.jobserver", str(path), str(gone.pid)]
    )
    assert server.wait(timeout=20) == 0
    assert not path.exists()


def test_stop_ends_the_server_and_unexports_its_socket(monkeypatch):
    monkeypatch.delenv(jobserver.ENV, raising=False)
    process = jobserver.start(preload=())
    path = os.environ[jobserver.ENV]
    jobserver.stop(process)
    assert process.returncode is not None
    assert jobserver.ENV not in os.environ
    assert not os.path.exists(path) and not os.path.exists(os.path.dirname(path))


RUN = textwrap.dedent(
    """
    import json, sys
    sys.path.insert(0, {tests!r})
    from tlbench.workflow.job_client import delegate
    delegate()
    from tlbench.workflow.jobs import limit_threads
    limit_threads(1)
    from engine_helpers import tiny_spec
    from tlbench.training import engine
    spec = tiny_spec(sys.argv[1], "fine_tune", seed=3)
    spec["training"].update(epochs=3, early_stopping={{"patience": 1, "monitor": "val_accuracy"}})
    engine.run(spec, sys.argv[2])
    """
)


def test_a_run_forked_from_the_server_is_the_run_of_a_fresh_process(
    tiny_prepared, tmp_path, monkeypatch
):
    """Keras imported before the fork changes nothing a run computes: the same history
    and predictions as in a fresh interpreter (threads limited in the job, as in a
    workflow's job)."""
    script = tmp_path / "run.py"
    script.write_text(RUN.format(tests=str(ROOT / "tests")))
    monkeypatch.delenv(jobserver.ENV, raising=False)
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    fresh, forked = tmp_path / "fresh", tmp_path / "forked"
    subprocess.run([sys.executable, script, tiny_prepared, fresh], check=True, timeout=300)
    process = jobserver.start(preload=("keras", "tlbench.training.engine"))
    try:
        subprocess.run([sys.executable, script, tiny_prepared, forked], check=True, timeout=300)
    finally:
        jobserver.stop(process)
    runs = {p: json.loads((p / "metrics.json").read_text()) for p in (fresh, forked)}
    assert runs[fresh]["environment"]["job_process"] == "own process"
    assert runs[forked]["environment"]["job_process"] == "forked from the job server"

    def history(folder: Path) -> list[list[str]]:  # without the seconds column
        return [line.split(",")[:-1] for line in (folder / "history.csv").read_text().split()]

    assert history(forked) == history(fresh)
    with np.load(fresh / "predictions.npz") as a, np.load(forked / "predictions.npz") as b:
        assert np.array_equal(a["y_prob"], b["y_prob"])
