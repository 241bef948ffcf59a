"""One offline page that sets several variants of a run side by side: the settings that differ,
their validation scores and margin over classical methods, their loss curves, and the same crop of
one validation image as each variant rebuilt it."""

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd

from tessera import TesseraError, reconstruct, report, tasks
from tessera.files import write_text, write_tsv
from tessera.images import load_image

# The noisy or damaged input is where a model starts, not a method it has to beat.
NOT_A_METHOD = tuple(f"{t.input_word} input" for t in tasks.REGISTRY.values() if t.input_caption)
SCORES = ["val_psnr", "val_ssim", "margin_db", "params", "epochs", "patches_per_s", "train_wall_s"]
_MISSING = object()


def flatten(settings, prefix=""):
    """Nested settings as dotted keys: {"train": {"epochs": 3}} gives {"train.epochs": 3}."""
    flat = {}
    for key, value in settings.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def differing_keys(flats):
    """The dotted keys whose value is not the same in every flattened settings dict (a key one
    variant lacks differs), in the order they first appear."""
    keys = dict.fromkeys(k for flat in flats for k in flat)
    first = flats[0] if flats else {}
    return [k for k in keys if any(f.get(k, _MISSING) != first.get(k, _MISSING) for f in flats[1:])]


def best_variant(scores):
    """The name with the highest score ({name: score}), the first one on a tie; None when no
    variant has a score (no validation image anywhere)."""
    known = {name: s for name, s in scores.items() if pd.notna(s)}
    return max(known, key=known.get) if known else None


def _starts(length, side, step):
    # The last start is added so that a detailed right or bottom edge can be reached too.
    return sorted(set(range(0, length - side + 1, step)) | {length - side})


def crop_box(image, side):
    """(top, left, side) of the square window with the most detail, looked for on a grid of
    half-window steps; the side is clamped to the image.

    Detail is the mean absolute difference between neighbouring gray pixels: unlike the variance,
    it is low on a plain edge between two flat areas, where there is nothing to see rebuilt.
    """
    h, w = image.shape[:2]
    side = min(side, h, w)
    gray = image.astype(np.float32).mean(axis=2)
    detail = np.zeros_like(gray)
    detail[:, 1:] += np.abs(np.diff(gray, axis=1))
    detail[1:, :] += np.abs(np.diff(gray, axis=0))
    step = max(1, side // 2)
    best, box = -1.0, (0, 0, side)
    for top in _starts(h, side, step):
        for left in _starts(w, side, step):
            total = float(detail[top : top + side, left : left + side].sum())
            if total > best:
                best, box = total, (top, left, side)
    return box


def shown_image(tables):
    """The image to crop, from each variant's metrics table: the first id on the validation side
    in every variant, else the first id common to all. Returns (id or None, on validation)."""
    val = set.intersection(*(set(t.image[t.split == "val"]) for t in tables))
    if val:
        return min(val), True
    common = set.intersection(*(set(t.image) for t in tables))
    return (min(common) if common else None), False


def scores(table, baselines):
    """Mean validation PSNR and SSIM of one variant, and its margin in dB over the classical
    method with the best mean validation PSNR on the same images (named in "rival")."""
    _, mean = report.comparison(table, baselines)
    val = mean[mean.split == "val"].set_index("method")
    ours = val.loc[report.AUTOENCODER] if report.AUTOENCODER in val.index else None
    rivals = val.psnr.drop([report.AUTOENCODER, *NOT_A_METHOD], errors="ignore").dropna()
    out = {
        "val_psnr": float(ours.psnr) if ours is not None else float("nan"),
        "val_ssim": float(ours.ssim) if ours is not None else float("nan"),
        "rival": rivals.idxmax() if len(rivals) else None,
        "rival_psnr": float(rivals.max()) if len(rivals) else float("nan"),
    }
    out["margin_db"] = out["val_psnr"] - out["rival_psnr"]
    return out


def compare_table(names, flats, keys, scored, summaries, best):
    """compare.tsv: one row per variant, its differing settings, scores, training figures, flags."""
    rows = []
    for name, flat, score, summary in zip(names, flats, scored, summaries):
        rows.append(
            {
                "variant": name,
                **{k: flat.get(k) for k in keys},
                "val_psnr": score["val_psnr"],
                "val_ssim": score["val_ssim"],
                "margin_db": score["margin_db"],
                "params": summary.get("params"),
                "epochs": summary.get("epochs"),
                "patches_per_s": summary.get("patches_per_s"),
                "train_wall_s": summary.get("wall_s"),
                "flags": "; ".join(summary.get("flags", [])),
                "best": name == best,
            }
        )
    return pd.DataFrame(rows, columns=["variant", *keys, *SCORES, "flags", "best"])


def plot_losses(histories, out_png):
    """Every variant's validation loss per epoch on one log-scale plot ({name: history table})."""
    curves = {}
    for name, table in histories.items():
        col, label = ("val_loss", name) if "val_loss" in table else ("loss", f"{name} (training)")
        curves[label] = (table["epoch"], table[col])
    report.plot_curves(curves, "validation loss", out_png)


def _slug(name):
    # Variant names become file names: anything unsafe in a path or a URL becomes "_".
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip(".") or "variant"


def _rebuilt(path, shape):
    from PIL import Image

    array = np.asarray(Image.open(path).convert("RGB"))
    if array.shape != shape:
        raise TesseraError(f"{path}: rebuilt image is {array.shape}, the original {shape}")
    return array


def crops(variants, image_id, side, crops_dir, out_dir):
    """The same window of the original, of the noisy input (when the first variant denoises) and
    of each variant's rebuilt image, saved as PNG. Returns (box, pictures), each picture a dict
    with its caption, relative "src" and PSNR on the crop (None for the original)."""
    task = variants[0]["settings"].get("task") or {}
    kind = tasks.get(task)
    image, _ = load_image(variants[0]["sources"][image_id])
    clean = kind.truth(image, task)
    top, left, side = crop_box(clean, side)

    def cut(array):
        return array[top : top + side, left : left + side]

    def picture(caption, array, slug):
        path = report._save(cut(array), crops_dir / f"{slug}.png")
        psnr = None if array is clean else reconstruct.metrics(cut(clean), cut(array))["psnr"]
        return {"caption": caption, "src": report._href(path, out_dir), "psnr": psnr}

    pictures = [picture("original", clean, "original")]
    given = reconstruct.model_input(image, image_id, task)
    if given is not image:
        # the input as an output would be: an upscale task's bicubic enlargement of it
        shown = kind.input_caption if kind.as_output(given, task) is given else kind.input_word
        given = kind.as_output(given, task)
        same = all((v["settings"].get("task") or {}) == task for v in variants)
        caption = shown if same else f"{shown} (damage of {variants[0]['name']})"
        pictures.append(picture(caption, given, shown.split()[0]))
    for i, v in enumerate(variants, 1):
        rebuilt = _rebuilt(v["rebuilt"][image_id], clean.shape)
        pictures.append(picture(v["name"], rebuilt, f"{i:02d}.{_slug(v['name'])}"))
    return (top, left, side), pictures


def crop_section(variants, tables, crop, out_dir):
    """The image shown in crops and its pictures: (facts for the page, pictures), no pictures when
    no image was rebuilt by every variant."""
    usable = [
        t[t.image.isin(v["rebuilt"]) & t.image.isin(v["sources"])] for t, v in zip(tables, variants)
    ]
    image_id, on_val = shown_image(usable)
    if image_id is None:
        return {"image": None, "path": None, "on_val": False, "box": None}, []
    box, pictures = crops(variants, image_id, crop, out_dir / "crops", out_dir)
    paths = dict(zip(tables[0].image, tables[0].get("path", tables[0].image)))
    return {"image": image_id, "path": paths[image_id], "on_val": on_val, "box": box}, pictures


def _shown(flat, key):
    # As the config file writes them, so that "null" and a missing key read differently.
    value = flat.get(key, _MISSING)
    if value is _MISSING:
        return "(not set)"
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    return str(value)


def _warnings(table, summary):
    # The report's own warnings: flags from training, flat outputs, the time budget.
    if "contrast_ratio" not in table:
        table = table.assign(contrast_ratio=float("nan"))
    return report.warnings_for(table, summary)


def _check(variants):
    names = [v["name"] for v in variants]
    if not names:
        raise TesseraError("compare: no variant to compare")
    if len(set(names)) < len(names):
        raise TesseraError(f"compare: variant names must differ, got {', '.join(names)}")


def breakable(text, after="._~"):
    """Text a browser may wrap after each of the characters given (the dots of a setting key, the
    '_' and '~' of a grid variant's name), so that a long one does not stretch its table column:
    HTML-escaped, with <wbr> after each."""
    from markupsafe import Markup, escape

    return Markup(re.sub(f"([{re.escape(after)}])", r"\1<wbr>", str(escape(text))))


def flag_heads(flags):
    """Each training flag's head (before its ':' or its figures in brackets): the table names
    them and the warnings above the table give them whole."""
    return [re.split(r": | \(", f, maxsplit=1)[0] for f in flags]


def template():
    # The report's environment, so the page is autoescaped the same way.
    return report.template().environment.get_template("compare.html.j2")


def build(variants, out_dir, crop=128):
    """Write compare.tsv, loss.png, crops/ and index.html into out_dir; returns index.html's path.

    variants: one dict per variant, in config order, with "name", "settings" (nested dict of
    sections), the paths "summary", "history", "metrics", "baselines", "report", and the dicts
    "sources" and "rebuilt" ({image id: path}).
    """
    _check(variants)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = [v["name"] for v in variants]
    flats = [flatten(v["settings"]) for v in variants]
    keys = differing_keys(flats)
    summaries = [json.loads(Path(v["summary"]).read_text()) for v in variants]
    tables = [pd.read_csv(v["metrics"], sep="\t") for v in variants]
    scored = [scores(t, pd.read_csv(v["baselines"], sep="\t")) for t, v in zip(tables, variants)]
    best = best_variant({n: s["val_psnr"] for n, s in zip(names, scored)})
    table = compare_table(names, flats, keys, scored, summaries, best)
    write_tsv(table, out / "compare.tsv")
    plot_losses(
        {n: report.loss_table(v["history"]) for n, v in zip(names, variants)}, out / "loss.png"
    )

    shown, pictures = crop_section(variants, tables, crop, out)
    page = template().render(
        names=names,
        keys=keys,
        breakable=breakable,
        rows=[
            {**row, "shown": {k: _shown(f, k) for k in keys}, **s, "heads": flag_heads(m["flags"])}
            for row, f, s, m in zip(table.to_dict("records"), flats, scored, summaries)
        ],
        best=best,
        reports=[
            {"name": n, "href": report._href(v["report"], out), "summary": s}
            for n, v, s in zip(names, variants, summaries)
        ],
        warnings=[(n, w) for n, t, s in zip(names, tables, summaries) for w in _warnings(t, s)],
        shown=shown,
        pictures=pictures,
        settings=[
            {"key": k, "differs": k in keys, "values": [_shown(f, k) for f in flats]}
            for k in dict.fromkeys(k for flat in flats for k in flat)
        ],
    )
    write_text(out / "index.html", page)
    return out / "index.html"
