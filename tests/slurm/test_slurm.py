"""The workflow submitted to a real SLURM scheduler (slurmctld + slurmd on this machine).

A dry run of profiles/slurm needs no scheduler: it shows what each job would ask for. Then the
whole tiny workflow goes through profiles/slurm as shipped, with the test profile on top of it
(the test scheduler's account and partition). Beside it, the per-image jobs alone go through the
test profile only, to count the SLURM jobs without grouping. What is checked comes from the
scheduler's own records (`scontrol show job`) and from inside the jobs, not from Snakemake's say-so.
"""

import re
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
import yaml

from tests.conftest import tiny_config, tiny_images
from tests.slurm import cluster

IMAGES = ("astronaut.png", "coffee.png", "rocket.png")


@pytest.fixture(scope="module")
def scheduler():
    """The local scheduler: the one .ci/run started, or one started here and stopped after."""
    if cluster.running():
        yield
        return
    reason = cluster.start()
    if reason:
        pytest.skip(f"no SLURM scheduler could be started: {reason}")
    try:
        yield
    finally:
        cluster.stop()


def _workdir(root):
    root.mkdir()
    tiny_config(root / "tiny.yaml", tiny_images(root / "images"))
    return root


SHIPPED = [cluster.SLURM_PROFILE, cluster.TEST_PROFILE]


def planned_asks(work):
    """(rule, group, resources) of each job a dry run of the shipped profile plans. No scheduler
    needed: a dry run shows what each job would ask SLURM for."""
    dry = cluster.submit(work, work / "tiny.yaml", [cluster.SLURM_PROFILE], "-n", timeout=300)
    assert dry.returncode == 0, dry.output[-3000:]
    asks, rule, group = [], None, None
    for line in dry.output.splitlines():
        if m := re.search(r"Group job (\w+) ", line):
            group = m.group(1)
        elif m := re.match(r"( *)(?:rule|checkpoint|localrule) (\w+):$", line):
            rule, group = m.group(2), group if m.group(1) else None
        elif m := re.match(r"\s+resources: (.*)$", line):
            asks.append((rule, group, dict(kv.split("=", 1) for kv in m.group(1).split(", "))))
    return asks


def test_each_variants_training_is_its_own_gpu_job(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    variants = {"a": {}, "b": {"train": {"learning_rate": 0.004}}}
    tiny_config(work / "tiny.yaml", tiny_images(work / "images"), variants=variants)
    trains = [res for rule, group, res in planned_asks(work) if rule == "train"]
    assert len(trains) == 2
    for res in trains:
        assert res["gpu"] == "1" and res["slurm_partition"] == "YOUR_GPU_PARTITION"


def test_the_shipped_profile_plans_a_cluster_run(tmp_path):
    work = _workdir(tmp_path / "work")
    asks = planned_asks(work)
    by_rule = {}
    for rule, group, res in asks:
        by_rule.setdefault(rule, []).append((group, res))
    assert [group for group, _ in by_rule["patches"]] == ["per_image"] * len(IMAGES)
    [(_, train)] = by_rule["train"]
    assert train["gpu"] == "1" and train["slurm_partition"] == "YOUR_GPU_PARTITION"
    others = [res for rule, _, res in asks if rule != "train"]
    assert others and not any("gpu" in res or "gpu_model" in res for res in others)
    assert all(res["slurm_account"] == "YOUR_ACCOUNT" for _, _, res in asks)


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    return cluster.snapshot(tmp_path_factory.mktemp("repo") / "tessera")


@pytest.fixture(scope="module")
def runs(scheduler, repo, tmp_path_factory):
    """The whole workflow grouped, and the patches alone ungrouped, submitted at the same time."""
    base = tmp_path_factory.mktemp("slurm")
    grouped, plain = _workdir(base / "grouped"), _workdir(base / "plain")
    with ThreadPoolExecutor(2) as pool:
        whole = pool.submit(cluster.submit, grouped, grouped / "tiny.yaml", SHIPPED, repo=repo)
        patches = pool.submit(
            cluster.submit,
            plain,
            plain / "tiny.yaml",
            [cluster.TEST_PROFILE],
            "--until",
            "patches",
            repo=repo,
        )
        done = {"grouped": (grouped, whole.result()), "plain": (plain, patches.result())}
    for name, (_, run) in done.items():
        assert run.returncode == 0, f"{name} submission failed:\n{run.output[-6000:]}"
    return done


def _records(run):
    return {job_id: cluster.record(job_id) for job_id in run.job_ids}


def _jobs_in_group_log(work, group):
    """(rule, image) of every job a group job ran, from the group job's own SLURM log."""
    [log] = (work / ".snakemake" / "slurm_logs" / f"group_{group}").glob("*.log")
    ran = set()
    for block in log.read_text().split("\nlocalrule ")[1:]:
        image = re.search(r"^\s+wildcards: image=(\S+)$", block, re.MULTILINE)
        ran.add((block.split(":", 1)[0], image and image.group(1)))
    return ran


def test_every_output_exists(runs):
    work, _ = runs["grouped"]
    r = work / "results"
    expected = [r / "dataset" / "split.tsv"]
    expected += [r / "model" / f for f in ("model.keras", "history.tsv", "summary.json")]
    expected += [r / "report" / f for f in ("index.html", "loss.tsv", "metrics.tsv", "loss.png")]
    for name in IMAGES:
        expected += [r / "patches" / f"{name}.npy", r / "patches" / f"{name}.json"]
        expected += [r / "reconstructed" / f"{name}.png", r / "reconstructed" / f"{name}.json"]
    missing = [str(p.relative_to(work)) for p in expected if not p.is_file()]
    assert not missing
    page = (r / "report" / "index.html").read_text()
    assert all(name in page for name in IMAGES)


def test_only_the_training_job_was_given_a_gpu(runs):
    work, run = runs["grouped"]
    records = {**_records(run), **_records(runs["plain"][1])}
    for job_id, rec in records.items():
        assert rec["JobState"] == "COMPLETED" and rec["ExitCode"] == "0:0", (job_id, rec)
    gpus = {cluster.rule_of(rec): rec["JOB_GRES"] for rec in records.values()}
    assert {rule for rule, gres in gpus.items() if gres != "(null)"} == {"train"}, gpus
    assert gpus["train"] == "gpu:1"
    for rec in records.values():
        wanted = "gpu:1" if cluster.rule_of(rec) == "train" else ""
        assert re.sub(r"^gres:", "", rec.get("TresPerJob", "")) == wanted, rec
    # Inside the job: SLURM bound the GPU it gave to the job's environment.
    assert re.search(r"CUDA_VISIBLE_DEVICES=0\b", (work / "logs" / "train.log").read_text())


def test_without_groups_each_image_is_a_slurm_job(runs):
    _, run = runs["plain"]
    records = _records(run).values()
    assert [cluster.rule_of(rec) for rec in records] == ["patches"] * len(IMAGES)
    assert sorted(rec["Comment"] for rec in records) == [
        f"rule_patches_wildcards_{name}" for name in IMAGES
    ]


def test_the_shipped_profile_groups_per_image_jobs(runs, repo):
    work, run = runs["grouped"]
    profile = yaml.safe_load((repo / cluster.SLURM_PROFILE / "config.yaml").read_text())
    group = profile["groups"]["patches"]
    assert profile["groups"]["reconstruct"] == group and profile["group-components"][group] >= 3
    jobs = Counter(cluster.rule_of(rec) for rec in _records(run).values())
    assert jobs[f"{group}_patches"] == 1 and jobs[f"{group}_reconstruct"] == 1, jobs
    assert jobs["patches"] == jobs["reconstruct"] == 0, jobs
    assert set(jobs.values()) == {1} and {"split", "train", "report"} <= set(jobs), jobs
    # Each group job ran the stage for all three images.
    for stage in ("patches", "reconstruct"):
        ran = _jobs_in_group_log(work, f"{group}_{stage}")
        assert ran == {(stage, name) for name in IMAGES}


def test_a_second_submission_does_nothing(runs, repo):
    work, _ = runs["grouped"]
    again = cluster.submit(work, work / "tiny.yaml", SHIPPED, repo=repo, timeout=300)
    assert again.returncode == 0, again.output[-3000:]
    assert "Nothing to be done" in again.output
    assert again.job_ids == []
