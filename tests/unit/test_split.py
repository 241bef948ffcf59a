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


def test_patches_of_one_image_stay_on_one_side_and_are_never_copied(tmp_path):
    import json

    from tessera.train import load_data

    names = [f"img{i}.png" for i in range(6)]
    files, metas = {}, []
    for k, n in enumerate(names):
        np.save(tmp_path / f"{n}.npy", np.full((3, 4, 4, 3), k, np.uint8))
        (tmp_path / f"{n}.json").write_text(json.dumps(infos([n], 3)[0]))
        files[n] = tmp_path / f"{n}.npy"
        metas.append(tmp_path / f"{n}.json")
    table = split.run(metas, tmp_path / "split.tsv", val_fraction=0.4, seed=0)
    assert sorted(p.name for p in tmp_path.glob("*.npy")) == sorted(f"{n}.npy" for n in names)
    data = {"size": 4, "stride": 4, "sampling": "grid", "max_val_patches": 100}
    source, val = load_data(tmp_path / "split.tsv", files, data, seed=0)
    train = source.take(np.arange(len(source)))
    train_ids, val_ids = set(np.unique(train)), set(np.unique(val))
    assert not train_ids & val_ids
    assert {names[i] for i in val_ids} == set(table.image[table.split == "val"])
    assert len(train) + len(val) == 18
