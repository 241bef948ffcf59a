"""Draw configurations from the schema (tests/drawn_configs.py) and tell how each one ended:
planned, stopped with one `tessera: error:` line (counted by the key it names), or anything else
(a traceback, several error lines, a failure without one), which the tests forbid.

    python bench/configs.py [--examples 200] [--seed 0] [--in-process]

By default each configuration is planned by a real `snakemake -n` (2 to 4 s each on 2 cores);
--in-process runs the same checks in this process instead (milliseconds each).
"""

import argparse
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from hypothesis import HealthCheck, given, seed, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from tests.conftest import snakemake_command, tiny_images  # noqa: E402
from tests.drawn_configs import check_in_process, configs, write  # noqa: E402

PREFIX = "tessera: error: "


def key_of(message):
    """The key an error line names: what comes before its first ': ' (or its first words)."""
    head = message.split(": ", 1)[0]
    return head if re.fullmatch(r"[\w.~=+-]+", head) else " ".join(message.split()[:3]) + " ..."


def ending(proc):
    """('planned', None), ('error', key) or ('other', what) for a finished snakemake -n."""
    out = proc.stdout + proc.stderr
    lines = {ln for ln in out.splitlines() if ln.startswith(PREFIX)}
    if proc.returncode == 0 and not lines:
        return "planned", None
    if proc.returncode != 0 and len(lines) == 1 and "Traceback" not in out:
        return "error", key_of(lines.pop()[len(PREFIX) :])
    tail = " | ".join(out.strip().splitlines()[-3:])
    return "other", f"exit {proc.returncode}: {tail[-300:]}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--examples", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--in-process", action="store_true")
    args = ap.parse_args()
    ends = Counter()
    others = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        folder = tiny_images(tmp / "images")
        started = time.perf_counter()

        @seed(args.seed)
        @settings(
            max_examples=args.examples,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(st.data())
        def draw(data):
            config = data.draw(configs(folder))
            if args.in_process:
                message = check_in_process(config)
                end = ("planned", None) if message is None else ("error", key_of(message))
            else:
                n = sum(ends.values())
                work = tmp / f"w{n}"
                work.mkdir()
                write(work / "drawn.yaml", config)
                cmd = snakemake_command(work, "-n", "--configfile", str(work / "drawn.yaml"))
                end = ending(subprocess.run(cmd, capture_output=True, text=True, timeout=300))
            ends[end] += 1
            if end[0] == "other":
                others.append((config, end[1]))

        draw()
        seconds = time.perf_counter() - started
    total = sum(ends.values())
    how = "in process" if args.in_process else "snakemake -n each"
    print(
        f"{total} configurations drawn from the schema (seed {args.seed}, {how}, {seconds:.0f} s)"
    )
    kinds = Counter(kind for kind, _ in ends.elements())
    for kind in ("planned", "error", "other"):
        print(f"{kind:>8}: {kinds[kind]}")
    print("one-line errors by the key they name:")
    for (kind, key), n in sorted(ends.items(), key=lambda item: (-item[1], str(item[0]))):
        if kind == "error":
            print(f"{n:>6}  {key}")
    for config, what in others:
        print(f"other: {what}\n  config: {config}")


if __name__ == "__main__":
    main()
