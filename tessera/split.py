"""Stage 2: put each image's patches on the training or the validation side, by image."""

import hashlib
import json
from pathlib import Path

import pandas as pd

from tessera import TesseraError
from tessera.files import write_tsv


def side_score(image_id, seed):
    """A number in [0, 1) fixed by the seed and the image's own id, nothing else.

    So adding or removing an image never moves any other image to the other side.
    """
    digest = hashlib.sha256(f"{seed}:{image_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assign(infos, val_fraction, seed):
    """A table with one row per image: its side ("train", "val" or "skipped") and why.

    An image is on the validation side when its score is below val_fraction. When that leaves one
    side without patches, the image nearest the threshold is moved over, so both sides always have
    patches to learn from and to validate on.
    """
    rows = []
    for info in infos:
        score = side_score(info["image"], seed)
        ok = info["status"] == "ok"
        rows.append(
            {
                "image": info["image"],
                "path": info["path"],
                "split": ("val" if score < val_fraction else "train") if ok else "skipped",
                "patches": info.get("patches", 0),
                "score": round(score, 6),
                "reason": "" if ok else info.get("reason", ""),
            }
        )
    table = pd.DataFrame(rows, columns=["image", "path", "split", "patches", "score", "reason"])
    usable = table[(table.split != "skipped") & (table.patches > 0)]
    if len(usable) == 0:
        raise TesseraError(
            "no usable image: every image was skipped or is smaller than one patch (see the "
            "warnings above); add at least two readable images larger than patches.size"
        )
    if len(usable) == 1:
        raise TesseraError(
            f"only one usable image ({usable.image.iloc[0]}): training needs at least two, "
            "one of them for validation"
        )
    for side, other, pick in (("val", "train", "idxmin"), ("train", "val", "idxmax")):
        if not (usable.split == side).any():
            moved = getattr(usable.score, pick)()
            table.loc[moved, "split"] = side
            usable = table[(table.split != "skipped") & (table.patches > 0)]
    return table


def read_table(path):
    """The split table as written by run(): empty reasons stay empty strings."""
    return pd.read_csv(path, sep="\t", keep_default_na=False)


def run(infos_json, out_tsv, val_fraction, seed):
    """Write the split table. Patches stay in their per-image files, where training reads them:
    nothing here grows with the folder but the table."""
    infos = [json.loads(Path(p).read_text()) for p in infos_json]
    table = assign(infos, val_fraction, seed)
    write_tsv(table, out_tsv)
    return table
