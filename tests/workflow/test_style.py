"""The workflow's own checks: linter, snakefmt and black clean, settings reach scripts by params."""

import ast
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


def test_black_check_passes():
    # the Python code's style, as CONTRIBUTING.md asks (snakefmt uses black for the rule files)
    proc = subprocess.run(
        [sys.executable, "-m", "black", "--check", "."], cwd=REPO, capture_output=True, text=True
    )
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


def reads_of_config(source):
    """Lines where Python source reads `snakemake.config` (attribute, getattr or vars())."""
    lines = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and node.attr == "config" and _is_snakemake(node.value):
            lines.add(node.lineno)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.args:
            first, rest = node.args[0], node.args[1:]
            named = bool(rest) and isinstance(rest[0], ast.Constant) and rest[0].value == "config"
            if _is_snakemake(first) and (
                node.func.id == "vars" or node.func.id == "getattr" and named
            ):
                lines.add(node.lineno)
    return sorted(lines)


def _is_snakemake(node):
    return isinstance(node, ast.Name) and node.id == "snakemake"


def test_the_config_check_finds_every_way_of_reading_it():
    source = (
        "a = snakemake.config['train']\n"
        "b = getattr(snakemake, 'config')\n"
        "c = vars(snakemake)\n"
        "d = snakemake.params.settings\n"
        "e = other.config\n"
    )
    assert reads_of_config(source) == [1, 2, 3]


def test_no_script_reads_the_config():
    # Settings must reach scripts through params:, which Snakemake tracks; a setting read from
    # snakemake.config changes nothing Snakemake sees, so the job would not rerun.
    scripts = sorted((REPO / "scripts").glob("*.py"))
    assert len(scripts) >= 5
    found = {s.name: reads_of_config(s.read_text()) for s in scripts}
    assert not {name: lines for name, lines in found.items() if lines}, found
