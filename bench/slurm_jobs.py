"""The tiny test workflow through the local one-node SLURM: wall time and SLURM jobs submitted,
without grouping (tests/slurm/profile alone) and with the grouping of profiles/slurm; and the same
workflow run by Snakemake alone on this machine, for comparison.

Needs root (it starts the scheduler of tests/slurm/start-slurm.sh when it is not up, and stops it
after). `--images N` uses N crops instead of three, to see how the job count grows.

    python bench/slurm_jobs.py [--images 3] [--keep DIR]
"""

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from PIL import Image  # noqa: E402

from tests.conftest import sample, snakemake_command, tiny_config  # noqa: E402
from tests.slurm import cluster  # noqa: E402

CROPS = [("astronaut.png", (150, 40, 246, 136)), ("coffee.png", (200, 100, 312, 180))]
CROPS += [("rocket.jpg", (250, 150, 330, 246)), ("chelsea.png", (100, 50, 196, 146))]
CROPS += [("camera.png", (200, 100, 296, 196)), ("retina.jpg", (400, 400, 496, 496))]


def workdir(root, n):
    images = root / "images"
    images.mkdir(parents=True)
    for i in range(n):
        name, box = CROPS[i % len(CROPS)]
        Image.fromarray(sample(name, box)).save(images / f"{i:03d}_{Path(name).stem}.png")
    tiny_config(root / "tiny.yaml", images)
    return root


def seconds(hms):
    parts = [int(p) for p in re.split(r"[:-]", hms)]
    return sum(p * m for p, m in zip(reversed(parts), (1, 60, 3600, 86400)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=3)
    ap.add_argument("--keep", type=Path, help="work in this folder and keep it")
    args = ap.parse_args()

    started = False
    if not cluster.running():
        reason = cluster.start()
        if reason:
            sys.exit(f"no SLURM scheduler: {reason}")
        started = True
    try:
        base = args.keep or Path(tempfile.mkdtemp(prefix="tessera-slurm-"))
        repo = cluster.snapshot(base / "tessera")
        print(f"{args.images} images of about 96x96, 1 epoch; work in {base}")
        print(f"{'profile':36} {'wall s':>7} {'jobs':>5} {'job run s':>10}  jobs per rule")
        for name, profiles in (
            ("tests/slurm/profile", [cluster.TEST_PROFILE]),
            ("profiles/slurm + tests/slurm/profile", [cluster.SLURM_PROFILE, cluster.TEST_PROFILE]),
        ):
            work = workdir(base / name.split()[0].replace("/", "_"), args.images)
            run = cluster.submit(work, work / "tiny.yaml", profiles, repo=repo, timeout=1800)
            if run.returncode != 0:
                sys.exit(f"{name}: snakemake failed\n{run.output[-4000:]}")
            records = [cluster.record(j) for j in run.job_ids]
            busy = sum(seconds(r["RunTime"]) for r in records)
            per_rule = {}
            for r in records:
                rule = cluster.rule_of(r)
                per_rule[rule] = per_rule.get(rule, 0) + 1
            print(f"{name:36} {run.wall_s:7.0f} {len(run.job_ids):5d} {busy:10d}  {per_rule}")
        work = workdir(base / "local", args.images)
        cmd = snakemake_command(
            work, "--configfile", str(work / "tiny.yaml"), snakefile=repo / "Snakefile"
        )
        t0 = time.monotonic()
        subprocess.run(
            cmd,
            check=True,
            cwd=work,
            capture_output=True,
        )
        print(f"{'no SLURM: --cores 2':36} {time.monotonic() - t0:7.0f}")
    finally:
        if started:
            cluster.stop()


if __name__ == "__main__":
    main()
