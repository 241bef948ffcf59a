"""Faults, tried for real: the training job SIGKILLed at many moments of its life and run again,
and the workflow run on a small disk until it fills, then again once there is room.

    python bench/faults.py kills [--epochs 6]     # needs nothing special
    python bench/faults.py disk                   # needs root (mount -t tmpfs)

`kills` trains the `compact` preset on patches of three sample photos in a child process
(tessera.train.train, the training job's own call), kills it (SIGKILL) at a moment, starts it
again, and so on. The moments are offsets in time spread over the job's life, and moments found
by watching its files: a backup folder being written, a backup just renamed into place, the
history, the model and the summary being written. After each kill it checks that every output
present is whole; after the last run, that history.tsv has every epoch once and in order and
that summary.json agrees with it. One more case cuts the newest backup's state.json to 5 bytes
and corrupts the weights of the ones before: the run must start over, saying so. The children are
forked from this process once it has imported TensorFlow (and run nothing with it), which saves
each run the 5 to 30 s of imports of a fresh interpreter.

`disk` runs the real workflow (tiny settings, results/ and logs/ on a tmpfs) with a filler file
leaving little room, so that the patch files, then the training backup, then the report fill the
disk; after each, it frees the room and runs the same command again, which completes.
"""

import argparse
import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from PIL import Image  # noqa: E402

SAMPLES = REPO / "resources" / "sample_images"
SIDES = {"coffee.png": "train", "rocket.jpg": "train", "chelsea.png": "val"}
SETTINGS = dict(
    preset="compact",
    batch_size=32,
    optimizer="adam",
    learning_rate=0.002,
    loss="mse",
    augment=True,
    seed=0,
    max_minutes=None,
)
DATA = {"size": 16, "stride": 16, "sampling": "grid", "max_val_patches": 64}
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _child(args, log):
    """A training run as the job runs it, its output in log; os._exit so that nothing of the
    parent (pytest's exit handlers) runs in the child."""
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    status = 0
    try:
        from tessera import train

        train.train(**json.loads(Path(args).read_text()), log=lambda line: print(line, flush=True))
    except BaseException:
        import traceback

        traceback.print_exc()
        status = 1
    sys.stdout.flush()
    os._exit(status)


def dataset(folder, patches=96):
    """Per-image patch files of real photographs and the split table, as the stages write them."""
    from tessera.patches import extract

    folder.mkdir(parents=True, exist_ok=True)
    files, rows = {}, []
    for k, (name, side) in enumerate(SIDES.items()):
        image = np.asarray(Image.open(SAMPLES / name).convert("RGB"))
        cut = extract(image, 16, 16, max_patches=patches, seed=k)
        files[name] = str(folder / f"{name}.npy")
        np.save(files[name], cut)
        rows.append({"image": name, "path": name, "split": side, "patches": len(cut)})
    pd.DataFrame(rows).to_csv(folder / "split.tsv", sep="\t", index=False)
    return str(folder / "split.tsv"), files


class Job:
    """One training run's files, and the child processes that run it."""

    def __init__(self, work, epochs):
        self.work, self.out, self.resume = work, work / "model", work / "resume"
        split, files = dataset(work / "data")
        self.args = work / "args.json"
        self.args.write_text(
            json.dumps(
                dict(
                    split_tsv=split,
                    patch_files=files,
                    out_model=str(self.out / "model.keras"),
                    out_history=str(self.out / "history.tsv"),
                    out_summary=str(self.out / "summary.json"),
                    resume_root=str(self.resume),
                    settings={**SETTINGS, "epochs": epochs},
                    data=DATA,
                    threads=2,
                )
            )
        )
        self.runs = 0

    def reset(self):
        shutil.rmtree(self.out, ignore_errors=True)
        shutil.rmtree(self.resume, ignore_errors=True)

    def start(self):
        import multiprocessing

        self.runs += 1
        self.log = self.work / f"run{self.runs}.log"
        child = multiprocessing.get_context("fork").Process(
            target=_child, args=(str(self.args), str(self.log))
        )
        child.start()
        return child

    def watched(self, what):
        """The paths whose appearance marks a moment: a backup being written, one just renamed
        into place, or the temporary file of an output being written."""
        pattern = {
            "backup write": str(self.resume / "*" / ".epoch-*.tmp"),
            "backup renamed": str(self.resume / "*" / "epoch-*"),
            "model write": str(self.out / ".model.keras.tmp.keras"),
            "model renamed": str(self.out / "model.keras"),
            "history renamed": str(self.out / "history.tsv"),
            "summary renamed": str(self.out / "summary.json"),
        }[what]
        return set(glob.glob(pattern))


def run_until(job, moment, timeout=300):
    """Start the job and SIGKILL it at the moment: ("time", seconds after start) or (kind, n),
    the n-th new path of that kind. Returns (killed, inside a write, the run's log)."""
    kind, value = moment
    proc, began = job.start(), time.monotonic()
    seen, new = (job.watched(kind) if kind != "time" else set()), 0
    killed = False
    while proc.is_alive() and time.monotonic() - began < timeout:
        if kind == "time":
            hit = time.monotonic() - began >= value
        else:
            now = job.watched(kind)
            new += len(now - seen)
            seen |= now
            hit = new >= value
        if hit:
            os.kill(proc.pid, signal.SIGKILL)
            killed = True
            break
        time.sleep(0.0005)
    if not killed and proc.is_alive():
        os.kill(proc.pid, signal.SIGKILL)
    proc.join()
    inside = killed and kind != "time" and "renamed" not in kind and bool(job.watched(kind))
    return killed, inside, job.log.read_text()


def whole_outputs(job):
    """The outputs present under their final names, each checked whole; raises if one is not."""
    present = []
    for name in ("model.keras", "history.tsv", "summary.json"):
        path = job.out / name
        if not path.exists():
            continue
        if name == "model.keras":
            with zipfile.ZipFile(path) as z:
                assert z.testzip() is None, path
        elif name == "history.tsv":
            pd.read_csv(path, sep="\t")
        else:
            json.loads(path.read_text())
        present.append(name)
    return present


def start_of(log):
    """How a run began: resumed after an epoch, started over after damaged backups, or fresh."""
    if m := re.search(r"resuming after epoch (\d+)", log):
        damaged = "damaged" in log
        return f"resumed after {m.group(1)}" + (" (damaged one passed over)" if damaged else "")
    return "started over (damaged backup)" if "starts from scratch" in log else "fresh"


def damage(job):
    """Cut the newest backup's state.json to 5 bytes and corrupt the weights of the one before."""
    states = sorted(glob.glob(str(job.resume / "*" / "epoch-*")))
    newest = Path(states[-1]) / "state.json"
    newest.write_bytes(newest.read_bytes()[:5])
    for older in states[:-1]:
        weights = Path(older) / "backup.weights.h5"
        if not weights.exists():
            continue
        data = bytearray(weights.read_bytes())
        data[len(data) // 2] ^= 0xFF
        weights.write_bytes(bytes(data))


def finish(job, rows, chain):
    """Run the job to its end; check the history, the summary and the losses."""
    proc = job.start()
    proc.join(600)
    if proc.is_alive():  # a run that hangs is a failure, never a wait without end
        os.kill(proc.pid, signal.SIGKILL)
        proc.join()
    log = job.log.read_text()
    rows.append({"chain": chain, "moment": "(run to the end)", "killed": False, "inside": False,
                 "began": start_of(log), "outputs": "", "rc": proc.exitcode})  # fmt: skip
    assert proc.exitcode == 0, log[-3000:]
    history = pd.read_csv(job.out / "history.tsv", sep="\t")
    summary = json.loads((job.out / "summary.json").read_text())
    return history, summary


def kills(work, epochs=6, log=print):
    """Every moment tried, as rows; raises AssertionError at the first broken invariant."""
    import tessera.train  # noqa: F401  (imported once here, for every forked run)

    job = Job(work, epochs)
    started, first = time.monotonic(), None
    proc = job.start()
    while proc.is_alive():
        if first is None and job.watched("backup renamed"):
            first = time.monotonic() - started
        time.sleep(0.001)
    life = time.monotonic() - started
    assert proc.exitcode == 0 and first, job.log.read_text()[-3000:]
    reference = pd.read_csv(job.out / "history.tsv", sep="\t")
    log(f"uninterrupted run: {life:.1f} s, {epochs} epochs, the first backup after {first:.1f} s")
    # Offsets into each run: before its first epoch ends, then spread over its epochs (a resumed
    # run has fewer to go, so the later ones may fall on its last writes, or after its end).
    spread = [first * 0.5] + [first + (life - first) * f for f in (0.1, 0.35, 0.6)]
    chains = {
        "time": [("time", t) for t in spread],
        "writes": [
            ("backup write", 1),
            ("backup renamed", 2),
            ("backup write", 2),
            ("model write", 1),
            ("model renamed", 1),
            ("history renamed", 1),
            ("summary renamed", 1),
        ],
        "damage": [("backup renamed", 3)],
    }
    rows = []
    for chain, moments in chains.items():
        job.reset()
        for moment in moments:
            killed, inside, text = run_until(job, moment)
            what = f"{moment[0]} {moment[1]:.1f} s" if moment[0] == "time" else f"{moment[0]} #{moment[1]}"  # fmt: skip
            rows.append({"chain": chain, "moment": what, "killed": killed, "inside": inside,
                         "began": start_of(text), "outputs": " ".join(whole_outputs(job)),
                         "rc": None})  # fmt: skip
            if killed:  # Snakemake removes the outputs of a job that failed
                for name in ("model.keras", "history.tsv", "summary.json"):
                    (job.out / name).unlink(missing_ok=True)
        if chain == "damage":
            damage(job)
        history, summary = finish(job, rows, chain)
        assert list(history.epoch) == list(range(1, epochs + 1)), history
        assert summary["epochs"] == len(history), summary
        assert summary["final_loss"] == float(history.loss.iloc[-1])
        if chain == "damage":
            assert rows[-1]["began"] == "started over (damaged backup)", rows[-1]
        # How far the resumed losses are from the uninterrupted run's: printed, not asserted
        # (resuming restores the weights, the optimizer's state and the batch order, yet the
        # losses after a resume differ by a few percent, as they did with Keras' own backup).
        gap = float(np.max(np.abs(history.loss / reference.loss - 1)))
        rows[-1]["outputs"] = f"loss vs uninterrupted: max rel. difference {gap:.3g}"
        assert not list(job.resume.glob("*")), "the backups outlived the finished run"
    return rows


def print_kills(rows):
    table = pd.DataFrame(rows)
    print(table.to_string(index=False))
    killed = table[table.killed]
    resumed = table.began.str.startswith("resumed").sum()
    over = table.began.str.startswith("started over").sum()
    print(
        f"moments tried: {len(killed)} kills ({killed.inside.sum()} inside a write); runs "
        f"started: {len(table)}; resumed: {resumed}; started over after a damaged backup: {over}; "
        f"fresh (nothing backed up yet): {(table.began == 'fresh').sum()}"
    )


def whole(path):
    """Raises if the file is not a whole one of its kind (by extension)."""
    path = Path(path)
    if path.suffix == ".npy":
        np.load(path)
    elif path.suffix == ".json":
        json.loads(path.read_text())
    elif path.suffix == ".tsv":
        pd.read_csv(path, sep="\t")
    elif path.suffix in (".png", ".jpg"):
        with Image.open(path) as im:
            im.load()
    elif path.suffix in (".keras", ".zip"):
        with zipfile.ZipFile(path) as z:
            assert z.testzip() is None, path
    elif path.suffix == ".html":
        assert path.read_text().rstrip().endswith("</html>"), path
    elif path.suffix == ".h5":
        import h5py

        with h5py.File(path, "r"):
            pass


def mount(folder, size_kb, *options):
    opts = ",".join([f"size={size_kb}k", *options])
    subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(folder)], check=True)


def remount(folder, *options):
    subprocess.run(["mount", "-o", ",".join(["remount", *options]), str(folder)], check=True)


def can_mount(folder):
    """None if a tmpfs can be mounted here, else why not."""
    folder.mkdir(parents=True, exist_ok=True)
    try:
        mount(folder, 64)
    except (OSError, subprocess.CalledProcessError) as e:
        return f"cannot mount a tmpfs ({e}); this needs root, and a container that allows it"
    subprocess.run(["umount", str(folder)], check=True)
    return None


def workflow(work, disk):
    """A workflow folder with three small photos and the tiny config, results/ and logs/ on disk;
    returns the command that runs it."""
    from tests.conftest import snakemake_command, tiny_config, tiny_images

    config = tiny_config(
        work / "tiny.yaml",
        tiny_images(work / "images"),
        results=str(disk / "results"),
        logs=str(disk / "logs"),
    )
    return snakemake_command(work, "--configfile", str(config))


def outcome(proc, disk):
    """What a run on the small disk did: the rules that failed, the one-line messages, and a
    check that nothing is half-written under its final name."""
    text = proc.stdout + proc.stderr
    failed = sorted(set(re.findall(r"^Error in rule (\w+):", text, re.M)))
    lines = [ln for ln in text.splitlines() if re.match(r"tessera[ :]", ln)]
    for rule in failed:
        said = [ln for ln in lines if ln.startswith(f"tessera {rule}: error: ")]
        assert said, f"rule {rule} failed without its one line:\n{text[-4000:]}"
        assert all(" writing " in ln and str(disk) in ln for ln in said), said
    assert not [ln for ln in lines if "unexpected" in ln], lines
    files = [p for p in disk.rglob("*") if p.is_file() and ".resume" not in p.parts]
    leftovers = [p for p in files if p.name.startswith(".") and ".tmp" in p.name]
    assert not leftovers, leftovers
    for path in files:
        whole(path)
    return failed, lines, len(files)


def leave_free(folder, room):
    """Grow or shrink a filler file on the file system of folder until about room bytes are free
    (None: remove it)."""
    filler = folder / "filler"
    if room is None:
        filler.unlink(missing_ok=True)
        return
    have = filler.stat().st_size if filler.exists() else 0
    st = os.statvfs(folder)
    size = max(0, have + st.f_bavail * st.f_frsize - room)
    with open(filler, "ab") as f:
        f.truncate(min(size, have))
        if size > have:
            os.posix_fallocate(f.fileno(), 0, size)  # real pages: a sparse file takes no room


# (what the run is made to hit, the room left on the disk before it, an output folder removed
# first so that its stage runs again: the report's, as when a user deletes it)
STEPS = (
    ("the patch files", 48 * 1024, None),
    ("the training backup", 700 * 1024, None),
    ("room to finish", None, None),
    ("the report", 16 * 1024, "report"),
    ("room to finish", None, None),
)


def disk(work, steps=STEPS, log=print):
    """The workflow with results/ and logs/ on an 8 MB tmpfs whose room a filler file takes,
    run again after each step with the same command. Returns a row per run; raises at the first
    broken invariant."""
    folder = work / "disk"
    folder.mkdir(parents=True, exist_ok=True)
    cmd = workflow(work, folder)
    rows = []
    mount(folder, 8192)
    try:
        for hit, room, removed in steps:
            if removed:
                shutil.rmtree(folder / "results" / removed)
            leave_free(folder, room)
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
            failed, lines, kept = outcome(proc, folder)
            said = [ln for ln in lines if " error: " in ln]
            if room is None:
                assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
            rows.append({"run": hit, "free kB": "all" if room is None else room // 1024,
                         "rc": proc.returncode, "failed": " ".join(failed) or "-",
                         "files kept": kept,
                         "message": said[0][:120] if said else "completed"})  # fmt: skip
            log(rows[-1])
        assert (folder / "results" / "report" / "index.html").exists()
        remount(folder, "ro")
        ro = subprocess.run(cmd + ["--forcerun", "report"], capture_output=True, text=True)
        said = [ln for ln in (ro.stdout + ro.stderr).splitlines() if ln.startswith("tessera")]
        assert ro.returncode == 1 and len(said) == 1, ro.stdout + ro.stderr
        assert "read-only file system" in said[0] and "results" in said[0], said
        rows.append({"run": "read-only", "free kB": "-", "rc": ro.returncode, "failed": "-",
                     "files kept": "-", "message": said[0][:120]})  # fmt: skip
    finally:
        subprocess.run(["umount", "-l", str(folder)])
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("what", choices=["kills", "disk"])
    parser.add_argument("--epochs", type=int, default=6)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.what == "kills":
            print_kills(kills(Path(tmp), args.epochs))
        elif why := can_mount(Path(tmp) / "probe"):
            sys.exit(f"bench/faults.py disk: {why}")
        else:
            print(pd.DataFrame(disk(Path(tmp), log=lambda row: None)).to_string(index=False))


if __name__ == "__main__":
    main()
