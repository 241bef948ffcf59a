"""Sharing a machine's GPUs between jobs (tessera.backend.claimed_gpus, shared_gpu), tried with
real processes and real file locks: each job below is a Python process that claims GPUs, says
which it got and holds them until the test lets it go."""

import ast
import os
import select
import subprocess
import sys

import pytest

from tests.conftest import REPO

JOB = """
import os, sys, time
from tessera import backend
kind, count, lock_dir, release = sys.argv[1:]
log = lambda line: print(line, file=sys.stderr)
claim = (
    backend.claimed_gpus(int(count), log=log, lock_dir=lock_dir, poll=0.05)
    if kind == "train"
    else backend.shared_gpu(log=log, lock_dir=lock_dir, poll=0.05)
)
with claim as got:
    print("GOT", repr(os.environ.get("CUDA_VISIBLE_DEVICES")), flush=True)
    while not os.path.exists(release):
        time.sleep(0.05)
"""

# How long a job that should get its GPUs at once may take to start Python and say so; a job
# that should wait must still be waiting after WAIT seconds (it polls every 0.05 s).
START, WAIT = 60, 1.5
WAITING = "still waiting"


class Job:
    def __init__(self, tmp_path, name, kind="train", count=1, **env):
        self.release = tmp_path / f"release-{name}"
        clean = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "CUDA_"))}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", JOB, kind, str(count), str(tmp_path / "locks"), self.release],
            stdout=subprocess.PIPE,
            text=True,
            env={**clean, "PYTHONPATH": str(REPO), **env},
        )

    def got(self, timeout=START):
        """The job's CUDA_VISIBLE_DEVICES once it has its GPUs (None: unset), or WAITING if it
        is still waiting after timeout seconds."""
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            return WAITING
        word, value = self.proc.stdout.readline().split(" ", 1)
        assert word == "GOT", (word, value)
        return ast.literal_eval(value)

    def done(self):
        self.release.touch()
        assert self.proc.wait(timeout=30) == 0

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def jobs(tmp_path):
    started = []

    def start(name, **kw):
        started.append(Job(tmp_path, name, **kw))
        return started[-1]

    yield start
    for job in started:
        job.kill()


def test_two_trainings_get_different_gpus_and_a_third_waits_until_one_is_let_go(jobs):
    a = jobs("a", CUDA_VISIBLE_DEVICES="0,1")
    gpu_a = a.got()
    b = jobs("b", CUDA_VISIBLE_DEVICES="0,1")
    assert b.got() not in (WAITING, gpu_a)
    c = jobs("c", CUDA_VISIBLE_DEVICES="0,1")
    assert c.got(WAIT) == WAITING
    a.done()
    assert c.got() == gpu_a


def test_local_jobs_in_a_slurm_allocation_share_out_its_gpus(jobs):
    # `salloc --gpus=2`, then `snakemake --cores 8 --resources gpu=2` inside it
    alloc = {"SLURM_JOB_ID": "77", "SLURM_JOB_GPUS": "4,6", "CUDA_VISIBLE_DEVICES": "0,1"}
    a, b = jobs("a", **alloc), jobs("b", **alloc)
    assert {a.got(), b.got()} == {"0", "1"}
    c = jobs("c", **alloc)
    assert c.got(WAIT) == WAITING


def test_slurm_jobs_with_gpus_of_their_own_never_wait_for_each_other(jobs):
    # two sbatch jobs on one node, each given one GPU, which each sees as GPU 0
    a = jobs("a", SLURM_JOB_ID="1", SLURM_JOB_GPUS="2", CUDA_VISIBLE_DEVICES="0")
    b = jobs("b", SLURM_JOB_ID="2", SLURM_JOB_GPUS="3", CUDA_VISIBLE_DEVICES="0")
    assert a.got() == "0" and b.got() == "0"
    # a job step narrowed by srun names its GPUs in SLURM_STEP_GPUS
    c = jobs("c", SLURM_JOB_ID="3", SLURM_STEP_GPUS="5", CUDA_VISIBLE_DEVICES="0")
    assert c.got() == "0"


def test_a_slurm_job_without_gpus_is_given_none(jobs):
    assert jobs("a", SLURM_JOB_ID="1").got() is None  # training: no GPU to claim, none hidden
    # an inference job that SLURM gave no GPU must not use the node's GPUs, other jobs' GPUs
    assert jobs("r", kind="infer", SLURM_JOB_ID="1").got() == ""


def test_inference_jobs_share_a_gpu_that_training_holds_alone(jobs):
    one = {"CUDA_VISIBLE_DEVICES": "0"}
    r1, r2 = jobs("r1", kind="infer", **one), jobs("r2", kind="infer", **one)
    assert r1.got() == "0" and r2.got() == "0"
    t = jobs("t", **one)
    assert t.got(WAIT) == WAITING
    r1.done()
    r2.done()
    assert t.got() == "0"
    r3 = jobs("r3", kind="infer", **one)
    assert r3.got(WAIT) == WAITING
    t.done()
    assert r3.got() == "0"


def test_inference_jobs_are_each_given_one_gpu_of_the_free_ones(jobs):
    two = {"CUDA_VISIBLE_DEVICES": "0,1"}
    t = jobs("t", **two)
    trained_on = t.got()
    r = jobs("r", kind="infer", **two)
    assert r.got() == ({"0", "1"} - {trained_on}).pop()
