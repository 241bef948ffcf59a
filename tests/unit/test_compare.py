"""The page that compares variants, built from real files: crops of sample photographs, blurred
copies as each variant's rebuilt images, and metrics and baselines measured on them."""

import copy
import json
import re
from html.parser import HTMLParser
from urllib.parse import unquote

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageFilter

from tessera import baselines, compare, reconstruct
from tests.conftest import sample

# image id -> (sample photograph, crop box): 112 x 80 pixels each, so a large crop gets clamped
PHOTOS = {
    "astronaut.png": ("astronaut.png", (150, 40, 262, 120)),
    "coffee.png": ("coffee.png", (200, 100, 312, 180)),
    "rocket.png": ("rocket.jpg", (250, 150, 362, 230)),
}
SPLIT = {"astronaut.png": "train", "coffee.png": "val", "rocket.png": "val"}
SETTINGS = {
    "patches": {"size": 32, "stride": 16},
    "split": {"val_fraction": 0.3, "seed": 17},
    "model": {"preset": "compact"},
    "task": {"kind": "reconstruct", "noise": "gaussian", "sigma": 25, "rate": 0.1, "seed": 0},
    "train": {"epochs": 4, "learning_rate": 0.002},
    "reconstruct": {"tile": 128, "margin": None},
}
DENOISE = {"kind": "denoise", "noise": "gaussian", "sigma": 25, "rate": 0.1, "seed": 0}
DENOISER_PARAMETERS = {"gaussian blur": 1.0, "median filter": 3, "non-local means": 0.6}


def _sources(root):
    folder = root / "photos"
    folder.mkdir(exist_ok=True)
    out = {}
    for image_id, (name, box) in PHOTOS.items():
        out[image_id] = folder / image_id
        if not out[image_id].exists():
            Image.fromarray(sample(name, box)).save(out[image_id])
    return out


def _settings(changes):
    settings = copy.deepcopy(SETTINGS)
    for section, values in changes.items():
        settings[section].update(values)
    return settings


def _tsv(rows, path):
    pd.DataFrame(rows).to_csv(path, sep="\t", index=False)
    return path


def make_variant(root, name, radius, split=SPLIT, flags=(), **changes):
    """A variant's outputs as the workflow writes them, its rebuilt images being the model input
    blurred by `radius` pixels: the larger the radius, the lower the PSNR."""
    settings = _settings(changes)
    task = settings["task"]
    folder = root / "results" / name
    (folder / "reconstructed").mkdir(parents=True)
    sources, rebuilt, metrics, base = _sources(root), {}, [], []
    for image_id, source in sources.items():
        clean = np.asarray(Image.open(source))
        given = reconstruct.model_input(clean, image_id, task)
        blurred = Image.fromarray(given).filter(ImageFilter.GaussianBlur(radius))
        rebuilt[image_id] = folder / "reconstructed" / image_id
        blurred.save(rebuilt[image_id])
        row = {"image": image_id, "path": image_id, "split": split[image_id]}
        row.update(reconstruct.metrics(clean, np.asarray(blurred)))
        if given is not clean:
            row.update({f"{k}_input": v for k, v in reconstruct.metrics(clean, given).items()})
        metrics.append({**row, "contrast_ratio": 1.0})
        parameters = DENOISER_PARAMETERS if task["kind"] == "denoise" else {}
        for b in baselines.evaluate(image_id, clean, task, parameters):
            base.append({"image": image_id, "split": split[image_id], **b})
    summary = {
        "params": 64207,
        "epochs": 4,
        "patches_per_s": 1500.0,
        "wall_s": 12.5,
        "flags": list(flags),
        "stopped_by_budget": False,
        "task": {"kind": task["kind"]},
        "preset": settings["model"]["preset"],
    }
    (folder / "summary.json").write_text(json.dumps(summary))
    history = [{"epoch": e, "loss": radius / e, "val_loss": 1.2 * radius / e} for e in (1, 2, 3, 4)]
    (folder / "report").mkdir()
    (folder / "report" / "index.html").write_text("<html></html>\n")
    return {
        "name": name,
        "settings": settings,
        "summary": folder / "summary.json",
        "history": _tsv(history, folder / "history.tsv"),
        "metrics": _tsv(metrics, folder / "metrics.tsv"),
        "baselines": _tsv(base, folder / "baselines.tsv"),
        "report": folder / "report" / "index.html",
        "sources": sources,
        "rebuilt": rebuilt,
    }


@pytest.fixture(scope="module")
def three(tmp_path_factory):
    root = tmp_path_factory.mktemp("three")
    variants = [
        make_variant(root, "slow", 1.5, train={"learning_rate": 0.0005}),
        make_variant(root, "base", 0.6, flags=["collapsed: the output is flat"]),
        make_variant(root, "dncnn", 2.5, model={"preset": "dncnn"}),
    ]
    page = compare.build(variants, root / "results" / "compare", crop=48)
    return variants, page


@pytest.fixture(scope="module")
def denoising(tmp_path_factory):
    root = tmp_path_factory.mktemp("denoise")
    variants = [
        make_variant(root, "light", 0.8, task=DENOISE),
        make_variant(root, "heavy", 1.6, task=DENOISE, train={"epochs": 8}),
    ]
    return variants, compare.build(variants, root / "results" / "compare", crop=48)


class _Page(HTMLParser):
    """Every src and href of a page, and the pictures as (src, alt) pairs."""

    def __init__(self, page):
        super().__init__()
        self.refs, self.pictures = [], []
        self.feed(page.read_text())

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for key in ("src", "href"):
            if attrs.get(key) and not attrs[key].startswith("#"):
                self.refs.append(attrs[key])
        if tag == "img":
            self.pictures.append((attrs["src"], attrs["alt"]))


def _read(page, ref):
    return np.asarray(Image.open(page.parent / unquote(ref)).convert("RGB"))


def _crops(page):
    """{caption: crop array} of the crops on a page."""
    found = _Page(page).pictures
    return {alt.split(":")[0]: _read(page, src) for src, alt in found if "crops/" in src}


def _text(page):
    """The page's text with every run of white space as one space, as a browser shows it."""
    return " ".join(page.read_text().split())


def _val_mean(path):
    table = pd.read_csv(path, sep="\t")
    return table[table.split == "val"].groupby("method").psnr.mean()


def test_only_the_differing_settings_become_columns(three):
    variants, page = three
    table = pd.read_csv(page.parent / "compare.tsv", sep="\t")
    assert list(table.variant) == ["slow", "base", "dncnn"]
    assert list(table.columns) == ["variant", "network", "model.preset", "train.learning_rate"] + [
        *compare.SCORES,
        "flags",
        "best",
    ]
    assert list(table["train.learning_rate"]) == [0.0005, 0.002, 0.002]
    assert table["flags"].fillna("").tolist() == ["", "collapsed: the output is flat", ""]
    text = _text(page)
    assert "Warning (base): collapsed: the output is flat" in text
    assert "<details>" in text and "patches.<wbr>size" in text  # every setting, below the table


def test_the_least_blurred_variant_is_the_only_best(three):
    variants, page = three
    table = pd.read_csv(page.parent / "compare.tsv", sep="\t")
    assert table.best.tolist() == [False, True, False]
    assert table.val_psnr.idxmax() == 1
    assert compare.best_variant(dict(zip(table.variant, table.val_psnr))) == "base"
    expected = [
        pd.read_csv(v["metrics"], sep="\t").query("split == 'val'").psnr.mean() for v in variants
    ]
    assert table.val_psnr.tolist() == pytest.approx(expected)
    assert re.search(r'<tr class="best"><td>base <span class="mark">', page.read_text())


def test_the_margin_is_over_the_best_classical_method(three, denoising):
    for variants, page in (three, denoising):
        table = pd.read_csv(page.parent / "compare.tsv", sep="\t").set_index("variant")
        for v in variants:
            methods = _val_mean(v["baselines"]).drop("noisy input", errors="ignore")
            margin = table.loc[v["name"], "val_psnr"] - methods.max()
            assert table.loc[v["name"], "margin_db"] == pytest.approx(margin)
            assert f"{methods.idxmax()} ({methods.max():.2f})" in _text(page)
    # in denoise mode the noisy input is a baseline row but never the one the margin is over
    assert "noisy input" in _val_mean(denoising[0][0]["baselines"])


def test_every_reference_is_relative_and_exists(three):
    variants, page = three
    refs = _Page(page).refs
    for v in variants:
        assert f"../{v['name']}/report/index.html" in refs
    assert "loss.png" in refs and len([r for r in refs if r.startswith("crops/")]) == 4
    for ref in refs:
        assert not re.match(r"^[a-z]+:|^/", ref), ref
        assert (page.parent / unquote(ref)).is_file(), ref


def test_the_crops_are_one_window_of_one_validation_image(three):
    variants, page = three
    source = np.asarray(Image.open(variants[0]["sources"]["coffee.png"]))
    top, left, side = compare.crop_box(source, 48)
    window = (slice(top, top + side), slice(left, left + side))
    crops = _crops(page)
    assert list(crops) == ["original", "slow", "base", "dncnn"]
    assert {c.shape for c in crops.values()} == {(48, 48, 3)}
    np.testing.assert_array_equal(crops["original"], source[window])
    for v in variants:
        rebuilt = np.asarray(Image.open(v["rebuilt"]["coffee.png"]))
        np.testing.assert_array_equal(crops[v["name"]], rebuilt[window])
    assert "a validation image in every variant" in _text(page)


def test_denoise_variants_show_the_noisy_input_they_were_given(denoising):
    variants, page = denoising
    clean = np.asarray(Image.open(variants[0]["sources"]["coffee.png"]))
    top, left, side = compare.crop_box(clean, 48)
    noisy = reconstruct.model_input(clean, "coffee.png", DENOISE)
    crops = _crops(page)
    assert list(crops) == ["original", "noisy input", "light", "heavy"]
    np.testing.assert_array_equal(crops["noisy input"], noisy[top : top + side, left : left + side])
    table = pd.read_csv(page.parent / "compare.tsv", sep="\t")
    assert [c for c in table.columns if "." in c] == ["train.epochs"]


def test_one_variant_alone_works(tmp_path):
    name = 'lr <0.01> & "x"'  # escaped in the page, URL-quoted in links, made safe in file names
    variant = make_variant(tmp_path, name, 1.0)
    page = compare.build([variant], tmp_path / "compare")
    table = pd.read_csv(page.parent / "compare.tsv", sep="\t")
    assert table.variant.tolist() == [name] and table.best.tolist() == [True]
    assert not [c for c in table.columns if "." in c]
    text = _text(page)
    assert "No setting differs: there is only one variant." in text
    assert "lr &lt;0.01&gt; &amp; &#34;x&#34;" in text and name not in text
    crops = _crops(page)
    assert {c.shape for c in crops.values()} == {(80, 80, 3)}  # 128 clamped to the image
    for ref in _Page(page).refs:
        assert (page.parent / unquote(ref)).is_file(), ref


def test_without_a_common_validation_image_the_first_common_one_is_shown(tmp_path):
    other = {"astronaut.png": "val", "coffee.png": "train", "rocket.png": "train"}
    variants = [make_variant(tmp_path, "a", 1.0), make_variant(tmp_path, "b", 1.0, split=other)]
    text = _text(compare.build(variants, tmp_path / "compare", crop=32))
    assert "No image is on the validation side in every variant" in text
    assert "<b>astronaut.png</b>" in text


def test_the_crop_goes_to_the_textured_half():
    rng = np.random.default_rng(0)
    image = np.full((64, 128, 3), 90, np.uint8)
    image[:, 64:] = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    assert compare.crop_box(image, 64) == (0, 64, 64)
    assert compare.crop_box(image[:, ::-1], 64) == (0, 0, 64)
    assert compare.crop_box(image, 500) == (0, 64, 64)  # clamped to the image's short side


def test_settings_are_flattened_and_only_differences_kept():
    a = {"train": {"learning_rate": 0.002, "epochs": 4}, "model": {"preset": "compact"}}
    b = {"train": {"learning_rate": 0.01, "epochs": 4}, "model": {"preset": "compact", "x": 1}}
    flats = [compare.flatten(a), compare.flatten(b)]
    assert flats[0] == {"train.learning_rate": 0.002, "train.epochs": 4, "model.preset": "compact"}
    assert compare.differing_keys(flats) == ["train.learning_rate", "model.x"]
    assert compare.differing_keys(flats[:1]) == []


def test_the_best_variant_is_the_first_highest_score():
    assert compare.best_variant({"a": 30.0, "b": 31.0, "c": float("nan")}) == "b"
    assert compare.best_variant({"a": 31.0, "b": 31.0}) == "a"
    assert compare.best_variant({"a": float("nan")}) is None


def test_a_network_is_one_readable_cell():
    from tessera import models

    assert compare.network(models.normalise({"preset": "compact", "width": 16})) == (
        "compact: width 16, latent 12, kernel 3"
    )
    assert compare.network({"preset": "seed"}) == "seed"
    spec = {"file": "examples/tiny_unet.py", "function": "build", "args": {"width": 16}}
    assert (
        compare.network({**spec, "hash": "9f2c" * 16}) == "examples/tiny_unet.py: build(width=16)"
    )
    enlarging = {**spec, "factor": 2}  # a model file of the upscale task
    assert compare.network(enlarging) == "examples/tiny_unet.py: build(width=16), enlarges x2"
    told = {"preset": "dncnn", "depth": 8, "mask": 128, "init": "old/model.keras"}
    assert compare.network(told) == "dncnn: depth 8, told the holes, from old/model.keras"
    among = {"preset": "dncnn", "depth": 8, "mask": 128, "holes_only": False}  # holes and noise
    assert compare.network(among) == "dncnn: depth 8, told the holes, mends every pixel"
