import numpy as np
import pandas as pd

from tessera import baselines
from tests.conftest import sample

DENOISE = {"kind": "denoise", "noise": "gaussian", "sigma": 25, "rate": 0.1, "seed": 0}


def test_parameters_are_chosen_on_the_training_images():
    training = [("a.png", sample("chelsea.png")), ("b.png", sample("rocket.jpg"))]
    chosen = baselines.tune(training, DENOISE, threads=2)
    assert set(chosen) == set(baselines.DENOISERS)
    for name, value in chosen.items():
        assert value in baselines.DENOISERS[name][1]


def test_denoisers_improve_on_the_noisy_input_of_a_real_photo():
    clean = sample("coffee.png", (100, 100, 300, 260))
    params = {"gaussian blur": 1.0, "median filter": 3, "non-local means": 0.6}
    rows = pd.DataFrame(baselines.evaluate("coffee.png", clean, DENOISE, params)).set_index(
        "method"
    )
    assert list(rows.index) == ["noisy input", *params]
    assert 19 < rows.psnr["noisy input"] < 23
    for name in params:
        assert rows.psnr[name] > rows.psnr["noisy input"] + 2
    assert rows.psnr["non-local means"] == rows.psnr.max()


def test_jpeg_baselines_report_size_and_quality():
    clean = sample("astronaut.png", (0, 0, 200, 200))
    rows = pd.DataFrame(baselines.evaluate("x.png", clean, {"kind": "reconstruct"}, {}))
    q75, q95 = rows.set_index("method").loc[["JPEG q75", "JPEG q95"]].itertuples()
    assert q95.psnr > q75.psnr > 25
    assert 0 < q75.bytes_per_pixel < q95.bytes_per_pixel < 3


def test_run_writes_one_row_per_image_and_method(tmp_path):
    from PIL import Image

    paths = {}
    for name, box in (("a.png", (0, 0, 96, 96)), ("b.png", (100, 100, 196, 180))):
        Image.fromarray(sample("chelsea.png", box)).save(tmp_path / name)
        paths[name] = tmp_path / name
    split = tmp_path / "split.tsv"
    pd.DataFrame({"image": ["a.png", "b.png"], "split": ["train", "val"]}).to_csv(
        split, sep="\t", index=False
    )
    table, chosen = baselines.run(
        split, paths, tmp_path / "m.tsv", tmp_path / "p.json", DENOISE, threads=2
    )
    assert len(table) == 2 * (1 + len(baselines.DENOISERS))
    assert dict(zip(table.image, table.split)) == {"a.png": "train", "b.png": "val"}
    assert np.isfinite(table.psnr).all() and set(chosen) == set(baselines.DENOISERS)
