"""How far each preset reaches, before anything is built: its output border (valid convolutions
trim one from each side) and its receptive radius, as functions of its arguments. The settings'
checks use them to refuse, before any job runs, patches that leave a network no output and tiles
too small for their margins; tests/unit/test_geometry.py compares each to the built network, over
its arguments. (Declared here beside the registry; registry.preset takes them too, where a new
preset is defined.)"""

from tessera.models.registry import declare_reach


def _same(arguments):
    return 0


# the blog post's network: its layers never change
declare_reach("seed", _same, lambda a: 9)
# 3 convolutions of `kernel` on the way down (strides 1, 2, 2), 2 transposed on the way up and 1
# more: (kernel - 1) / 2 each, at scales 1, 1, 2, 2, 1, 1 on either side; an even kernel's same
# padding puts its extra tap on one side
declare_reach("compact", _same, lambda a: 4 * (a["kernel"] - 1) + (1 - a["kernel"] % 2))
declare_reach("dncnn", lambda a: a["depth"] if a["padding"] == "valid" else 0, lambda a: a["depth"])
# two 3x3 convolutions per level at each resolution, down and up: doubling with each level
declare_reach("unet", _same, lambda a: 14 * 2 ** (a["levels"] - 1) - 5)
declare_reach("resnet", _same, lambda a: 10 * 2 ** (a["depth"] - 1) - 4)
# 3x3 convolutions at half resolution, between the 2x2 unshuffle and shuffle
declare_reach("ffdnet", _same, lambda a: 2 * a["depth"] + 1)
