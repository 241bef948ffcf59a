"""Peak memory of one reconstruction job on a large photo, for several tile batch sizes.

Runs the same reconstruct.run() call the workflow's script makes, in a fresh process under
/usr/bin/time -v, on a 4000x3000 image (an upscaled sample photo) with an untrained model.

    python bench/memory.py [--size 4000x3000] [--batches 8 32] [--preset compact] [--tile 128]
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = """
import sys
sys.path.insert(0, {root!r})
from tessera import reconstruct
reconstruct.run({model!r}, {summary!r}, {image!r}, "big.png", {out!r} + "/out.png",
                {out!r} + "/out.json", tile={tile}, margin=None, mode="crop", batch_size={batch})
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="4000x3000")
    ap.add_argument("--batches", type=int, nargs="+", default=[8, 32])
    ap.add_argument("--preset", default="compact")
    ap.add_argument("--tile", type=int, default=128)
    args = ap.parse_args()
    if not Path("/usr/bin/time").exists():
        sys.exit("needs /usr/bin/time (Debian package 'time')")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.path.insert(0, str(ROOT))
    from PIL import Image

    from tessera import models

    w, h = map(int, args.size.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        image = Path(tmp) / "big.png"
        photo = Image.open(ROOT / "resources" / "sample_images" / "coffee.png").convert("RGB")
        photo.resize((w, h), Image.BICUBIC).save(image)
        model = models.build(args.preset)
        model.save(Path(tmp) / "model.keras")
        (Path(tmp) / "summary.json").write_text(json.dumps(models.describe(model)))
        print(f"{args.preset}, image {w}x{h} ({w * h / 1e6:.1f} MP), tile {args.tile}")
        print(f"{'batch_size':>10} {'peak RSS':>10} {'wall':>8}")
        for batch in args.batches:
            code = CHILD.format(
                root=str(ROOT), model=str(Path(tmp) / "model.keras"),
                summary=str(Path(tmp) / "summary.json"), image=str(image), out=tmp,
                tile=args.tile, batch=batch,
            )  # fmt: skip
            proc = subprocess.run(
                ["/usr/bin/time", "-v", sys.executable, "-c", code], capture_output=True, text=True
            )
            if proc.returncode:
                sys.exit(proc.stderr[-3000:])
            rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)[1])
            wall = re.search(r"Elapsed \(wall clock\) time.*: ([\d:.]+)", proc.stderr)[1]
            print(f"{batch:>10} {rss / 1024**2:>8.2f} GB {wall:>8}")


if __name__ == "__main__":
    main()
