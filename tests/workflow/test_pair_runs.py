"""Real snakemake runs of task.kind paired: a folder of damaged images and one of their clean
targets, with partners missing, extra, of another size and undecodable."""

import importlib.util

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from tests.conftest import REPO, snakemake, tiny_config, tiny_images

_spec = importlib.util.spec_from_file_location("make_pairs", REPO / "resources" / "make_pairs.py")
make_pairs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make_pairs)

PAIRED = {"task": {"kind": "paired"}}


def pair_folders(root, qualities=make_pairs.QUALITIES, sigma=make_pairs.SIGMA):
    """clean/ with the tiny photos, damaged/ with each of them damaged as make_pairs.py does."""
    clean = tiny_images(root / "clean")
    damaged = root / "damaged"
    damaged.mkdir(parents=True, exist_ok=True)
    for path in sorted(clean.iterdir()):
        photo = np.asarray(Image.open(path).convert("RGB"))
        Image.fromarray(make_pairs.damage(photo, path.name, 0, qualities, sigma)[0]).save(
            damaged / path.name
        )
    return damaged, clean


@pytest.fixture(scope="module")
def awkward(tmp_path_factory):
    """A run whose folders hold, beside three good pairs, an image without a target, a target
    without an image, a pair of two sizes and a target that does not decode."""
    work = tmp_path_factory.mktemp("pairs")
    damaged, clean = pair_folders(work)
    photo = np.asarray(Image.open(clean / "coffee.png"))
    Image.fromarray(photo).save(damaged / "lonely.png")
    Image.fromarray(photo).save(clean / "extra.png")
    Image.fromarray(photo).save(damaged / "sized.png")
    Image.fromarray(photo[:, :-8]).save(clean / "sized.png")
    Image.fromarray(photo).save(damaged / "broken.png")
    (clean / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    tiny_config(work / "tiny.yaml", damaged, targets=str(clean), **PAIRED)
    proc = snakemake(work, "--configfile", str(work / "tiny.yaml"))
    return work, damaged, clean, proc


def test_the_run_goes_on_and_the_report_lists_every_unpaired_file(awkward):
    work, damaged, clean, proc = awkward
    r = work / "results"
    metrics = pd.read_csv(r / "report" / "metrics.tsv", sep="\t")
    assert sorted(metrics.image) == ["astronaut.png", "coffee.png", "rocket.png"]
    page = (r / "report" / "index.html").read_text()
    skipped = page[page.index('id="skipped"') :]
    for line in (
        f"no target &#39;{clean / 'lonely.png'}&#39; for it in the targets folder",
        f"a target without a damaged image: no &#39;{damaged / 'extra.png'}&#39;",
        f"its target &#39;{clean / 'sized.png'}&#39; is 104x80 pixels, the image 112x80",
        f"its target &#39;{clean / 'broken.png'}&#39; cannot be used: ",
    ):
        assert line in skipped, line
    out = proc.stdout + proc.stderr
    assert f"skipped sized.png: its target '{clean / 'sized.png'}' is 104x80" in out


def test_images_are_measured_against_their_targets_beside_the_damaged_input(awkward):
    work, damaged, clean, _ = awkward
    r = work / "results"
    metrics = pd.read_csv(r / "report" / "metrics.tsv", sep="\t").set_index("image")
    baselines = pd.read_csv(r / "baselines" / "metrics.tsv", sep="\t").set_index("image")
    assert set(baselines.method) == {"damaged input"}
    for name in metrics.index:
        truth = np.asarray(Image.open(clean / name), dtype=np.float64)
        given = np.asarray(Image.open(damaged / name), dtype=np.float64)
        rebuilt = np.asarray(Image.open(r / "reconstructed" / f"{name}.png"), dtype=np.float64)
        psnr = lambda a: 10 * np.log10(255**2 / np.mean((truth - a) ** 2))  # noqa: E731
        # the same 8-bit images through another PSNR formula: equal up to float64 rounding
        assert metrics.psnr[name] == pytest.approx(psnr(rebuilt), abs=1e-6)
        assert metrics.psnr_input[name] == pytest.approx(psnr(given), abs=1e-6)
        assert baselines.psnr[name] == pytest.approx(psnr(given), abs=1e-6)
    assert (r / "report" / "images" / "coffee.png.damaged.thumb.jpg").is_file()


def test_apply_needs_only_damaged_images(awkward, tmp_path):
    work, damaged, _, _ = awkward
    new = tmp_path / "new"
    new.mkdir()
    (new / "a.png").write_bytes((damaged / "coffee.png").read_bytes())
    snakemake(
        work,
        "apply",
        "--configfile",
        str(work / "tiny.yaml"),
        "--config",
        f"apply={{images: '{new}', output: '{tmp_path / 'out'}'}}",
    )
    table = pd.read_csv(tmp_path / "out" / "metrics.tsv", sep="\t")
    assert list(table.image) == ["a.png"] and "psnr" not in table  # no truth to measure against
    out = np.asarray(Image.open(tmp_path / "out" / "a.png.png"))  # named by the image id
    assert out.shape == np.asarray(Image.open(new / "a.png")).shape


@pytest.mark.parametrize(
    "case, expected",
    [
        ("targets without paired", "tessera: error: targets: set, but task.kind is not paired"),
        ("paired without targets", "tessera: error: task.kind: paired needs targets:"),
        ("missing folder", "tessera: error: targets folder '{root}/nowhere' does not exist"),
        ("no image files", "tessera: error: no image files in '{root}/empty'"),
        ("nothing pairs", "tessera: error: targets: no image of '{root}/damaged' has a target"),
    ],
)
def test_a_bad_targets_setting_is_one_line_before_any_job(tmp_path, case, expected):
    damaged, clean = pair_folders(tmp_path)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "z.png").write_bytes((clean / "coffee.png").read_bytes())
    changes = {
        "targets without paired": {"targets": str(clean)},
        "paired without targets": PAIRED,
        "missing folder": {"targets": str(tmp_path / "nowhere"), **PAIRED},
        "no image files": {"targets": str(tmp_path / "empty"), **PAIRED},
        "nothing pairs": {"targets": str(tmp_path / "other"), **PAIRED},
    }[case]
    tiny_config(tmp_path / "bad.yaml", damaged, **changes)
    bad = snakemake(tmp_path, "-n", "--configfile", str(tmp_path / "bad.yaml"), check=False)
    out = bad.stdout + bad.stderr
    assert bad.returncode != 0 and expected.format(root=tmp_path) in out, out[-2000:]
    assert out.count("tessera: error:") == 1 and "Traceback" not in out
