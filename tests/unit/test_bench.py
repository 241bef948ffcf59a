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
    "suite_cpu.py": (["tests/unit/test_requirements.py", "-n", "0", "-p", "no:cacheprovider"], r"\npytest +1 +[\d.]+ +0 .*\nall processes counted: \d+ s of CPU in [1-9]\d* processes"),
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


def test_the_learning_curve_plots_only_configs_with_two_budgets(tmp_path):
    # --plot-only reads the table earlier runs wrote: a curve per config measured at two budgets
    # or more, none for a config measured at one (a single dot is no curve)
    rows = [
        "config\tphotos\tminutes\tepochs\tpsnr\tbest classical\tgain",
        "upscale\t7\t2.5\t8\t31.45\tlanczos\t1.36",
        "upscale\t7\t5.0\t20\t31.54\tlanczos\t1.45",
        "jpeg\t13\t6.5\t11\t29.26\ttotal variation\t0.09",
    ]
    cmd = [sys.executable, str(BENCH / "learning_curve.py"), "--plot-only", "--out", str(tmp_path)]
    (tmp_path / "learning.tsv").write_text("\n".join(rows[:1] + rows[3:]) + "\n")
    one = subprocess.run([*cmd, "--png", str(tmp_path / "one.png")], capture_output=True, text=True)
    assert one.returncode == 0 and "nothing to plot" in one.stdout, one.stderr[-2000:]
    assert not (tmp_path / "one.png").exists()
    (tmp_path / "learning.tsv").write_text("\n".join(rows) + "\n")
    two = subprocess.run([*cmd, "--png", str(tmp_path / "two.png")], capture_output=True, text=True)
    assert two.returncode == 0 and "wrote" in two.stdout, two.stderr[-2000:]
    from PIL import Image

    with Image.open(tmp_path / "two.png") as png:  # one panel, upscale's: 5 inches at 100 dpi
        assert png.size == (500, 360)
