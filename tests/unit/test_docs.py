"""Docs that cannot rot. Every command in a fenced shell block of README.md, CONTRIBUTING.md,
config/README.md and docs/*.md runs as written: each `snakemake` line as a dry run in a fresh copy
of the repository with the sample images (and a model folder where the line names one),
each `python -m tessera` line for real or through its own parser, and every other command by a
check of what it names. Every relative link and anchor resolves; README.md stays under 200 lines;
the settings reference agrees with the schema and config.yaml, the presets table with the registry,
and the troubleshooting page names every setting an error message starts with."""

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml
from PIL import Image

from tests.conftest import REPO, sample, tiny_images

PAGES = [
    REPO / "README.md",
    REPO / "CONTRIBUTING.md",
    REPO / "CHANGELOG.md",
    REPO / "config" / "README.md",
    *sorted((REPO / "docs").glob("*.md")),
]
SHELL_BLOCK = re.compile(r"^```(?:bash|sh|shell|console)\n(.*?)^```", re.M | re.S)
ENV_VAR = re.compile(r"^[A-Z_][A-Z0-9_]*=")


def _commands(page):
    """The commands of a page's shell blocks: one per line (a trailing backslash continues it,
    `&&` separates two), comments left out."""
    for block in SHELL_BLOCK.findall(page.read_text(encoding="utf-8")):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                yield from (part.strip() for part in line.split("&&"))


def _all_commands():
    """{command: the pages it is in}, each command once."""
    found = {}
    for page in PAGES:
        for command in _commands(page):
            found.setdefault(command, []).append(str(page.relative_to(REPO)))
    return found


COMMANDS = _all_commands()


def _words(command):
    """(environment variables, words) of a command line, read as the command it runs: without a
    leading `nice -n N`, any Python (python3, $PYTHON, a venv's bin/python) as `python`, a venv's
    bin/pip as `python -m pip`, and `python -m snakemake` as `snakemake`."""
    words = shlex.split(command, comments=True)
    env = {}
    while words and ENV_VAR.match(words[0]):
        key, _, value = words.pop(0).partition("=")
        env[key] = value
    if words[:2] == ["nice", "-n"]:
        words = words[3:]
    if words[0] in ("python3", "$PYTHON") or words[0].endswith("/bin/python"):
        words = ["python", *words[1:]]
    if words[0].endswith("/bin/pip"):
        words = ["python", "-m", "pip", *words[1:]]
    if words[:3] == ["python", "-m", "snakemake"]:
        words = ["snakemake", *words[3:]]
    if words[0] == "tessera":  # the installed command
        words = ["python", "-m", "tessera", *words[1:]]
    return env, words


def _kind(command):
    _, w = _words(command)
    if w[0] == "snakemake":
        return "snakemake"
    if w[:3] == ["python", "-m", "tessera"]:
        return "tessera"
    if w[:2] == ["python", "-m"]:
        return w[2]  # pip, pytest
    if w[0] == "python" and w[1].endswith(".py"):
        return "script"
    if w[0].startswith("bench/") and w[0].endswith(".sh"):
        return "script"
    return w[0]


def _of(kind):
    return sorted(c for c in COMMANDS if _kind(c) == kind)


# --------------------------------------------------------------------------- the fresh copy


def _tiny_model(folder):
    """A model folder as training writes one (model.keras, summary.json), of a narrow compact
    network, told it denoises (or, under an inpaint run's results, fills holes it is told of), so
    apply gives it each image as it is. Untrained: what these tests check is that the commands
    run, not what the model learnt, and training would make them slow."""
    import keras

    from tessera import models

    keras.utils.set_random_seed(0)
    holes = "inpaint" in folder.parts
    spec = models.normalise({"preset": "compact", "width": 4, "latent": 4, "mask": 128 * holes})
    spec = {k: v for k, v in spec.items() if k != "mask" or holes}
    model = models.build(spec)
    folder.mkdir(parents=True, exist_ok=True)
    model.save(folder / "model.keras")
    task = {"kind": "denoise", "noise": "gaussian", "sigma": 25, "rate": 0.1, "seed": 0}
    if holes:
        task = {"kind": "restore", "seed": 0, "degradations": [{"kind": "holes", "mask": True}]}
    summary = {"model": spec, **models.describe(model), "task": task}
    (folder / "summary.json").write_text(json.dumps(summary, indent=1))


def _copy_repository(to):
    """The files a clone has (tracked, and new files not ignored), without any results."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = REPO / name
        if source.is_file():  # a file deleted but not yet committed is still listed
            (to / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, to / name)


@pytest.fixture(scope="module")
def clone(tmp_path_factory):
    """A fresh copy of the repository with what the docs' commands expect a user to have: clean
    photos in photos/clean, damaged ones in photos/damaged (the first with a mask of its holes in
    photos/masks), and a model wherever a command names a
    model.keras under results/ (as a training run leaves it)."""
    root = tmp_path_factory.mktemp("clone")
    _copy_repository(root)
    tiny_images(root / "photos" / "clean")
    damaged = root / "photos" / "damaged"
    damaged.mkdir(parents=True)
    Image.fromarray(sample("chelsea.png", (100, 40, 196, 136))).save(damaged / "IMG_0001.jpg")
    Image.fromarray(sample("rocket.jpg", (200, 100, 280, 180))).save(damaged / "IMG_0002.png")
    masks = root / "photos" / "masks"  # white where a hole is, for the first only
    masks.mkdir()
    Image.new("L", (96, 96)).save(masks / "IMG_0001.png")
    for path in {p for c in COMMANDS for p in re.findall(r"results/\S*model\.keras", c)}:
        _tiny_model((root / path).parent)
    return root


def _dry_run(root, command):
    """Run a snakemake command line as a dry run in root; returns (the words run, the process)."""
    env, words = _words(command)
    args = words[1:]
    if "--report" in args:  # a report is of a finished run: plan that run
        at = args.index("--report")
        args = args[:at] + args[at + 2 :]
    if "--use-conda" in args and shutil.which("conda") is None:
        args.remove("--use-conda")  # planning without conda, whose environments need conda
    run = [sys.executable, "-m", "snakemake", "-n", *args]
    proc = subprocess.run(
        run, cwd=root, capture_output=True, text=True, timeout=300, env={**os.environ, **env}
    )
    return run, proc


@pytest.fixture(scope="module")
def dry_runs(clone):
    """Every snakemake command of the docs planned in the fresh copy, two at a time, after the
    scripts the docs run first (resources/make_pairs.py makes the folders config/paired.yaml
    names)."""
    for command in _of("script"):
        _, words = _words(command)
        if words[0] == "python" and words[1].startswith("resources/"):
            subprocess.run([sys.executable, *words[1:]], cwd=clone, check=True, timeout=300)
    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(zip(_of("snakemake"), pool.map(lambda c: _dry_run(clone, c), _of("snakemake"))))


# --------------------------------------------------------------------------- the commands


def test_the_docs_have_commands_and_every_one_is_of_a_kind_this_file_checks():
    checked = {"snakemake", "tessera", "pip", "pytest", "script", "conda", "export", "venv"}
    checked |= {"black", "snakefmt", "tensorboard", "grep", "lscpu"}
    assert len(_of("snakemake")) >= 10 and _of("tessera")
    unknown = {c: COMMANDS[c] for c in COMMANDS if _kind(c) not in checked}
    assert not unknown, f"teach tests/unit/test_docs.py to check these commands: {unknown}"


@pytest.mark.slow
@pytest.mark.parametrize("command", [c for c in _of("snakemake") if "--lint" not in c])
def test_each_snakemake_command_plans_in_a_fresh_copy(command, dry_runs):
    run, proc = dry_runs[command]
    where = f"{command} (in {', '.join(COMMANDS[command])}; ran {shlex.join(run[2:])})"
    assert proc.returncode == 0, f"{where}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    assert "This was a dry-run" in proc.stdout or "Nothing to be done" in proc.stdout, where
    _, words = _words(command)
    if "--profile" not in words:  # a local run needs its cores: the default profile sets none
        assert "--cores" in words or "-c" in words, f"{where}: give --cores"
    if words[1:2] == ["apply"]:
        assert "apply_inputs" in proc.stdout, where


def test_the_lint_command_is_run_by_the_style_tests():
    for command in (c for c in _of("snakemake") if "--lint" in c):
        assert shlex.split(command) == ["snakemake", "--lint"], command
        assert '"--lint"' in (REPO / "tests" / "workflow" / "test_style.py").read_text()


def _tessera_args(command):
    return _words(command)[1][3:]


@pytest.mark.parametrize("command", _of("tessera"))
def test_each_tessera_command_parses_and_runs_for_real(command, clone, monkeypatch):
    from tessera import __main__ as cli

    args = _tessera_args(command)
    if "--help" in args:
        with pytest.raises(SystemExit) as done:
            cli.parser().parse_args(args)
        assert done.value.code == 0, command
        return
    parsed = cli.parser().parse_args(args)  # a wrong option stops here, as for a user
    monkeypatch.chdir(clone)
    if parsed.command != "apply":  # export and describe: they run, and export writes its file
        out = Path(getattr(parsed, "out", "") or ".")
        shutil.rmtree(out, ignore_errors=True) if out.is_dir() else out.unlink(missing_ok=True)
        assert cli.main(args) == 0, command
        assert parsed.command == "describe" or out.exists(), command
        return
    shutil.rmtree(parsed.output, ignore_errors=True)  # as if the command were the first
    assert cli.main(args) == 0, command
    written = sorted(p.name for p in Path(parsed.output).iterdir())
    assert "metrics.tsv" in written and any(n.endswith(".png") for n in written), written
    for image in (p for p in Path(parsed.output).iterdir() if p.suffix == ".png"):
        source = Path(parsed.input)
        source = source if source.is_file() else source / image.name.removesuffix(".png")
        assert Image.open(image).size == Image.open(source).size, image


@pytest.mark.parametrize("command", _of("pip") + _of("conda"))
def test_each_install_command_names_files_that_exist(command):
    _, words = _words(command)
    named = [words[i + 1] for i, w in enumerate(words) if w in ("-r", "-f")]
    named += ["pyproject.toml" for w in words[2:] if w == "."]  # the package itself
    pinned = [w for w in words if "==" in w]
    assert named or pinned, command
    for name in named:
        assert (REPO / name).is_file(), f"{command}: no {name}"
    # a package installed by name is at the pin of the requirement files
    pins = {
        line.split(";")[0].strip().lower()
        for f in REPO.glob("requirements*.txt")
        for line in f.read_text().splitlines()
        if "==" in line
    }
    for pin in pinned:
        assert pin.lower() in pins, f"{command}: {pin} is not a pin of requirements*.txt"


@pytest.mark.parametrize("command", _of("venv"))
def test_each_virtual_environment_is_made_by_python(command):
    _, words = _words(command)
    assert words[:3] == ["python", "-m", "venv"] and len(words) == 4, command


@pytest.mark.parametrize("command", _of("script"))
def test_each_script_exists_and_takes_the_options_given(command):
    _, words = _words(command)
    script = REPO / (words[0] if words[0] != "python" else words[1])
    assert script.is_file(), command
    # a shell front hands its options to the Python script of its name
    partner = script.with_name(script.stem.replace("-", "_") + "_check.py")
    source = script.read_text() + (partner.read_text() if partner.is_file() else "")
    for option in (w for w in words[2:] if w.startswith("--")):
        assert f'"{option.split("=")[0]}"' in source, f"{command}: {script.name} has no {option}"


@pytest.mark.parametrize("command", _of("pytest"))
def test_each_pytest_command_names_tests_and_markers_that_exist(command):
    import tomllib

    _, words = _words(command)
    options = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["pytest"]
    markers = [m.split(":")[0] for m in options["ini_options"]["markers"]]
    for i, word in enumerate(words[3:], 3):
        if words[i - 1] == "-m":
            assert set(re.findall(r"\w+", word)) - {"not", "and", "or"} <= set(markers), command
        elif word.startswith("tests/"):
            assert (REPO / word.split("::")[0]).exists(), command


@pytest.mark.parametrize("command", _of("black") + _of("snakefmt") + _of("tensorboard"))
def test_each_tool_is_pinned_where_the_docs_install_it(command):
    tool = _words(command)[1][0]
    pinned = "".join((REPO / f).read_text() for f in ("requirements.txt", "requirements-test.txt"))
    assert re.search(rf"^{tool}==", pinned, re.M), command


# --------------------------------------------------------------------------- links


def _slug(heading):
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"[`*_]", "", heading.strip()).lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(page):
    text = re.sub(r"^\s*```.*?^\s*```", "", page.read_text(encoding="utf-8"), flags=re.M | re.S)
    return {_slug(h) for h in re.findall(r"^#+ (.+)$", text, re.M)}


def _links(page):
    text = page.read_text(encoding="utf-8")
    text = re.sub(r"^\s*```.*?^\s*```", "", text, flags=re.M | re.S)  # code is not a link
    text = re.sub(r"`[^`\n]*`", "", text)
    return re.findall(r"\]\(([^)\s]+)\)", text)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_and_anchor_resolves(page):
    for link in _links(page):
        if re.match(r"^[a-z]+:", link):
            continue  # a web address
        path, _, anchor = link.partition("#")
        target = (page.parent / path).resolve() if path else page
        assert target.exists(), f"{page.name}: {link} does not exist"
        assert REPO in target.parents or target == REPO, f"{page.name}: {link} leaves the repo"
        if anchor:
            assert target.suffix == ".md" and anchor in _anchors(target), f"{page.name}: {link}"


def test_the_readme_is_read_in_five_minutes():
    lines = (REPO / "README.md").read_text().splitlines()
    assert len(lines) <= 200, len(lines)


def test_the_readme_picture_is_a_small_png():
    picture = REPO / "docs" / "report.png"
    assert "](docs/report.png)" in (REPO / "README.md").read_text()
    assert picture.stat().st_size < 300_000
    with Image.open(picture) as im:
        assert im.format == "PNG" and im.width <= 1400


# --------------------------------------------------------------------------- references


def _schema_keys(properties, prefix=""):
    """(dotted key, schema entry) of every setting; a degradation's keys as task.degradations[].x"""
    for key, entry in properties.items():
        name = prefix + key
        if key == "degradations":
            yield name, entry
            yield from _schema_keys(entry["items"]["properties"], f"{name}[].")
        elif "properties" in entry:
            yield from _schema_keys(entry["properties"], f"{name}.")
        else:
            yield name, entry


def _allowed(entry):
    """The values a setting allows, in the words the config's error messages use."""
    from tessera import settings

    types = entry.get("type", [])
    if "array" in ([types] if isinstance(types, str) else types):
        items = entry.get("items")
        if items and "properties" in items:
            return "a list of mappings"
        return "[low, high]: " + settings._allowed(items) if items else "a list"
    return settings._allowed(entry)


def _reference_rows():
    """{key: [cells]} of the settings table of config/README.md, and the keys in table order."""
    rows, order = {}, []
    for line in (REPO / "config" / "README.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        key = re.fullmatch(r"`([^`]+)`", cells[0]) if line.startswith("| `") else None
        if key:
            order.append(key.group(1))
            rows[key.group(1)] = cells
    return rows, order


def _value(cell):
    return yaml.safe_load(re.search(r"`([^`]*)`", cell).group(1))


def test_the_settings_reference_has_every_key_once_with_the_schemas_default_and_range():
    schema = yaml.safe_load((REPO / "config" / "config.schema.yaml").read_text())
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    rows, order = _reference_rows()
    keys = dict(_schema_keys(schema["properties"]))
    assert sorted(order) == sorted(set(order)), "a key appears twice"
    assert set(order) - set(keys) == {"model.<argument>"}, set(order) - set(keys)
    for key, entry in keys.items():
        assert key in rows, f"config/README.md has no row for {key}"
        _, default, allowed, *_ = rows[key]
        if "default" in entry:
            assert _value(default) == entry["default"], f"{key}: default {default}"
        else:
            assert default.startswith("none"), f"{key}: the schema has no default, not {default}"
        assert allowed == _allowed(entry), f"{key}: allowed '{allowed}', the schema {entry}"
        node = config
        for part in key.split("."):
            node = node.get(part, KeyError) if isinstance(node, dict) else KeyError
        if node is not KeyError and node != entry.get("default", KeyError):
            said = re.search(r"config\.yaml: (`[^`]*`)", default)
            assert said and _value(said.group(1)) == node, f"{key}: config.yaml sets {node!r}"


def test_the_presets_table_is_made_from_the_registry():
    sys.path.insert(0, str(REPO / "docs"))
    try:
        import reference
    finally:
        sys.path.remove(str(REPO / "docs"))
    assert not reference.stale(), "the docs are out of date: run python docs/reference.py"


def test_every_preset_has_its_paragraph_and_no_other_is_described():
    from tessera import models

    text = (REPO / "docs" / "networks.md").read_text()
    described = re.findall(r"^#### `(\w+)`$", text, re.M)
    assert sorted(described) == sorted(models.PRESETS)


def test_troubleshooting_names_every_setting_an_error_message_starts_with():
    sources = [*(REPO / "tessera").rglob("*.py"), *(REPO / "rules").glob("*.smk")]
    starts = r'(?:TesseraError|stop)\(\s*f?"([a-z_]+\.[a-z_]+): '
    keys = {k for f in sources for k in re.findall(starts, f.read_text())}
    assert len(keys) >= 10, keys
    page = (REPO / "docs" / "troubleshooting.md").read_text()
    missing = sorted(k for k in keys if f"`{k}`" not in page)
    assert not missing, f"docs/troubleshooting.md does not name {missing}"


def test_the_citation_file_is_valid_and_of_this_version():
    from tessera import __version__

    cff = yaml.safe_load((REPO / "CITATION.cff").read_text())
    assert cff["cff-version"] == "1.2.0" and cff["type"] == "software"
    assert cff["title"] == "Tessera" and cff["authors"] and cff["message"]
    assert cff["version"] == __version__ and cff["license"] == "BSD-3-Clause"


def test_the_changelog_keeps_a_changelog():
    text = (REPO / "CHANGELOG.md").read_text()
    assert text.startswith("# Changelog") and "\n## [Unreleased]\n" in text
    assert "keepachangelog.com" in text
