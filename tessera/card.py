"""The model card: MODEL.md beside every trained model, from its summary.json and the figures the
reconstruction and baselines stages wrote: what it does, how it was trained, how it scores
against the classical methods, and how to load it (plain Keras, tessera.api, onnxruntime)."""

import hashlib
import json
import math
import zipfile
from fractions import Fraction
from pathlib import Path

import pandas as pd

from tessera import tasks
from tessera.export import INPUT_NAME, passes
from tessera.files import write_text
from tessera.reconstruct import default_margin
from tessera.split import read_table

OURS = "this network"


def layers_in_archive(model_path):
    """Class names of Tessera's own layers (registered under "tessera") that a .keras archive's
    config names, read without Keras."""
    with zipfile.ZipFile(model_path) as archive:
        config = json.loads(archive.read("config.json"))
    found = []

    def walk(node):
        if isinstance(node, dict):
            name = node.get("registered_name")
            if isinstance(name, str) and name.startswith("tessera>"):
                found.append(name.split(">", 1)[1])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(config)
    return list(dict.fromkeys(found))


def dataset(split_tsv):
    """How many images trained and validated the model, and a hash of the list of the training
    images (their paths, sorted): two models with the same hash learnt from the same files."""
    split = read_table(split_tsv)
    train = sorted(split.path[split.split == "train"].astype(str))
    digest = hashlib.sha256("\n".join(train).encode()).hexdigest()
    return {
        "train_images": len(train),
        "val_images": int((split.split == "val").sum()),
        "train_list_sha256": digest[:16],
    }


def figures(split_tsv, record_files, baselines_tsv):
    """Mean PSNR and SSIM of the model and of each classical method on the validation images (the
    training images where none was held out): (side, rows)."""
    split = read_table(split_tsv)[["image", "split"]]
    records = pd.DataFrame([json.loads(Path(f).read_text()) for f in record_files])
    ours = split.merge(records, on="image").assign(method=OURS, parameter=None)
    theirs = pd.read_csv(baselines_tsv, sep="\t").drop(columns="split", errors="ignore")
    theirs = split.merge(theirs, on="image")
    side = "val" if (ours.split == "val").any() else "train"
    columns = ["psnr", "ssim"] + (["psnr_holes"] if "psnr_holes" in theirs else [])
    both = pd.concat([ours, theirs], ignore_index=True)
    both = both[both.split == side]
    rows = []
    for method, group in both.groupby("method", sort=False):
        values = {c: pd.to_numeric(group.get(c), errors="coerce").mean() for c in columns}
        parameter = group.parameter.dropna()
        rows.append(
            {
                "method": method,
                "parameter": parameter.iloc[0] if len(parameter) else None,
                "images": int(group.image.nunique()),
                **{c: None if math.isnan(v) else round(float(v), 4) for c, v in values.items()},
            }
        )
    return side, rows


def render(summary, folder, layers=(), tiling=None, data=None, trained_on=None, scores=None):
    """MODEL.md's text. folder: the model folder as the card's snippets should name it; layers:
    Tessera's layers in the network; tiling: the reconstruct settings; data: the patch settings;
    trained_on: dataset(); scores: figures(). Parts left None are left out."""
    from jinja2 import ChainableUndefined, Environment, PackageLoader

    task = summary["task"]
    kind = tasks.get(task)
    scale = Fraction(str(summary.get("output_scale", 1)))
    border = summary.get("output_border", 0)
    margin = (tiling or {}).get("margin")
    if margin is None:
        margin = default_margin(
            summary["receptive_radius"], summary["size_multiple"], border, scale
        )
    spec = summary.get("model") or {"preset": summary.get("preset")}
    side, rows = scores or (None, [])
    # A summary written before a key existed leaves that line blank, not the card unwritten.
    env = Environment(
        loader=PackageLoader("tessera"),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=ChainableUndefined,
    )
    env.filters["n"] = lambda v: f"{v:,}" if isinstance(v, int) else v
    return env.get_template("model.md.j2").render(
        s=summary,
        task=task,
        task_text=kind.describe(task),
        input_word=kind.input_word,
        network=summary.get("network") or spec.get("preset") or spec.get("file"),
        user_file=spec.get("file"),
        layers=list(layers),
        scale=scale,
        scale_code=str(scale) if scale.denominator == 1 else f'Fraction("{scale}")',
        border=border,
        margin=margin,
        tiling=tiling,
        passes=passes(summary, {**(tiling or {}), "margin": margin}),
        data=data,
        trained_on=trained_on,
        side={"val": "validation", "train": "training"}.get(side),
        rows=rows,
        holes=any(r.get("psnr_holes") is not None for r in rows),
        folder=str(folder),
        input_name=INPUT_NAME,
    )


def write(
    out_md, summary_path, model_path, split_tsv, record_files, baselines_tsv, tiling, data, folder
):
    """Write the card of a model the workflow trained (rule card)."""
    summary = json.loads(Path(summary_path).read_text())
    text = render(
        summary,
        folder,
        layers_in_archive(model_path),
        tiling,
        data,
        dataset(split_tsv),
        figures(split_tsv, record_files, baselines_tsv),
    )
    write_text(out_md, text)
    return text
