"""The speed scripts in bench/ still run against the library (on tiny inputs: no timing is
checked here, only that each prints its figures)."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
CASES = {
    "train_speed.py": (["--presets", "compact", "--epochs", "2", "--patches", "256"], r"compact +\d+ +\d+ +\d\.\d+"),
    "train_speed.py --pipeline-only": (["--patches", "512", "--epochs", "1"], r"host pipeline: [\d,]+ patches/s"),
    "tiling.py": (["--repeat", "1", "--size", "160x96"], r"\(b\) / \(a\): [\d.]+x"),
    "tiling.py --valid-twin": (["--repeat", "1", "--size", "160x96", "--depth", "4", "--width", "8"], r"valid twin / same: 0\.\d+ of the computed pixels, [\d.]+ of the time; outputs differ by at most (0\.00e\+00|\d\.\d+e-(0[5-9]|[1-9]\d))"),
    "radius.py": (["--presets", "dncnn"], r"dncnn +8 +8 +[\d.e+-]+ +[\d.e+-]+"),
    "scale.py": (["--sizes", "3", "--steps", "2", "--plan", "20"], r"snakemake -n on 20 images: [\d.]+ s"),
    "configs.py": (["--examples", "20", "--in-process"], r"20 configurations drawn from the schema"),
}  # fmt: skip


# scale.py runs Snakemake: slow, as the workflow tests are
@pytest.mark.parametrize(
    "case",
    [pytest.param(c, marks=pytest.mark.slow) if c == "scale.py" else c for c in sorted(CASES)],
)
def test_bench_script_prints_its_figures(case):
    script, *options = case.split()
    args, expected = CASES[case]
    done = subprocess.run(
        [sys.executable, str(BENCH / script), *options, *args],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert re.search(expected, done.stdout), done.stdout
