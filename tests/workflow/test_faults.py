"""Faults, tried for real (bench/faults.py does the work and prints the figures):

- the training job SIGKILLed at eleven moments of its life, during its writes among them, and
  run again after each: the history has every epoch once and in order, the summary agrees, no
  output is ever half-written, and damaged backups make it start over with one line;
- the workflow on a small disk that fills: every job that fails says so in one line naming the
  path, nothing is half-written under its final name, and once there is room the same command
  completes; a read-only results folder stops the run in one line.
"""

import json
import subprocess
import sys

import pandas as pd
import pytest

from tests.conftest import REPO

sys.path.insert(0, str(REPO / "bench"))
import faults  # noqa: E402


def test_training_killed_at_any_moment_resumes_with_every_epoch_once(tmp_path):
    # In a fresh interpreter: the runs are forked from the process that calls kills(), and a
    # process whose TensorFlow has already run (as this one has, after other tests) holds locks
    # of its threads that a forked child can wait on for ever.
    out = tmp_path / "rows.json"
    code = (
        "import json, sys; from pathlib import Path; sys.path.insert(0, 'bench'); import faults; "
        f"rows = faults.kills(Path({str(tmp_path)!r}), epochs=5); "  # asserts after each chain
        f"Path({str(out)!r}).write_text(json.dumps(rows, default=str))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=1200
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = json.loads(out.read_text())
    faults.print_kills(rows)
    table = pd.DataFrame(rows)
    killed = table[table.killed]
    # The moments of the writes and damage chains are events: each is reached, so each kills. The
    # time chain's are seconds into a run, spread over the uninterrupted run's life: its first,
    # before the first backup, is reached; the later may fall after a run's end when the machine
    # is less loaded than while that run was timed (two test workers share it).
    events = table[(table.chain != "time") & table.rc.isna()]
    assert len(events) == 8 and events.killed.all(), table
    assert table[table.chain == "time"].killed.any(), table
    assert killed.outputs.str.contains("model.keras").any() or killed.inside.any(), table
    assert table.began.str.startswith("resumed").sum() >= 3, table
    assert (table.began == "started over (damaged backup)").sum() == 1, table


def test_a_full_disk_fails_in_one_line_and_the_same_command_then_completes(tmp_path):
    if why := faults.can_mount(tmp_path / "probe"):
        pytest.skip(why)
    rows = faults.disk(tmp_path)
    table = pd.DataFrame(rows)
    print(table.to_string(index=False))
    failed = table[table.failed != "-"]
    # the disk did fill, in the writes of more than one stage
    assert len(set(" ".join(failed.failed).split())) >= 2, table
    assert failed.message.str.contains("no space left on device writing").all(), table
