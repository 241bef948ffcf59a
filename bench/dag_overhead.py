"""How long `snakemake -n` takes on 200 images when everything is up to date.

    python bench/dag_overhead.py [--images 200] [--repeat 5] [--keep DIR] [--profile]

Builds that many small images (crops of the sample photographs) in a temporary folder, runs the
whole workflow on them once on a tiny config (one epoch, small patches) so that every output is
really there and up to date, then times `snakemake -n`, which must find nothing to do. The same
command on a one-rule workflow is timed too: that is Snakemake's own start-up (and that of every
plugin it loads), which no workflow can avoid. With --keep DIR the finished run is kept in DIR and
reused by the next call. With --profile, cProfile shows where one `snakemake -n` spends its time.
"""

import argparse
import cProfile
import io
import os
import pstats
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "resources" / "sample_images"
sys.path.insert(0, str(REPO))

from tests.conftest import snakemake_command, tiny_config  # noqa: E402

ONE_RULE = """
rule all:
    input:
        "done.txt",


rule done:
    output:
        "done.txt",
    shell:
        "touch {output}"
"""


def make_images(folder, n, size=32):
    """n different small RGB crops of the sample photographs, as PNG files."""
    folder.mkdir(parents=True, exist_ok=True)
    photos = [np.asarray(Image.open(p).convert("RGB")) for p in sorted(SAMPLES.glob("*.png"))]
    rng = np.random.default_rng(0)
    for i in range(n):
        photo = photos[i % len(photos)]
        y = rng.integers(0, photo.shape[0] - size)
        x = rng.integers(0, photo.shape[1] - size)
        Image.fromarray(photo[y : y + size, x : x + size]).save(folder / f"img{i:04d}.png")


def run(cmd, check=True):
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if check and proc.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def timed(cmd, repeat):
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        proc = run(cmd)
        times.append(time.perf_counter() - start)
    return times, proc.stdout + proc.stderr


def prepare(work, n):
    config = work / "tiny.yaml"
    if (work / "results" / "report" / "index.html").exists():
        print(f"reusing the finished run in {work}")
        return config
    make_images(work / "images", n)
    tiny_config(
        config,
        work / "images",
        patches={"stride": 16, "max_per_image": 8},
        train={"batch_size": 64},
        report={"thumbnail": 32},
    )
    print(f"running the workflow once on {n} images in {work} (several minutes on 2 cores)")
    start = time.perf_counter()
    run(snakemake_command(work, "--configfile", str(config)))
    print(f"  done in {time.perf_counter() - start:.0f} s")
    return config


def profile(work, config, top=25):
    """Where one `snakemake -n` spends its time, in this process."""
    from snakemake.cli import main

    argv = ["snakemake", "-s", str(REPO / "Snakefile"), "-d", str(work), "--cores", "2"]
    argv += ["--configfile", str(config), "-n", "--quiet", "all"]
    prof, saved = cProfile.Profile(), (sys.argv, os.getcwd())
    sys.argv = argv
    prof.enable()
    try:
        main()
    except SystemExit:
        pass
    finally:
        prof.disable()
        sys.argv = saved[0]
        os.chdir(saved[1])
    out = io.StringIO()
    stats = pstats.Stats(prof, stream=out).sort_stats("cumulative")
    stats.print_stats(top)
    print(out.getvalue())
    # The workflow's own code (Snakefile, rules, tessera) and the imports it triggers, apart.
    out = io.StringIO()
    stats.stream = out
    stats.print_stats(f"{REPO}|pandas/__init__|numpy/__init__|yaml/__init__", top)
    print(out.getvalue())


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--keep", type=Path, help="keep the finished run here, and reuse it")
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()

    tmp = None
    if args.keep:
        work = args.keep.resolve()
        work.mkdir(parents=True, exist_ok=True)
    else:
        tmp = tempfile.mkdtemp(prefix="tessera-dag-")
        work = Path(tmp)
    try:
        config = prepare(work, args.images)
        times, out = timed(snakemake_command(work, "--configfile", str(config), "-n"), args.repeat)
        if "Nothing to be done" not in out:
            sys.exit(f"the workflow is not up to date:\n{out[-3000:]}")
        with tempfile.TemporaryDirectory() as empty:
            (Path(empty) / "Snakefile").write_text(ONE_RULE)
            run(snakemake_command(empty, snakefile=Path(empty) / "Snakefile"))
            base, _ = timed(
                snakemake_command(empty, "-n", snakefile=Path(empty) / "Snakefile"), args.repeat
            )

        n = len(list((work / "images").iterdir()))
        best, median, floor = min(times), statistics.median(times), min(base)
        print(f"snakemake -n, {n} images, everything up to date ({args.repeat} runs):")
        print(f"  best {best:.2f} s, median {median:.2f} s")
        print(f"snakemake -n on a one-rule workflow (Snakemake's own start-up): best {floor:.2f} s")
        print(
            f"due to this workflow: {best - floor:.2f} s ({(best - floor) / n * 1000:.1f} ms/image)"
        )
        if args.profile:
            profile(work, config)
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
