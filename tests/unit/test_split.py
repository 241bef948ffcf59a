import numpy as np
import pytest

from tessera import TesseraError, split


def infos(names, patches=10):
    return [{"image": n, "path": n, "status": "ok", "patches": patches} for n in names]


def test_adding_an_image_leaves_every_other_image_on_its_side():
    names = [f"photo{i}.jpg" for i in range(40)]
    before = split.assign(infos(names), 0.3, seed=1).set_index("image").split
    after = split.assign(infos(names + ["new.png"]), 0.3, seed=1).set_index("image").split
    assert (after[names] == before[names]).all()
    assert 0.15 < (before == "val").mean() < 0.45


def test_both_sides_always_get_an_image():
    for seed in range(30):
        table = split.assign(infos(["a.png", "b.png", "c.png"]), 0.3, seed)
        assert set(table.split) == {"train", "val"}


def test_skipped_images_are_listed_with_their_reason():
    rows = infos(["a.png", "b.png"]) + [
        {"image": "x.png", "path": "x.png", "status": "skipped", "reason": "empty"}
    ]
    table = split.assign(rows, 0.5, 0).set_index("image")
    assert table.loc["x.png", "split"] == "skipped" and table.loc["x.png", "reason"] == "empty"


def test_one_usable_image_is_a_clear_error():
    with pytest.raises(TesseraError, match="only one usable image"):
        split.assign(infos(["a.png"]), 0.3, 0)


def test_run_keeps_patches_of_one_image_on_one_side(tmp_path):
    import json

    names = [f"img{i}.png" for i in range(6)]
    files, metas = [], []
    for k, n in enumerate(names):
        np.save(tmp_path / f"{n}.npy", np.full((3, 4, 4, 3), k, np.uint8))
        (tmp_path / f"{n}.json").write_text(json.dumps(infos([n], 3)[0]))
        files.append(tmp_path / f"{n}.npy")
        metas.append(tmp_path / f"{n}.json")
    out = [tmp_path / x for x in ("train.npy", "val.npy", "split.tsv")]
    table = split.run(metas, files, *out, val_fraction=0.4, seed=0)
    train, val = np.load(out[0]), np.load(out[1])
    train_ids, val_ids = set(np.unique(train)), set(np.unique(val))
    assert not train_ids & val_ids
    assert {names[i] for i in val_ids} == set(table.image[table.split == "val"])
    assert len(train) + len(val) == 18
