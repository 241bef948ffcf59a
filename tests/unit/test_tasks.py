"""The task registry and restore's degradations: each a function of (image, range, generator),
fixed draws for validation and rebuilding, and the classical baselines that apply."""

import numpy as np
import pandas as pd
import pytest
import yaml

from tessera import TesseraError, baselines, models, tasks
from tessera.tasks.reconstruct import jpeg
from tessera.tasks.restore import DEGRADATIONS, HOLE_FILL, degrade
from tests.conftest import REPO, sample
from tests.reference import whole_image

RANGES = {
    "jpeg": {"quality": [10, 30]},
    "blur": {"sigma": [0.5, 2]},
    "downscale": {"factor": [2, 4]},
    "noise": {"sigma": [5, 50]},
    "holes": {"size": [3, 8], "count": [1, 3]},
}


def restore(*kinds, seed=0):
    return {
        "kind": "restore",
        "seed": seed,
        "degradations": [{"kind": k, **RANGES[k]} for k in kinds],
    }


def test_the_schema_offers_exactly_the_registered_tasks_and_degradations():
    schema = yaml.safe_load((REPO / "config" / "config.schema.yaml").read_text())
    task = schema["properties"]["task"]["properties"]
    assert set(task["kind"]["enum"]) == set(tasks.REGISTRY)
    assert set(task["degradations"]["items"]["properties"]["kind"]["enum"]) == set(DEGRADATIONS)
    assert set(RANGES) == set(DEGRADATIONS)


def test_an_unknown_task_is_one_line_naming_the_key():
    with pytest.raises(TesseraError, match="task.kind: unknown task 'nope'; choose one of"):
        tasks.get({"kind": "nope"})
    assert tasks.get(None) is tasks.REGISTRY["reconstruct"]


@pytest.mark.parametrize("kind", sorted(DEGRADATIONS))
def test_each_degradation_draws_from_its_generator_only(kind):
    image = sample("coffee.png", (100, 100, 164, 164))
    d = {"kind": kind, **RANGES[kind]}
    np.random.seed(1)
    state = np.random.get_state()[1].copy()
    a, _ = DEGRADATIONS[kind](image, d, np.random.default_rng(5), False)
    b, _ = DEGRADATIONS[kind](image, d, np.random.default_rng(5), False)
    assert np.array_equal(np.random.get_state()[1], state)  # the global state is never touched
    assert np.array_equal(a, b) and a.dtype == np.uint8 and a.shape == image.shape
    assert not np.array_equal(a, image)
    # another generator draws another value from the range, and so other damage
    draws = [DEGRADATIONS[kind](image, d, np.random.default_rng(s), False)[0] for s in range(6)]
    assert len({x.tobytes() for x in draws}) > 1


def test_the_fixed_draw_takes_the_middle_of_each_range_and_the_seed_and_name():
    image = sample("astronaut.png", (0, 0, 96, 96))
    spec = restore("jpeg")
    given, extra = tasks.get(spec).fixed(image, spec, "a.png")
    assert np.array_equal(given, jpeg(image, 20)[0])  # qualities 10 to 30: validated at 20
    assert extra["holes"] is None
    spec = restore("holes")
    one = tasks.get(spec).fixed(image, spec, "a.png")[0]
    assert np.array_equal(one, tasks.get(spec).fixed(image, spec, "a.png")[0])
    assert not np.array_equal(one, tasks.get(spec).fixed(image, spec, "b.png")[0])
    assert not np.array_equal(
        one, tasks.get(spec).fixed(image, restore("holes", seed=1), "a.png")[0]
    )


def test_holes_are_mid_gray_where_the_mask_says_and_nowhere_else():
    image = sample("chelsea.png", (0, 0, 128, 96))
    spec = restore("holes")
    given, extra = tasks.get(spec).fixed(image, spec, "c.png")
    mask = extra["holes"]
    assert mask.shape == image.shape[:2] and 0.01 < mask.mean() < 0.5
    assert (given[mask] == HOLE_FILL).all()
    assert np.array_equal(given[~mask], image[~mask])


def test_a_chain_applies_in_order_and_keeps_the_holes_mask():
    image = sample("rocket.jpg", (200, 200, 264, 264))
    chain = restore("holes", "jpeg")["degradations"]
    given, extra = degrade(image, chain, np.random.default_rng(0), fixed=True)
    alone, _ = degrade(image, chain[:1], np.random.default_rng(0), fixed=True)
    assert np.array_equal(given, jpeg(alone, 20)[0]) and extra["holes"].any()


def test_downscaling_loses_the_fine_detail_and_keeps_the_size():
    image = sample("chelsea.png", (100, 50, 196, 146))
    d = {"kind": "downscale", "factor": [4, 4]}
    small, _ = DEGRADATIONS["downscale"](image, d, np.random.default_rng(0), True)
    assert small.shape == image.shape
    assert baselines.metrics(image, small)["psnr"] < 30


def test_restore_baselines_are_those_of_its_degradations_and_beat_the_damaged_input():
    clean = sample("coffee.png", (150, 100, 278, 228))
    spec = restore("holes")
    chosen = baselines.tune([("t.png", sample("chelsea.png"))], spec)
    assert set(chosen) == {"biharmonic inpainting"}
    rows = pd.DataFrame(baselines.evaluate("c.png", clean, spec, chosen)).set_index("method")
    assert list(rows.index) == ["damaged input", "biharmonic inpainting"]
    # inside the holes the input is mid-gray; biharmonic inpainting fills them from their edges
    assert rows.psnr_holes["biharmonic inpainting"] > rows.psnr_holes["damaged input"] + 5
    spec = restore("jpeg", "noise")
    assert set(tasks.get(spec).baselines(spec)) == {
        "gaussian blur", "total variation", "non-local means"
    }  # fmt: skip


def test_every_stage_that_asks_the_task_hashes_every_task_module():
    from tessera import codeversion

    for script in ("train", "reconstruct", "baselines", "report", "compare", "apply"):
        used = codeversion.modules_used(REPO / "scripts" / f"{script}.py")
        assert {"tasks", *(f"tasks.{k}" for k in tasks.REGISTRY)} <= set(used), script


def test_the_network_is_told_where_the_holes_are_by_their_colour_alone():
    from tessera import models

    spec = restore("holes")
    assert tasks.get(spec).model_options(spec) == {"mask": HOLE_FILL}
    unmasked = {**spec, "degradations": [{**spec["degradations"][0], "mask": False}]}
    assert tasks.get(unmasked).model_options(unmasked) == {}
    assert tasks.get(restore("jpeg")).model_options(restore("jpeg")) == {}

    image = sample("chelsea.png", (0, 0, 128, 96))
    given, extra = tasks.get(spec).fixed(image, spec, "c.png")
    net = models.build({"preset": "dncnn", **tasks.get(spec).model_options(spec)})
    x = given[None].astype(np.float32) / 255
    marked = np.asarray(net.get_layer("hole_mask")(x))[0, ..., 0]
    # every hole, and any pixel of the image that is exactly the holes' gray, and nothing else
    assert np.array_equal(marked == 1, (given == HOLE_FILL).all(axis=-1))
    assert marked[extra["holes"]].all() and set(np.unique(marked)) == {0.0, 1.0}
    # outside the holes the answer is the image's own pixels, inside them the network's
    keep = np.asarray(net.get_layer("keep_known")([x, np.zeros_like(x)]))
    np.testing.assert_array_equal(keep[0][marked == 0], x[0][marked == 0])
    assert (keep[0][marked == 1] == 0).all()
    with pytest.raises(TesseraError, match="preset: seed .* takes no mask of holes"):
        models.normalise({"preset": "seed", "mask": HOLE_FILL})
    with pytest.raises(TesseraError, match="model.file: .* a mask of holes goes to the"):
        models.normalise({"file": str(REPO / "examples" / "tiny_unet.py"), "mask": HOLE_FILL})


def test_a_network_told_the_holes_tiles_exactly_and_starts_from_a_smooth_fill():
    from tessera import models
    from tessera import reconstruct as rec
    from tessera.tasks.restore import inpaint_biharmonic

    spec = restore("holes")
    image = sample("astronaut.png", (0, 16, 512, 496))  # 512 x 480
    given, extra = tasks.get(spec).fixed(image, spec, "a.png")
    net = models.build({"preset": "dncnn", **tasks.get(spec).model_options(spec)})
    holes = extra["holes"]
    # untrained it gives the near-biharmonic fill: better than gray by far and within 1 dB of
    # biharmonic inpainting solved exactly
    start = rec.to_uint8(np.array(net(given[None].astype(np.float32) / 255))[0])
    biharmonic = np.clip(np.rint(inpaint_biharmonic(given, None, extra)), 0, 255)
    assert tasks.psnr_inside(image, start, holes) > tasks.psnr_inside(image, given, holes) + 10
    assert tasks.psnr_inside(image, start, holes) > tasks.psnr_inside(image, biharmonic, holes) - 1
    # the fills' reach is counted in the radius, so tiles rebuild the whole image's answer, with a
    # trained-looking (non-zero) last layer too
    noise = net.get_layer("noise")
    noise.set_weights([w + 0.01 for w in noise.get_weights()])
    summary = models.describe(net)
    assert summary["receptive_radius"] == 8 + models.fill_reach(models.BIHARMONIC_STEPS)
    plan = rec.plan_for(given, summary, 416, None, "crop")  # a margin of 144: stride 128
    tiled, whole = rec.reconstruct(net, given, plan, batch_size=4), whole_image(net, given, plan)
    assert plan.count > 6
    # float32 sums in another order on a tile than on the whole image; see test_geometry
    assert np.abs(tiled - whole).max() <= models.PROBE_RTOL * np.abs(whole).max()
    assert np.array_equal(rec.to_uint8(whole)[~holes], given[~holes])  # only holes are changed


def test_a_fill_saved_before_the_biharmonic_steps_loads_as_the_harmonic_fill_it_was():
    import keras

    _, fill_holes, _ = models.mask_layers()
    image = sample("astronaut.png", (100, 40, 260, 180))
    given, extra = tasks.get(restore("holes")).fixed(image, restore("holes"), "a.png")
    x = given[None].astype(np.float32) / 255
    old = {"name": "fill_holes", "fill": HOLE_FILL, "dtype": "float32", "trainable": True}
    loaded = keras.layers.deserialize({"class_name": "tessera>FillHoles", "config": old})
    assert loaded.steps == 0
    harmonic, smooth = fill_holes(HOLE_FILL, 0)(x), fill_holes(HOLE_FILL, 8)(x)
    np.testing.assert_array_equal(np.asarray(loaded(x)), np.asarray(harmonic))
    # the counterpart: the biharmonic steps do change the fill, inside the holes only
    changed = np.abs(np.asarray(smooth) - np.asarray(harmonic))[0].max(axis=-1) > 1e-3
    assert changed.any() and not changed[~extra["holes"]].any()


def test_a_degradations_switches_are_left_out_of_its_words():
    spec = {"degradations": [{"kind": "holes", "size": [2, 6], "count": [1, 2], "mask": True}]}
    assert tasks.get({"kind": "restore"}).describe(spec) == "holes size 2-6, count 1-2"


HOLES = {"kind": "holes", "size": [2, 6], "count": [1, 2]}
NOISE = {"kind": "noise", "sigma": [5, 20]}


def network_for(chain):
    from tessera import train

    task = {"kind": "restore", "degradations": chain, "seed": 0}
    spec = train.model_spec({"model": {"preset": "dncnn", "depth": 3, "width": 8}}, task)
    return {layer.name for layer in models.build(spec).layers}


def test_holes_after_other_damage_are_told_to_a_network_that_mends_every_pixel():
    # told the holes, a network keeps the image's own pixels outside them only when there is
    # nothing else to mend: with noise too, the noise outside the holes is its to remove
    assert {"hole_mask", "fill_holes", "keep_known"} <= network_for([HOLES])
    mends_all = network_for([NOISE, HOLES])
    assert {"hole_mask", "fill_holes"} <= mends_all and "keep_known" not in mends_all


def test_holes_before_other_damage_are_refused_before_any_job():
    config = {
        "model": {"preset": "dncnn"},
        "task": {"kind": "restore", "degradations": [HOLES, NOISE]},
        "patches": {"size": 32},
    }
    kind = tasks.get(config["task"])
    with pytest.raises(TesseraError, match=r"task.degradations\[0\]: holes .* must come after"):
        kind.check(config["task"], 32, 1)
    # as mask: false, the network finds them itself, wherever they are in the chain
    kind.check({**config["task"], "degradations": [{**HOLES, "mask": False}, NOISE]}, 32, 1)
