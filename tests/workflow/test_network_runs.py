"""Networks as settings in real runs: one line for a bad argument, and the post's U-Net and residual
network passing the learning check. (A grid over a preset's argument, a model file of one's own
and fine-tuning are variants: test_variants.py runs them with the other variants.)
"""

import pytest

from tests.conftest import snakemake, tiny_config, tiny_images
from tests.workflow.test_end_to_end import learning_failures, workflow_run


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
