"""The one-node SLURM of start-slurm.sh: start it, submit the workflow to it, read its job records.

Used by test_slurm.py and bench/slurm_jobs.py. Only the scheduler these scripts start is ever used
(found by their pid files), never another cluster the machine may belong to.
"""

import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
STATE = Path(os.environ.get("SLURM_STATE_DIR", "/tmp/slurm-local"))
# Relative to the repository (or to a snapshot of it).
TEST_PROFILE = "tests/slurm/profile"
SLURM_PROFILE = "profiles/slurm"

# The plugin prints one such line per sbatch call, a group job's included.
_SUBMITTED = re.compile(r"has been submitted with SLURM jobid (\d+)")


def _alive(name):
    pidfile = STATE / "pid" / f"{name}.pid"
    try:
        os.kill(int(pidfile.read_text().strip()), 0)
        return True
    except (OSError, ValueError):
        return False


def running():
    """Whether the scheduler of start-slurm.sh is up and its node takes jobs."""
    if not (_alive("slurmctld") and _alive("slurmd")):
        return False
    proc = subprocess.run(
        ["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=30, check=False
    )
    return proc.returncode == 0 and proc.stdout.split()[:1] in (["idle"], ["mixed"], ["allocated"])


def why_not_startable():
    """None when start() can be tried here, else why no scheduler can be started."""
    if os.geteuid() != 0:
        return "starting slurmctld and slurmd needs root (tests/slurm/start-slurm.sh)"
    if not shutil.which("slurmctld") and not shutil.which("apt-get"):
        return "SLURM is not installed and there is no apt-get to install it"
    return None


def start():
    """Start the scheduler (installing it with apt if needed); None on success, else the reason."""
    reason = why_not_startable()
    if reason:
        return reason
    proc = subprocess.run(
        [str(HERE / "start-slurm.sh")], capture_output=True, text=True, timeout=900, check=False
    )
    if proc.returncode != 0:
        return "tests/slurm/start-slurm.sh failed:\n" + (proc.stdout + proc.stderr)[-2000:]
    return None


def stop():
    subprocess.run(
        [str(HERE / "stop-slurm.sh")], capture_output=True, text=True, timeout=120, check=False
    )


@dataclass
class Run:
    """One snakemake submission: its exit status, output, wall time and the SLURM jobs it made."""

    returncode: int
    output: str
    wall_s: float
    job_ids: list = field(default_factory=list)


def snapshot(dest):
    """A copy of the workflow as it is now, for runs that take minutes.

    A run submitted from the working tree would see edits made while it runs: a module's code hash
    changes between two submissions and the second one retrains.
    """
    junk = (".git", ".snakemake", "results", "logs", "__pycache__", ".*_cache", ".benchmarks")
    shutil.copytree(REPO, dest, ignore=shutil.ignore_patterns(*junk), symlinks=True)
    return Path(dest)


def submit(workdir, configfile, profiles, *args, repo=REPO, timeout=600):
    """Run repo's workflow in workdir through the scheduler with the profiles given (later ones
    win; paths relative to repo).

    It runs from workdir, so that Snakemake finds the workflow's own profiles/default next to the
    Snakefile. The plugin ignores SIGTERM while it waits for a job that it cannot see finish, so the
    run is stopped with SIGKILL when it overruns.
    """
    cmd = ["timeout", "-s", "KILL", str(timeout), sys.executable, "-m", "snakemake"]
    cmd += ["-s", str(Path(repo) / "Snakefile"), "-d", str(workdir)]
    cmd += ["--configfile", str(configfile)]
    for profile in profiles:
        cmd += ["--profile", str(Path(repo) / profile)]
    t0 = time.monotonic()
    proc = subprocess.run([*cmd, *args], cwd=workdir, capture_output=True, text=True, check=False)
    wall = time.monotonic() - t0
    out = proc.stdout + proc.stderr
    return Run(proc.returncode, out, wall, [int(i) for i in _SUBMITTED.findall(out)])


def record(job_id):
    """The scheduler's own record of a job (`scontrol show job -d`), as a dict of its fields."""
    proc = subprocess.run(
        ["scontrol", "show", "job", "-d", "-o", str(job_id)],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    fields = {}
    for token in proc.stdout.split():
        key, sep, value = token.partition("=")
        if sep:
            fields.setdefault(key, value)
    return fields


def rule_of(record):
    """The rule, or group, a job ran: the plugin writes it and the wildcards into the comment."""
    return re.match(r"rule_(.+?)(_wildcards_.*)?$", record["Comment"]).group(1)
