"""Networks as settings in real runs: a grid over a preset's argument and a model file of one's
own in one comparison, the rerun rules for that file, fine-tuning as an input of training, one
line for a bad argument, and the post's U-Net and residual network passing the learning check.
"""

import json
import re
import shutil
from collections import Counter

import pandas as pd
import pytest
import yaml

from tests.conftest import REPO, snakemake, tiny_config, tiny_images
from tests.workflow.test_end_to_end import learning_failures, workflow_run
from tests.workflow.test_rerun import planned, rules

GRID = {"model.width": [4, 8]}
WIDTHS = ["model_width~4", "model_width~8"]  # named by Paramspace
MINE = {"mine": {"model": {"file": "mine.py", "args": {"width": 4}}}}


def write_config(work, **changes):
    base = yaml.safe_load((work / "base.yaml").read_text())
    base.update(changes)
    (work / "run.yaml").write_text(yaml.safe_dump(base))


def run(work, *args, **kw):
    return snakemake(work, *args, "--configfile", str(work / "run.yaml"), **kw)


def plan(work, *args):
    return Counter(rules(planned(run(work, "-n", *args))))


@pytest.fixture(scope="module")
def done(tmp_path_factory):
    work = tmp_path_factory.mktemp("networks")
    images = tiny_images(work / "photos")
    shutil.copy(REPO / "examples" / "tiny_unet.py", work / "mine.py")
    tiny_config(work / "base.yaml", images, grid=GRID, variants=MINE)
    write_config(work)
    return work, run(work, timeout=1500)  # a shared, loaded CPU can take minutes


def test_a_grid_over_a_preset_argument_trains_each_width_and_the_file(done):
    work, _ = done
    r = work / "results"
    for variant, width in zip(WIDTHS, (4, 8)):
        summary = json.loads((r / variant / "model" / "summary.json").read_text())
        assert summary["model"] == {"preset": "compact", "width": width, "latent": 12, "kernel": 3}
        assert summary["preset"] == "compact" and summary["network"] == f"compact (width {width})"
    summary = json.loads((r / "mine" / "model" / "summary.json").read_text())
    assert summary["model"]["file"] == "mine.py" and summary["model"]["args"] == {"width": 4}
    assert len(summary["model"]["hash"]) == 12 and "preset" not in summary
    assert summary["receptive_radius"] == 3 and summary["size_multiple"] == 2
    # TensorBoard logs beside each variant's history, outside the declared outputs
    for variant in [*WIDTHS, "mine"]:
        assert list((r / variant / "model" / "tensorboard" / "train").glob("events.out.*"))


def test_the_comparison_page_and_reports_show_the_networks_arguments(done):
    work, _ = done
    page_dir = work / "results" / "compare"
    table = pd.read_csv(page_dir / "compare.tsv", sep="\t").set_index("variant")
    assert table.loc[WIDTHS, "model.width"].tolist() == [4, 8]
    assert table.loc["mine", "model.file"] == "mine.py"
    page = (page_dir / "index.html").read_text()
    # each network one cell of the table; every argument under the settings below it
    assert "compact: width 4, latent 12, kernel 3" in page and "mine.py: build(width=4)" in page
    assert "model.<wbr>width" in page and "compact (width 4)" in page and "mine.py:build" in page
    report = (work / "results" / "mine" / "report" / "index.html").read_text()
    assert "Model file <b>mine.py:build</b>" in report


def test_nothing_changed_nothing_to_do(done):
    assert plan(done[0]) == Counter()


def training_jobs(out):
    """The train jobs a dry run lists, each as the text of its block (input, output, wildcards)."""
    blocks = re.split(r"^\[.*\]$", out, flags=re.M)  # each job's block starts with a timestamp
    return [b for b in blocks if b.lstrip().startswith("rule train:")]


def test_a_comment_in_the_model_file_reruns_nothing_and_a_code_edit_retrains_its_variant(done):
    work, _ = done
    original = (work / "mine.py").read_text()
    try:
        (work / "mine.py").write_text(original.replace("# any size", "# every size\n\n# more"))
        assert plan(work) == Counter()
        (work / "mine.py").write_text(original.replace("2 * width", "3 * width"))
        jobs = training_jobs(run(work, "-n").stdout)
        assert len(jobs) == 1 and "variant=mine" in jobs[0], jobs
    finally:
        (work / "mine.py").write_text(original)
    assert plan(work) == Counter()


def test_fine_tuning_from_another_variants_model_is_an_input_of_its_training(done):
    work, _ = done
    start = f"results/{WIDTHS[0]}/model/model.keras"
    write_config(work, variants={**MINE, "tuned": {"model": {"width": 4, "init": start}}})
    try:
        jobs = training_jobs(run(work, "-n").stdout)
        assert len(jobs) == 1 and "variant=tuned" in jobs[0] and start in jobs[0], jobs
    finally:
        write_config(work)


@pytest.mark.parametrize(
    "config, expected",
    [
        ("model={preset: unet, depth: 3}", "tessera: error: model.depth: unknown argument of "
         "preset 'unet'; it takes: width (1..256, default 16), levels (1..5, default 2), output "
         "(direct|residual, default direct)"),
        ({"grid": {"model.width": [0]}}, "tessera: error: variants.model_width~0.model.width: 0 is not "
         "allowed for preset 'compact'; use an integer from 1 to 512 (default 32)"),
        ("model={file: nets/gone.py}", "tessera: error: model.file: nets/gone.py: no such file"),
    ],
)  # fmt: skip
def test_a_bad_network_setting_stops_before_any_job_with_one_line(tmp_path, config, expected):
    # a change on the command line, or (a grid) in the config file
    extra = {} if isinstance(config, str) else config
    tiny_config(tmp_path / "tiny.yaml", tiny_images(tmp_path / "photos"), **extra)
    given = ["--config", config] if isinstance(config, str) else []
    proc = snakemake(
        tmp_path, "-n", "--configfile", str(tmp_path / "tiny.yaml"), *given, check=False
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1 and "Traceback" not in out
    assert [line for line in out.splitlines() if "tessera: error" in line] == [expected]


def test_the_posts_other_networks_learn(tmp_path_factory):
    # one run, a variant each, sharing patches and split; tiles wide enough for their margins
    # (receptive radius 23 and 16) on the 128-pixel photos. The same check fails an untrained
    # model: test_end_to_end's counterpart shows it once for every preset, as the check does not
    # depend on the network.
    presets = ("unet", "resnet")
    variants = {name: {"model": {"preset": name}} for name in presets}
    work, images, _ = workflow_run(
        tmp_path_factory, "posts", checked_only=True, variants=variants, reconstruct={"tile": 128}
    )
    for name in presets:
        assert learning_failures(work, images, name) == [], name
