"""task.kind paired: matching damaged images with their clean targets, and cutting both at the
same positions."""

import json

import numpy as np
import pytest
from PIL import Image

from tessera import baselines, images, patches
from tests.conftest import sample


def _write(folder, rel, array):
    path = folder / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def _pairs(tmp_path, damaged, clean):
    found = images.discover(tmp_path / "damaged")
    targets = images.discover(tmp_path / "clean")
    return images.pair(found, str(tmp_path / "damaged"), targets, str(tmp_path / "clean"))


def test_images_pair_with_the_target_of_the_same_path(tmp_path):
    photo = sample("coffee.png", (0, 0, 40, 30))
    for side in ("damaged", "clean"):
        _write(tmp_path / side, "2024/a.png", photo)
        _write(tmp_path / side, "b.png", photo)
    found, partners, orphans = _pairs(tmp_path, "damaged", "clean")
    assert partners == {"2024/a.png": "2024/a.png", "b.png": "b.png"}
    assert [f.image_id for f in found] == ["2024/a.png", "b.png"] and orphans == []


def test_a_missing_an_extra_and_another_extension_are_each_one_line_naming_both(tmp_path):
    photo = sample("coffee.png", (0, 0, 40, 30))
    _write(tmp_path / "damaged", "kept.png", photo)
    _write(tmp_path / "clean", "kept.png", photo)
    _write(tmp_path / "damaged", "lonely.png", photo)  # no target at all
    _write(tmp_path / "clean", "extra.png", photo)  # no damaged image
    _write(tmp_path / "damaged", "sub/c.jpg", photo)  # its target has another extension
    _write(tmp_path / "clean", "sub/c.png", photo)
    found, partners, orphans = _pairs(tmp_path, "damaged", "clean")
    assert partners == {"kept.png": "kept.png"}
    skipped = {f.path: f.reason for f in found if f.reason}
    clean = tmp_path / "clean"
    assert (
        skipped["lonely.png"] == f"no target '{clean / 'lonely.png'}' for it in the targets folder"
    )
    assert str(clean / "sub/c.jpg") in skipped["sub/c.jpg"]
    assert "'sub/c.png' has another extension" in skipped["sub/c.jpg"]
    assert dict(orphans) == {
        str(clean / "extra.png"): "a target without a damaged image: "
        f"no '{tmp_path / 'damaged' / 'extra.png'}'",
        str(clean / "sub/c.png"): "a target without a damaged image: "
        f"no '{tmp_path / 'damaged' / 'sub/c.png'}'",
    }
    assert all("\n" not in r for r in [*skipped.values(), *dict(orphans).values()])


def test_an_unusable_target_skips_its_image_with_the_reason(tmp_path):
    photo = sample("coffee.png", (0, 0, 40, 30))
    _write(tmp_path / "damaged", "a.png", photo)
    (tmp_path / "clean").mkdir()
    (tmp_path / "clean" / "a.png").symlink_to(tmp_path / "nowhere.png")  # a broken link
    _write(tmp_path / "clean", "b.png", photo)
    found, partners, orphans = _pairs(tmp_path, "damaged", "clean")
    assert partners == {}
    [a] = [f for f in found if f.path == "a.png"]
    assert a.image_id is None and "cannot be used: not a regular file" in a.reason
    assert str(tmp_path / "clean" / "a.png") in a.reason


def test_a_missing_targets_folder_names_the_targets_key(tmp_path):
    with pytest.raises(images.TesseraError, match="targets folder '.*' does not exist.*targets="):
        images.discover(tmp_path / "nowhere", key="targets")


def _cut(tmp_path, damaged, clean, **kw):
    d = _write(tmp_path, "damaged.png", damaged)
    c = _write(tmp_path, "clean.png", clean)
    out = tmp_path / "p.npy"
    settings = {"size": 16, "stride": 8, "max_patches": None, "seed": 0, **kw}
    info = patches.run(d, "x.png", out, tmp_path / "p.json", target_path=c, **settings)
    return info, np.load(out)


@pytest.mark.parametrize("max_patches", [None, 7])
def test_patches_of_both_sides_are_cut_at_the_same_positions(tmp_path, max_patches):
    clean = sample("chelsea.png", (100, 50, 163, 98))
    # every damaged pixel is a known function of the clean one at the same place: any offset,
    # flip or reorder between the two sides breaks the relation somewhere
    damaged = 255 - clean
    info, cut = _cut(tmp_path, damaged, clean, max_patches=max_patches)
    assert info["status"] == "ok" and cut.shape[1:] == (16, 16, 6)
    assert len(cut) == (max_patches or info["patches"])
    # clean first, then damaged: the order tessera.tasks gives a 6-channel patch
    np.testing.assert_array_equal(cut[..., 3:], 255 - cut[..., :3])
    # and the clean side is exactly what the patch stage cuts from the clean image alone
    alone = patches.extract(clean, 16, 8, max_patches, 0)
    np.testing.assert_array_equal(cut[..., :3], alone)


def test_random_sampling_keeps_the_pair_as_one_six_channel_image(tmp_path):
    clean = sample("chelsea.png", (100, 50, 163, 98))
    info, cut = _cut(tmp_path, 255 - clean, clean, sampling="random")
    assert cut.shape == (48, 63, 6)
    np.testing.assert_array_equal(cut[..., :3], clean)
    np.testing.assert_array_equal(cut[..., 3:], 255 - clean)


def test_a_partner_of_another_size_or_undecodable_is_skipped_naming_both(tmp_path):
    clean = sample("chelsea.png", (0, 0, 40, 30))
    info, cut = _cut(tmp_path, clean[:, :36], clean)
    assert info["status"] == "skipped" and len(cut) == 0 and cut.shape[1:] == (16, 16, 6)
    assert info["reason"] == (
        f"its target '{tmp_path / 'clean.png'}' is 40x30 pixels, the image 36x30: a pair must "
        "have one size"
    )
    assert info["target"] == str(tmp_path / "clean.png")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    d = _write(tmp_path, "damaged.png", clean)
    info = patches.run(
        d,
        "x.png",
        tmp_path / "q.npy",
        tmp_path / "q.json",
        16,
        8,
        None,
        0,
        target_path=tmp_path / "broken.png",
    )
    assert info["status"] == "skipped"
    assert info["reason"].startswith(f"its target '{tmp_path / 'broken.png'}' cannot be used: ")
    assert json.loads((tmp_path / "q.json").read_text())["reason"] == info["reason"]


def test_flips_and_turns_move_the_damaged_and_the_clean_side_together():
    import keras

    from tessera.batches import Trainer, validation_pair
    from tessera.images import dihedral

    clean = sample("chelsea.png", (100, 50, 116, 66))
    pair = np.concatenate([clean, 255 - clean], axis=2)[None].repeat(8, axis=0)
    identity = keras.Sequential([keras.Input((None, None, 3)), keras.layers.Identity()])
    trainer = Trainer(identity, 16, {"kind": "paired"}, seed=0)
    out = np.asarray(trainer((pair, np.arange(8, dtype=np.int32), np.zeros(8, np.int32))))
    given, target = out[..., :3], out[..., 3:]  # the model's answer (here its input), the target
    # the model saw the damaged side; each of the 8 turns keeps it on the clean one's pixels
    # (x / 255 + (255 - x) / 255 is 1 up to float32 rounding, about 1e-7)
    np.testing.assert_allclose(given + target, 1.0, atol=1e-6)
    assert len({np.asarray(t).tobytes() for t in target}) == 8  # the turns did differ
    for k in range(8):  # the target is the clean side, turned by its patch's code
        np.testing.assert_allclose(target[k] * 255, dihedral(clean, k), atol=1e-3)
    val_in, val_target = validation_pair(pair, {"kind": "paired"})
    np.testing.assert_array_equal(val_in, 255 - clean[None].repeat(8, axis=0))
    np.testing.assert_array_equal(val_target, clean[None].repeat(8, axis=0))


def test_the_damaged_input_is_the_baseline_of_a_pair():
    clean = sample("coffee.png", (0, 0, 64, 48))
    damaged = np.clip(clean.astype(int) + 20, 0, 255).astype(np.uint8)
    [row] = baselines.evaluate("a.png", clean, {"kind": "paired"}, {}, damaged=damaged)
    assert row["method"] == "damaged input"
    mse = np.mean((clean.astype(float) - damaged) ** 2)
    assert row["psnr"] == pytest.approx(10 * np.log10(255**2 / mse), abs=1e-9)
