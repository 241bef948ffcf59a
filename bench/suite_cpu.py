"""Where the test suite's CPU goes: runs pytest with the arguments given, every Python process it
starts (the workers, Snakemake, each job's script, the tools) noting its own CPU seconds as it
exits, and prints them by kind of process, with how many imported TensorFlow.

    python bench/suite_cpu.py [pytest arguments]      e.g. python bench/suite_cpu.py -m "not slow"

A process killed before it exits (the fault tests' kills), or started without PYTHONPATH (the GPU
check's Python, the SLURM jobs), is not counted: "all processes" below is at most what the
machine spent, which the last line gives.
"""

import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]

# Loaded by every Python that has the folder on its PYTHONPATH; appends one line as it exits.
SITECUSTOMIZE = """
import atexit, os, resource, sys


def _note():
    r = resource.getrusage(resource.RUSAGE_SELF)
    row = [f"{r.ru_utime + r.ru_stime:.3f}", str(int("tensorflow" in sys.modules)),
           " ".join(sys.argv)[:200].replace("\\t", " ").replace("\\n", " ")]
    try:
        with open(os.environ["TESSERA_SUITE_CPU_LOG"], "a") as f:
            f.write("\\t".join(row) + "\\n")
    except OSError:
        pass


atexit.register(_note)
"""


def kind(argv):
    """What a process was, from its command line."""
    job = re.search(r"tmp\w+\.(\w+)\.py", argv)  # Snakemake's copy of a script: tmpXXXX.train.py
    if job:
        return f"job: {job.group(1)}"
    words = argv.split()
    if words and (
        words[0].endswith(os.path.join("snakemake", "__main__.py"))
        or words[0].endswith("snakemake")
    ):
        return "snakemake -n" if {"-n", "--dry-run"} & set(words) else "snakemake"
    if not words or words[0] == "-c":
        return "pytest workers (the tests run in them), python -c"
    if words[0].endswith(os.path.join("pytest", "__main__.py")):
        return "pytest"
    return Path(words[0]).name


def main():
    with tempfile.TemporaryDirectory() as folder:
        log = Path(folder) / "cpu.tsv"
        (Path(folder) / "sitecustomize.py").write_text(SITECUSTOMIZE)
        path = os.pathsep.join(p for p in (folder, os.environ.get("PYTHONPATH")) if p)
        env = {**os.environ, "PYTHONPATH": path, "TESSERA_SUITE_CPU_LOG": str(log)}
        began = time.monotonic()
        done = subprocess.run([sys.executable, "-m", "pytest", *sys.argv[1:]], cwd=REPO, env=env)
        wall = time.monotonic() - began
        rows = [line.split("\t") for line in log.read_text().splitlines()] if log.exists() else []
    table = pd.DataFrame(rows, columns=["cpu", "tensorflow", "argv"])
    table["cpu"], table["tensorflow"] = table.cpu.astype(float), table.tensorflow.astype(int)
    table["kind"] = table.argv.map(kind)
    by = table.groupby("kind").agg(
        processes=("cpu", "size"), cpu_s=("cpu", "sum"), tensorflow=("tensorflow", "sum")
    )
    by["cpu_s_each"] = by.cpu_s / by.processes
    print(by.sort_values("cpu_s", ascending=False).round(1).to_string())
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(
        f"all processes counted: {table.cpu.sum():.0f} s of CPU in {len(table)} processes, "
        f"{table.tensorflow.sum()} of them importing TensorFlow; the machine: "
        f"{children.ru_utime + children.ru_stime:.0f} s of CPU in {wall:.0f} s"
    )
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
