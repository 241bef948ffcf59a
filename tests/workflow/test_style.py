"""The workflow's own checks: Snakemake's linter and snakefmt report nothing."""

import subprocess
import sys

from tests.conftest import REPO


def test_snakemake_lint_is_clean():
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "--lint"], cwd=REPO, capture_output=True, text=True
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "Congratulations, your workflow is in a good condition!" in out, out


def test_snakefmt_check_passes():
    proc = subprocess.run(["snakefmt", "--check", "."], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_conda_env_pins_match_requirements():
    # The jobs' environment has what the scripts import; Snakemake itself runs outside it.
    import yaml

    env = yaml.safe_load((REPO / "envs" / "tessera.yaml").read_text())
    pinned = {line for d in env["dependencies"] if isinstance(d, dict) for line in d["pip"]}
    reqs = {
        line.strip()
        for line in (REPO / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.startswith(("#", "snakemake", "jsonschema"))
    }
    assert reqs == pinned
