"""A real one-node SLURM cluster on localhost for tests (Debian's slurm-wlm + munge).

:class:`SlurmCluster` writes a munge key and a minimal ``slurm.conf``
(select/cons_tres, proctrack/linuxproc, task/none, no accounting, a fake
``gpu`` gres so GPU requests are schedulable) into a temporary folder, starts
``munged``, ``slurmctld`` and ``slurmd -N localhost`` in the foreground as
children of the test (so they are stopped by PID), and waits until the node is
idle. Every file — config, state, spool, logs, PID files, the munge socket —
lives under that folder; the daemons listen on free local ports. Clients
(``sbatch``, ``squeue``, Snakemake's slurm plugin) reach the cluster through
:attr:`SlurmCluster.env` (``SLURM_CONF``).

Without accounting ``sacct`` cannot answer, so a workflow run against this
cluster must query job states with ``squeue``; ``MinJobAge`` keeps finished
jobs visible to ``squeue`` for an hour.

Usage::

    with SlurmCluster(tmp_path / "slurm") as cluster:
        subprocess.run(["sbatch", "--wrap", "true"], env=cluster.env)
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "squeue", "scancel", "scontrol", "srun", "sinfo")
PARTITION = "debug"
NODE = "localhost"
FAKE_GPUS = 2
#: Job step credential lifetime (``AuthInfo=cred_expire``), which is also how long a
#: requeued job waits before it may start again: SLURM's default, 120 s, would leave
#: tests/test_slurm.py idle for two minutes after its `scontrol requeue`.
CRED_EXPIRE_SECONDS = 10


def missing_binaries() -> list[str]:
    """The SLURM/munge programs not found on PATH (or in /usr/sbin)."""
    path = f"{os.environ.get('PATH', '')}{os.pathsep}/usr/sbin{os.pathsep}/sbin"
    return [name for name in (*DAEMONS, *CLIENTS) if shutil.which(name, path=path) is None]


def _binary(name: str) -> str:
    path = f"{os.environ.get('PATH', '')}{os.pathsep}/usr/sbin{os.pathsep}/sbin"
    found = shutil.which(name, path=path)
    if found is None:
        raise FileNotFoundError(
            f"{name} not found on PATH or in /usr/sbin (apt-get install slurm-wlm munge)"
        )
    return found


def _free_ports(count: int) -> list[int]:
    """``count`` distinct free TCP ports on localhost."""
    sockets, ports = [], []
    for _ in range(count):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        sockets.append(s)
        ports.append(s.getsockname()[1])
    for s in sockets:
        s.close()
    return ports


def _memory_mb() -> int:
    """Total memory of this machine in MB (the node's RealMemory, with a margin)."""
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(int(line.split()[1]) / 1024 * 0.9)
    raise RuntimeError("MemTotal not found in /proc/meminfo")


class SlurmCluster:
    """munged + slurmctld + slurmd on localhost, all state under ``root``."""

    def __init__(self, root: str | os.PathLike, cpus: int | None = None, timeout: float = 60):
        self.root = Path(root)
        self.cpus = cpus or os.cpu_count() or 1
        self.timeout = timeout
        self.procs: dict[str, subprocess.Popen] = {}
        self.conf = self.root / "etc" / "slurm.conf"
        self.socket = self.root / "munge" / "munge.socket"
        self.logs = self.root / "log"
        self.bin = self.root / "bin"
        self.env = {
            **os.environ,
            "SLURM_CONF": str(self.conf),
            "PATH": f"{self.bin}{os.pathsep}{os.environ.get('PATH', '')}{os.pathsep}/usr/sbin",
        }
        for key in [k for k in self.env if k.startswith(("SLURM_", "SBATCH_", "SRUN_"))]:
            if key != "SLURM_CONF":
                del self.env[key]

    # ------------------------------------------------------------------ files

    def write_files(self) -> None:
        """Munge key, slurm.conf, gres.conf and the state folders."""
        for sub in ("etc", "munge", "log", "state", "spool", "run"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        (self.root / "munge").chmod(0o700)
        key = self.root / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        ctld_port, slurmd_port = _free_ports(2)
        user = _user()
        host = socket.gethostname().split(".")[0]
        r = self.root
        self.conf.write_text(
            f"""# Test cluster written by tests/slurm_cluster.py
ClusterName=tlbenchtest
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser={user}
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={self.socket},cred_expire={CRED_EXPIRE_SECONDS}
StateSaveLocation={r}/state
SlurmdSpoolDir={r}/spool
SlurmctldPidFile={r}/run/slurmctld.pid
SlurmdPidFile={r}/run/slurmd.pid
SlurmctldLogFile={self.logs}/slurmctld.log
SlurmdLogFile={self.logs}/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=1
MpiDefault=none
SwitchType=switch/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MinJobAge=3600
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
KillWait=5
GresTypes=gpu
NodeName={NODE} NodeAddr=127.0.0.1 CPUs={self.cpus} RealMemory={_memory_mb()} Gres=gpu:{FAKE_GPUS} State=UNKNOWN
PartitionName={PARTITION} Nodes={NODE} Default=YES MaxTime=INFINITE State=UP
"""
        )
        # snakemake-executor-plugin-slurm-jobstep drops SLURM_CONF from the environment
        # of its nested `srun` (real sites keep slurm.conf in /etc/slurm or run
        # configless); this cluster's config is in the temporary folder, so jobs see
        # an `srun` that names it.
        self.bin.mkdir(exist_ok=True)
        wrapper = self.bin / "srun"
        wrapper.write_text(f'#!/bin/sh\nSLURM_CONF={self.conf} exec {_binary("srun")} "$@"\n')
        wrapper.chmod(0o755)
        # Fake GPUs: empty files stand in for the device files, no autodetection
        # (a job only gets CUDA_VISIBLE_DEVICES).
        devices = self.root / "dev"
        devices.mkdir(exist_ok=True)
        for i in range(FAKE_GPUS):
            (devices / f"nvidia{i}").touch()
        (self.root / "etc" / "gres.conf").write_text(
            f"AutoDetect=off\nNodeName={NODE} Name=gpu File={devices}/nvidia[0-{FAKE_GPUS - 1}]\n"
        )

    # ------------------------------------------------------------------ daemons

    def _start(self, name: str, args: list[str]) -> None:
        log = open(self.logs / f"{name}.out", "ab")
        self.procs[name] = subprocess.Popen(
            [_binary(name), *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.env,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        log.close()

    def start(self) -> SlurmCluster:
        """Write the files, start the daemons and wait for an idle node."""
        self.write_files()
        munge = self.root / "munge"
        self._start(
            "munged",
            [
                "--foreground",
                "--force",
                f"--socket={self.socket}",
                f"--key-file={munge / 'munge.key'}",
                f"--log-file={self.logs / 'munged.log'}",
                f"--pid-file={munge / 'munged.pid'}",
                f"--seed-file={munge / 'munged.seed'}",
            ],
        )
        self._wait(lambda: self.socket.exists(), "munged socket")
        self._start("slurmctld", ["-D", "-i", "-f", str(self.conf)])
        self._wait(lambda: self._run("scontrol", "ping").returncode == 0, "slurmctld ping")
        self._start("slurmd", ["-D", "-N", NODE, "-f", str(self.conf)])
        self._wait(self._node_idle, f"node {NODE} idle")
        return self

    def stop(self) -> None:
        """Stop the daemons by PID (SIGTERM, then SIGKILL), slurmd first."""
        for name in reversed(list(self.procs)):
            proc = self.procs[name]
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=15)
        self.procs.clear()

    def __enter__(self) -> SlurmCluster:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()

    # ------------------------------------------------------------------ helpers

    def _run(self, *args: str, check: bool = False) -> subprocess.CompletedProcess:
        return subprocess.run(
            [_binary(args[0]), *args[1:]],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=30,
            check=check,
        )

    def command(self, *args: str) -> str:
        """Run a client command against this cluster; its stdout (raises on failure)."""
        result = self._run(*args)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed: {result.stderr.strip()}")
        return result.stdout

    def _node_idle(self) -> bool:
        result = self._run("sinfo", "-h", "-N", "-o", "%T")
        return result.returncode == 0 and result.stdout.strip() in ("idle", "mixed")

    def _wait(self, ready, what: str) -> None:
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise RuntimeError(
                        f"{name} exited with {proc.returncode} while waiting for {what}\n"
                        + self.log_tail()
                    )
            if ready():
                return
            time.sleep(0.3)
        raise TimeoutError(
            f"timed out after {self.timeout} s waiting for {what}\n" + self.log_tail()
        )

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of every daemon log (for failure messages)."""
        out = []
        for path in sorted(self.logs.glob("*")):
            text = path.read_text(errors="replace").splitlines()[-lines:]
            out.append(f"==> {path} <==\n" + "\n".join(text))
        return "\n".join(out)

    def jobs(self) -> list[dict[str, str]]:
        """Every job slurmctld remembers: id, name, state, exit code, reason."""
        out = self.command("squeue", "--states=all", "--noheader", "--format=%i|%j|%T|%r")
        fields = ("id", "name", "state", "reason")
        return [
            dict(zip(fields, line.split("|"), strict=True)) for line in out.splitlines() if line
        ]


def _die_with_parent() -> None:
    """In the child: get SIGTERM when the test process dies (no orphaned daemons)."""
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def _user() -> str:
    import pwd

    return pwd.getpwuid(os.getuid()).pw_name
