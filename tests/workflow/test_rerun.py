"""Rerun only what changed: after one run, each kind of change plans exactly the jobs it must.

One real run on three small photographs, interrupted during training and started again, is shared
by every case. Most cases are dry runs against it; the cases that must be run (adding and removing
images) work on a copy. The workflow runs from a temporary copy of the repository, so that library
modules can be edited without touching the real tree.
"""

import glob
import json
import os
import re
import shutil
import signal
import subprocess
import time
import zipfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from tests.conftest import REPO, sample, snakemake, snakemake_command, tiny_config

# Twelve epochs of about 900 patches (a few seconds): training goes on long enough after its first
# epoch for the interruption to land in the middle of it.
EPOCHS = 12
CROPS = {
    "astronaut.png": ("astronaut.png", (150, 40, 246, 136)),
    "coffee.png": ("coffee.png", (200, 100, 312, 180)),
    "rocket.png": ("rocket.jpg", (250, 150, 330, 246)),
    "chelsea.png": ("chelsea.png", (100, 50, 196, 146)),
}
FIRST = ("astronaut.png", "coffee.png", "rocket.png")
WORKFLOW = ("Snakefile", "rules", "scripts", "tessera", "config", "envs", "profiles")


def add_image(folder, name):
    source, box = CROPS[name]
    Image.fromarray(sample(source, box)).save(folder / name)


@dataclass
class Run:
    work: Path
    interrupted: subprocess.CompletedProcess
    resumed: subprocess.CompletedProcess
    after_interrupt: dict  # path -> mtime of every file that existed when the first run stopped
    model_after_interrupt: bool


def run_in(work, *args, **kw):
    return snakemake(
        work, "--configfile", str(work / "tiny.yaml"), *args, snakefile=work / "Snakefile", **kw
    )


def mtimes(work):
    return {
        str(p.relative_to(work)): p.stat().st_mtime_ns
        for p in (work / "results").rglob("*")
        if p.is_file() and ".resume" not in p.parts
    }


def interrupt_after_first_epoch(work, job_signal=None, timeout=300):
    """Start the whole workflow and interrupt it once training has finished (and saved) an epoch.

    By default, press Ctrl-C: in a terminal it reaches every process of the foreground job,
    Snakemake and the job it runs (the signal goes to the process group; Snakemake alone would
    wait for the job to finish). With job_signal, send that signal to the training job alone, as
    a scheduler does: SLURM sends SIGTERM at a time limit and SIGKILL soon after; a node failure
    is a SIGKILL, after which nothing in the job gets to clean up. Snakemake sees a failed job.
    """
    cmd = snakemake_command(
        work, "--configfile", str(work / "tiny.yaml"), snakefile=work / "Snakefile"
    )
    out = work / "interrupted.out"
    backup = str(work / "results" / ".resume" / "train" / "*" / "epoch-*" / "state.json")
    with open(out, "w") as sink:
        proc = subprocess.Popen(
            cmd,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            # A shell that starts its commands in the background (a CI runner may) makes them
            # ignore SIGINT, and the children inherit that: give Ctrl-C back its default action.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        deadline = time.monotonic() + timeout
        try:
            while proc.poll() is None and time.monotonic() < deadline:
                # A backup appears at the end of every epoch and is deleted when training ends:
                # while one exists, an epoch has finished and training has not.
                if glob.glob(backup):
                    if job_signal:
                        for pid in training_jobs(proc.pid):
                            os.kill(pid, job_signal)
                    else:
                        os.killpg(proc.pid, signal.SIGINT)
                    break
                time.sleep(0.01)
            proc.wait(timeout=120)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    return subprocess.CompletedProcess(cmd, proc.returncode, out.read_text(), "")


def training_jobs(group):
    """Processes of a process group that run the training rule's script."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            if os.getpgid(int(entry.name)) == group and any(
                part.endswith(b".train.py") for part in cmdline
            ):
                found.append(int(entry.name))
        except (OSError, ProcessLookupError):
            continue  # ended meanwhile
    assert found, "no training job found to kill"
    return found


def copy_workflow(work):
    for name in WORKFLOW:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, work / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, work / name)
    (work / "images").mkdir()
    for name in FIRST:
        add_image(work / "images", name)
    tiny_config(
        work / "tiny.yaml",
        "images",
        patches={"stride": 4},
        train={"epochs": EPOCHS},
    )


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    work = tmp_path_factory.mktemp("rerun")
    copy_workflow(work)
    interrupted = interrupt_after_first_epoch(work)
    after = mtimes(work)
    model_after = (work / "results" / "model" / "model.keras").exists()
    resumed = run_in(work)  # the same command again
    return Run(work, interrupted, resumed, after, model_after)


JOB = re.compile(r"^(?:local)?(?:rule|checkpoint) (\w+):$")
WILDCARD = re.compile(r"^\s+wildcards: image=(.+)$")


def jobs_in(output):
    """The jobs a run printed, as a Counter of (rule, image or None), without the `all` target."""
    jobs = []
    for line in output.splitlines():
        if m := JOB.match(line):
            jobs.append([m.group(1), None])
        elif jobs and (w := WILDCARD.match(line)):
            jobs[-1][1] = w.group(1)
    return Counter((rule, image) for rule, image in jobs if rule != "all")


def job_stats(output):
    """The "Job stats" table Snakemake prints before running: rule -> count, without `all`."""
    table = re.search(r"^Job stats:\n.*?\n-+ +-+\n(.*?)^total +\d+", output, re.M | re.S)
    assert table, output
    rows = [line.split() for line in table.group(1).splitlines()]
    return {rule: int(n) for rule, n in rows if rule != "all"}


def finished(output):
    """Rule -> number of jobs a real run finished, from its "Finished jobid" lines."""
    done = Counter(re.findall(r"^Finished jobid: \d+ \(Rule: (\w+)\)", output, re.M))
    done.pop("all", None)
    return dict(done)


def rules(jobs):
    """Jobs per rule, from a mapping of (rule, image) to a count."""
    counts = Counter()
    for (rule, _), n in jobs.items():
        counts[rule] += n
    return dict(counts)


def plan(work, *args):
    """The jobs a dry run plans, checked against Snakemake's own count of them."""
    return planned(run_in(work, "-n", *args))


def planned(out):
    """The jobs a dry run's output lists, checked against Snakemake's own count of them."""
    text = out.stdout + out.stderr
    jobs = jobs_in(text)
    if "Nothing to be done" in text:
        assert not jobs, text
    else:
        assert rules(jobs) == job_stats(text), text
    return jobs


def per_image(rule, images):
    return {(rule, i): 1 for i in images}


def shown(images):
    """The image the report shows rebuilt the naive way too (the seams job): the first
    validation image, on this split."""
    return min(i for i in images if i in VALIDATION)


# On these crops and tiny.yaml's split seed, the images held out for validation.
VALIDATION = ("chelsea.png", "rocket.png")


def rebuilt(images):
    """The reconstruction stage's jobs once a model is trained: every image, and the naive tiling
    of the image the report shows."""
    return {**per_image("reconstruct", images), ("seams", shown(images)): 1}


def every_job(images):
    return {
        **per_image("patches", images),
        ("split", None): 1,
        ("train", None): 1,
        **rebuilt(images),
        ("baselines", None): 1,
        ("report", None): 1,
        ("card", None): 1,
    }


def test_nothing_changed_nothing_to_do(run):
    assert plan(run.work) == Counter()


def test_a_report_setting_reruns_only_the_report(run):
    assert plan(run.work, "--config", "report={thumbnail: 48}") == {("report", None): 1}


def test_a_tiling_setting_reruns_reconstruction_report_and_card(run):
    jobs = plan(run.work, "--config", "reconstruct={tile: 48}")
    # the model card states the tiling
    assert jobs == {**rebuilt(FIRST), ("report", None): 1, ("card", None): 1}


def test_a_training_setting_retrains_and_redoes_what_follows_not_the_patches(run):
    jobs = plan(run.work, "--config", "train={learning_rate: 0.001}")
    assert jobs == {("train", None): 1, **rebuilt(FIRST), ("report", None): 1, ("card", None): 1}


def test_a_thread_count_reruns_nothing(run):
    assert plan(run.work, "--config", "train={threads: 1}", "reconstruct={threads: 1}") == Counter()


def test_requiring_a_gpu_reruns_nothing(run):
    # what the SLURM profile sets: a run moved to the cluster is not trained again
    assert plan(run.work, "--config", "train={require_gpu: true}") == Counter()


def test_a_patch_setting_reruns_everything(run):
    jobs = plan(run.work, "--config", "patches={stride: 8}")
    # The reconstructions follow once the split (a checkpoint) has run again: a dry run cannot
    # list them yet. That they do run is shown by the image test below, which runs for real.
    assert jobs == {
        **per_image("patches", FIRST),
        ("split", None): 1,
        ("train", None): 1,
        ("baselines", None): 1,
        ("report", None): 1,
        ("card", None): 1,
    }


@pytest.fixture
def edit(run):
    """Edit a file of the workflow copy for one test, then put it back as it was."""
    saved = {}

    def change(relpath, transform):
        path = run.work / relpath
        saved.setdefault(path, path.read_text())
        path.write_text(transform(path.read_text()))

    yield change
    for path, text in saved.items():
        path.write_text(text)


def test_editing_the_report_module_reruns_only_the_report(run, edit):
    edit("tessera/report.py", lambda text: text + "\nEDITED = True\n")
    assert plan(run.work) == {("report", None): 1}


def test_editing_the_models_module_retrains_and_redoes_what_follows(run, edit):
    edit("tessera/models/presets.py", lambda text: text + "\nEDITED = True\n")
    jobs = plan(run.work)
    assert jobs == {("train", None): 1, **rebuilt(FIRST), ("report", None): 1, ("card", None): 1}


def test_editing_only_comments_and_blank_lines_reruns_nothing(run, edit):
    edit("tessera/models/presets.py", lambda text: "# A comment.\n\n" + text + "\n# Another.\n")
    edit("tessera/report.py", lambda text: text.replace("\n\n\n", "\n\n\n\n", 1))
    assert plan(run.work) == Counter()


def test_editing_a_script_reruns_its_rule(run):
    # Snakemake itself reruns a job whose script is newer than its outputs.
    script = run.work / "scripts" / "report.py"
    stat = script.stat()
    os.utime(script)
    try:
        assert plan(run.work) == {("report", None): 1}
    finally:
        os.utime(script, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_an_interrupted_run_resumes_training_and_redoes_nothing_that_finished(run):
    first, again = run.interrupted, run.resumed
    assert first.returncode != 0, "the first run was not interrupted:\n" + first.stdout[-3000:]
    assert not run.model_after_interrupt, "training finished before the interruption"
    before, after = Counter(finished(first.stdout)), Counter(finished(again.stdout + again.stderr))
    assert before["patches"] == 3 and before["split"] == 1 and not before["train"], first.stdout
    # Every job ran exactly once over the two runs: none that had finished ran again.
    assert before + after == Counter(rules(every_job(FIRST))), (before, after)
    now = mtimes(run.work)
    for path, mtime in run.after_interrupt.items():
        assert now[path] == mtime, f"{path} was written again"
    summary = json.loads((run.work / "results" / "model" / "summary.json").read_text())
    assert 1 <= summary["resumed_from_epoch"] < EPOCHS
    assert summary["epochs"] == EPOCHS
    history = pd.read_csv(run.work / "results" / "model" / "history.tsv", sep="\t")
    assert list(history.epoch) == list(range(1, EPOCHS + 1))
    assert not list((run.work / "results" / ".resume" / "train").glob("*"))
    done = run_in(run.work, "-n")
    assert "Nothing to be done" in done.stdout + done.stderr


@pytest.mark.parametrize("job_signal", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_a_training_job_killed_by_the_scheduler_resumes_after_its_last_backed_up_epoch(
    tmp_path, job_signal
):
    copy_workflow(tmp_path)
    killed = interrupt_after_first_epoch(tmp_path, job_signal)
    assert killed.returncode != 0 and "Error in rule train" in killed.stdout, killed.stdout[-3000:]
    if job_signal == signal.SIGTERM:
        assert "tessera train: stopped by SIGTERM" in killed.stdout
    assert not (tmp_path / "results" / "model" / "model.keras").exists()
    # until training ends: the jobs after it are the Ctrl-C test's to check (the fixture's run)
    again = run_in(tmp_path, "--until", "train")
    assert "resuming after epoch" in (tmp_path / "logs" / "train.log").read_text()
    summary = json.loads((tmp_path / "results" / "model" / "summary.json").read_text())
    # as many epochs as an uninterrupted run, each once
    assert 1 <= summary["resumed_from_epoch"] < EPOCHS and summary["epochs"] == EPOCHS
    history = pd.read_csv(tmp_path / "results" / "model" / "history.tsv", sep="\t")
    assert list(history.epoch) == list(range(1, EPOCHS + 1))
    assert finished(again.stdout + again.stderr)["train"] == 1


def test_snakemake_report_zip_has_the_loss_plot_tables_and_gallery(run):
    run_in(run.work, "--report", "results/report.zip")
    with zipfile.ZipFile(run.work / "results" / "report.zip") as z:
        names = {Path(n).name for n in z.namelist()}
        page = z.read(next(n for n in z.namelist() if n.endswith("report.html"))).decode()
    assert {"loss.png", "loss.tsv", "metrics.tsv"} <= names
    for image in FIRST:
        for kind in ("before", "after", "diff"):
            assert f"{image}.{kind}.thumb.jpg" in names
    for text in ("Training", "Reconstruction", "Before, after and difference"):
        assert text in page


@pytest.fixture
def copy(run, tmp_path):
    """A copy of the finished run (metadata and file times included), to change for real."""
    work = tmp_path / "work"
    shutil.copytree(run.work, work, symlinks=True, ignore=shutil.ignore_patterns("report.zip"))
    return work


def test_adding_and_removing_an_image_touches_only_those_images(copy):
    add_image(copy / "images", "chelsea.png")
    (copy / "images" / "rocket.png").unlink()
    kept = ("astronaut.png", "coffee.png")
    before = mtimes(copy)

    assert plan(copy) == {
        ("patches", "chelsea.png"): 1,
        ("split", None): 1,
        ("train", None): 1,
        ("baselines", None): 1,
        ("report", None): 1,
        ("card", None): 1,
    }

    real = run_in(copy)
    out = real.stdout + real.stderr
    ran = jobs_in(out)
    # The model is trained again, so every image still there is rebuilt with it; rocket.png is not.
    expected = Counter(every_job(kept + ("chelsea.png",)))
    for image in kept:
        del expected[("patches", image)]
    assert ran == expected
    assert rules(ran) == finished(out)
    now = mtimes(copy)
    for image in kept:
        for ext in ("npy", "json"):
            path = f"results/patches/{image}.{ext}"
            assert now[path] == before[path], f"{path} was written again"

    r = copy / "results"
    metrics = pd.read_csv(r / "report" / "metrics.tsv", sep="\t")
    assert sorted(metrics.image) == sorted(kept + ("chelsea.png",))
    page = (r / "report" / "index.html").read_text()
    assert "chelsea.png" in page and "rocket.png" not in page
    assert not list((r / "report" / "images").glob("rocket.png.*"))
    split = pd.read_csv(r / "dataset" / "split.tsv", sep="\t")
    assert "rocket.png" not in set(split.image)
