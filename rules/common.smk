# Image discovery, variants, output paths, input functions and code versions shared by every stage.
import functools
import itertools
import os
import re

import pandas as pd
from snakemake.utils import Paramspace

from tessera import TesseraError, codeversion, images, models, settings
from tessera.files import check_writable


def stop(error):
    """A mistake the user can fix, found before any job runs: one line, exit status 1."""
    # SystemExit, not WorkflowError: Snakemake would add its header and a traceback of this file.
    raise SystemExit(f"tessera: error: {error}")


def results(path):
    # Every output path is built here, from one root.
    return f"{config['results']}/{path}"


def logs(path):
    return f"{config['logs']}/{path}"


# A folder that cannot be written (a read-only mount, a path under a file) stops the run here in
# one line; Snakemake would fail at the first job with its own message.
for _key in ("results", "logs"):
    if _problem := check_writable(config[_key], _key):
        stop(_problem)


def _mem_mb():
    """Each rule's memory as this run sets it (--set-resources rule:mem_mb=N), for the checks."""
    out = {}
    for name in settings.MEM_MB:
        given = workflow.resource_settings.overwrite_resources.get(name, {}).get("mem_mb")
        value = getattr(given, "value", given)
        if isinstance(value, int):
            out[name] = value
    return out


MEM_MB = _mem_mb()


# Variants: several named settings in one run, each with its own outputs under results/<variant>/,
# sharing the patches, split and baselines of every variant whose settings for them agree. A grid
# over a few keys is expanded into variants too, named by Snakemake's Paramspace.
def _variants():
    grid = config["grid"]
    names = []
    if grid:
        # Paramspace reads rows as named tuples: its columns must be identifiers, not "train.x"
        columns = [key.replace(".", "_") for key in grid]
        labels = settings.grid_labels(grid).values()  # a model file by its stem
        points = pd.DataFrame(list(itertools.product(*labels)), columns=columns)
        names = Paramspace(points, filename_params="*", param_sep="~").instance_patterns
    try:
        overrides = {**settings.grid_overrides(grid, names), **config["variants"]}
        return settings.variant_configs(config, config_schema, overrides, MEM_MB)
    except TesseraError as e:
        stop(e)


VARIANTS = _variants()


def _keys(c):
    """The folder keys of a configuration's shared stages: each names the settings it depends on."""
    pkey = settings.key_of(c["patches"], c["max_megapixels"])
    skey = settings.key_of(pkey, settings_of(c, "split", "max_val_patches"))
    return {"pkey": pkey, "skey": skey, "bkey": settings.key_of(skey, c["task"])}


def settings_of(c, section, *leave_out):
    """A config section for a rule's params, without its thread count: threads reach the job
    through `threads:` (and --set-threads), and changing them must not rerun anything. Keys that
    belong to another stage's work are left out too, so changing them does not rerun this one.
    train.require_gpu, which only stops a job, reaches training as a resource (the SLURM profile
    sets it: moving a run to the cluster must not retrain it)."""
    return {k: v for k, v in c[section].items() if k not in ("threads", "require_gpu", *leave_out)}


KEYS = {name: _keys(c) for name, c in VARIANTS.items()}
# key value -> (its keys, a configuration that has it), for the jobs of the shared stages
BY_KEY = {(k, keys[k]): (keys, VARIANTS[n]) for n, keys in KEYS.items() for k in keys}

if VARIANTS:
    PATCHES, SPLIT, BASELINES = (
        "shared/patches-{pkey}",
        "shared/split-{skey}",
        "shared/baselines-{bkey}",
    )
    RUN = "{variant}/"
else:
    # Without variants, the paths of a single run.
    PATCHES, SPLIT, BASELINES, RUN = "patches", "dataset", "baselines", ""


def _lookup(wildcards):
    """(shared-stage keys, configuration) of a job: its variant's, or those of a variant sharing
    its stage's key; in a single run, no keys and the config itself."""
    if "variant" in wildcards.keys():
        return KEYS[wildcards.variant], VARIANTS[wildcards.variant]
    for k in ("bkey", "skey", "pkey"):
        if k in wildcards.keys():
            return BY_KEY[(k, wildcards[k])]
    return {}, config


def keys_of(wildcards):
    return _lookup(wildcards)[0]


def conf(wildcards):
    """The configuration a job runs with."""
    return _lookup(wildcards)[1]


def fill(path, wildcards):
    """A shared stage's path for the job's variant (its keys filled in; nothing to fill in a
    single run)."""
    for k, v in keys_of(wildcards).items():
        path = path.replace(f"{{{k}}}", v)
    return path


def run_path(name, variant=None):
    """A path under the run's results: results/<variant>/name, or results/name."""
    path = results(f"{RUN}{name}")
    return path.replace("{variant}", variant) if variant else path


def training_data(c):
    """What the training job needs to read the patches: how they were cut, and how many
    validation patches to use."""
    patches = c["patches"]
    return {
        "size": patches["size"],
        "stride": patches["stride"],
        "sampling": patches["sampling"],
        "max_val_patches": c["split"]["max_val_patches"],
    }


def model_spec(c):
    """The model section with the network's defaults filled in (checked before any job runs)."""
    return models.normalise(c["model"])


def shown_config(c):
    """The configuration as the report shows it: every setting that shapes a result, so not the
    thread counts (they change nothing but speed, and must not rerun the report)."""
    leave = ("variants", "grid", "apply")
    shown = {
        k: settings_of(c, k) if isinstance(v, dict) else v for k, v in c.items() if k not in leave
    }
    return {**shown, "model": model_spec(c)}


def code(stage):
    """A hash of the tessera modules the stage's script imports: editing them reruns the stage."""
    return codeversion.code_hash(os.path.join(workflow.basedir, "scripts", f"{stage}.py"))


def _usable(found, key, folder):
    if not found:
        stop(
            f"no image files in '{folder}' (looked for "
            f"{', '.join(sorted(images.IMAGE_EXTENSIONS))}); point '{key}' at a folder of images"
        )
    return found


def _check_targets():
    """targets: and task.kind paired go together, in the run and in every variant."""
    paired = [c["task"]["kind"] == "paired" for c in [config, *VARIANTS.values()]]
    if config["targets"] and not all(paired):
        stop("targets: set, but task.kind is not paired; set task.kind: paired, or remove targets")
    if not config["targets"] and any(paired):
        stop("task.kind: paired needs targets: the folder of the clean partners of the images")


def _discover():
    _check_targets()
    try:
        settings.check(config, MEM_MB)
        # Outputs must not become inputs of the next run (images: ., or results inside them).
        outputs = (config["results"], config["logs"])
        found = images.discover(config["images"], config["recursive"], leave_out=outputs)
        partners, orphans = {}, []
        if config["targets"]:
            folder = config["targets"]
            targets = images.discover(folder, config["recursive"], outputs, key="targets")
            _usable([t for t in targets if t.image_id], "targets", folder)
            found, partners, orphans = images.pair(found, config["images"], targets, folder)
            if not partners and any(f.image_id for f in targets):
                raise TesseraError(
                    f"targets: no image of '{config['images']}' has a target of the same path "
                    f"in '{folder}' (a.jpg pairs with a.jpg, in the same subfolder)"
                )
    except TesseraError as e:
        stop(e)
    usable = _usable({f.image_id: f.path for f in found if f.image_id}, "images", config["images"])
    return usable, [(f.path, f.reason) for f in found if f.reason] + orphans, partners


# PARTNERS: {image id: its clean partner's path inside the targets folder}, with task paired
IMAGES, SKIPPED, PARTNERS = _discover()


def source_of(image, folder=None, known=None, links=".sources"):
    path = os.path.join(folder or config["images"], (known or IMAGES)[image])
    if "{" in path:
        # Snakemake reads "{word}" in an input path as a wildcard, even in a path an input function
        # returns, and has no escape for it: such a file is reached through a link with a safe name.
        return _link(path, results(f"{links}/{image}"))
    return path


def _link(target, link):
    target = os.path.abspath(target)
    if not os.path.islink(link) or os.readlink(link) != target:
        os.makedirs(os.path.dirname(link), exist_ok=True)
        tmp = f"{link}.{os.getpid()}.tmp"
        os.symlink(target, tmp)
        os.replace(tmp, link)  # atomic, should another Snakemake parse this at the same time
    return link


def source(wildcards):
    return source_of(wildcards.image)


def target_of(image):
    """The clean partner of an image (task paired), or nothing."""
    if image not in PARTNERS:
        return []
    return source_of(image, config["targets"], PARTNERS, ".targets")


def target(wildcards):
    return target_of(wildcards.image)


def split_table(keys):
    """The split checkpoint's table for a variant's keys (known once the split has run)."""
    return checkpoints.split.get(**({"skey": keys["skey"]} if VARIANTS else {})).output.tsv


@functools.lru_cache
def _sides(path, mtime_ns):
    """{image: side} of the usable images of a split table, read once per version of the file:
    several input functions of a job, and several jobs, ask for it."""
    from tessera.split import read_table

    table = read_table(path)
    usable = table[(table.split != "skipped") & table.image.isin(IMAGES)]
    return dict(zip(usable.image, usable.split))


def sides_of(keys):
    path = split_table(keys)
    return _sides(path, os.stat(path).st_mtime_ns)


def usable_of(keys):
    """Images that decoded, read from the split table once the split checkpoint has run."""
    return list(sides_of(keys))


def usable_images(wildcards):
    return usable_of(keys_of(wildcards))


def shown_image(wildcards):
    """The image the report shows rebuilt the naive way too: the first validation image."""
    sides = sides_of(keys_of(wildcards))
    val = sorted(i for i, side in sides.items() if side == "val")
    return val[0] if val else sorted(sides)[0]


def rebuilt(wildcards, ext, images=None):
    """The reconstruction stage's files of the job's variant, for every usable image or those given."""
    chosen = usable_images(wildcards) if images is None else images
    return [run_path(f"reconstructed/{i}.{ext}", wildcards.get("variant")) for i in chosen]


def cost_files(wildcards):
    """(stage, benchmark file) of every job the report stands on (its own is written after it)."""
    bench = lambda path: fill(logs(f"benchmarks/{path}"), wildcards)
    run = lambda path: bench(f"{RUN}{path}").replace("{variant}", wildcards.get("variant", ""))
    images = usable_images(wildcards)
    return (
        [("patches", bench(f"{PATCHES}/{i}.tsv")) for i in IMAGES]
        + [("split", bench(f"{SPLIT}/split.tsv")), ("train", run("train.tsv"))]
        + [("reconstruct", run(f"reconstruct/{i}.tsv")) for i in images]
        + [("seams", run(f"reconstruct/{shown_image(wildcards)}.naive.tsv"))]
        + [("baselines", bench(f"{BASELINES}/baselines.tsv"))]
    )


# The apply target: a trained model (a variant's, this run's, or a model.keras from elsewhere)
# run over every image of another folder.
def _apply_setup():
    a = config["apply"]
    if not a.get("images"):
        return None
    from tessera import apply as applying  # only when applying: every snakemake call parses this

    model, given = a.get("model"), None
    if model is None and VARIANTS:
        stop(f"apply.model: name one of the variants ({', '.join(VARIANTS)}) or a model.keras")
    if model is None or model in VARIANTS:
        paths = [run_path(f"model/{f}", model) for f in ("model.keras", "summary.json")]
        c, out = VARIANTS.get(model, config), run_path("applied", model)
    else:
        named = os.path.basename(model) == model and not model.endswith(".keras")
        if named and not os.path.exists(model):
            variants = f"its variants are {', '.join(VARIANTS)}" if VARIANTS else "it has none"
            stop(
                f"apply.model: '{model}' is neither a variant of this run ({variants}) nor a "
                "model.keras file; leave apply.model out for the model of a run without variants"
            )
        try:
            summary, given = applying.read_summary(model)
            # its network's code, if a file, runs only if named (apply.model_file, model.file)
            named = a.get("model_file") or config["model"].get("file")
            models.refuse_unnamed_file(model, given, named)
        except TesseraError as e:
            stop(f"apply.model: {e}")
        paths, c, out = [model, str(summary)], config, results("applied")
    out = a.get("output", out)
    try:
        outputs = (config["results"], config["logs"])
        folder, found, skipped = applying.inputs(a["images"], out, config["recursive"], outputs)
    except TesseraError as e:
        stop(f"apply.images: {e}")
    _usable(found, "apply.images", a["images"])
    masks = {}
    if a.get("masks"):
        try:
            applying.check_masks({"task": c["task"]} if given is None else given, a["masks"])
        except TesseraError as e:
            stop(f"apply.masks: {e}")
        by_path = images.find_masks(a["masks"], list(found.values()), config["recursive"])
        masks = {i: by_path[p] for i, p in found.items() if p in by_path}
    return {
        "masks": masks,
        "model": paths,
        "settings": c,
        "out": out,
        "folder": str(folder),
        "images": found,
        "skipped": skipped,
    }


APPLY = _apply_setup()
APPLIED = APPLY["out"] if APPLY else results("applied")


def apply_source_of(image):
    return source_of(image, APPLY["folder"], APPLY["images"], ".apply-sources")


def apply_source(wildcards):
    return apply_source_of(wildcards.image)


def apply_usable(wildcards):
    """Images of the apply folder that decode, once the apply_inputs checkpoint has run."""
    from tessera.split import read_table

    if not APPLY:
        stop("apply: set apply.images (a folder or one image) and apply.model to use it")
    table = read_table(checkpoints.apply_inputs.get().output.tsv)
    return list(table.image[table.status == "ok"])


# An image id keeps its file's extension, so that "x.png.naive" is never taken for one.
IMAGE_ID = r".+\.(?i:{})".format("|".join(e.lstrip(".") for e in sorted(images.IMAGE_EXTENSIONS)))


wildcard_constraints:
    image=IMAGE_ID,
    pkey="[0-9a-f]{8}",
    skey="[0-9a-f]{8}",
    bkey="[0-9a-f]{8}",
    variant="|".join(map(re.escape, VARIANTS)) or "(?!)",
