"""Code versions: which tessera modules each workflow script depends on, and the hash of them."""

import shutil
import textwrap

import pytest

from tessera import codeversion
from tests.conftest import REPO

STAGES = ("patches", "split", "train", "reconstruct", "report")


def write(folder, files):
    for name, text in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


@pytest.fixture
def package(tmp_path, monkeypatch):
    """A small stand-in for the tessera package, with every import form the library may use."""
    root = tmp_path / "tessera"
    write(
        root,
        {
            "__init__.py": "class TesseraError(Exception):\n    pass\n",
            "top.py": "from tessera import TesseraError, middle\n",
            "middle.py": "from . import bottom\nfrom .leaf import VALUE\n",
            "bottom.py": "import numpy as np\n\n\ndef f():\n    import tessera.lazy as lazy\n",
            "leaf.py": "VALUE = 1\n",
            "lazy.py": "import tessera.top  # a cycle back to the start\n",
            "alone.py": "import os\n",
            "templates/alone.html.j2": "<p>{{ x }}</p>\n",
        },
    )
    monkeypatch.setattr(codeversion, "_ROOT", root)
    write(
        tmp_path / "scripts",
        {
            "deep.py": "from tessera import top\nfrom tessera.jobs_missing import job\n",
            "flat.py": "from tessera.alone import run\nimport tessera\n",
        },
    )
    return root, tmp_path / "scripts"


def test_imports_are_followed_through_the_library(package):
    _, scripts = package
    # top -> middle -> bottom (relative), leaf (from .leaf import), lazy (inside a function) -> top
    assert codeversion.modules_used(scripts / "deep.py") == [
        "__init__",
        "bottom",
        "lazy",
        "leaf",
        "middle",
        "top",
    ]
    assert codeversion.modules_used(scripts / "flat.py") == ["__init__", "alone"]


def test_editing_a_module_changes_the_hash_of_exactly_the_scripts_that_use_it(package):
    root, scripts = package
    before = {s: codeversion.code_hash(scripts / f"{s}.py") for s in ("deep", "flat")}

    (root / "leaf.py").write_text("VALUE = 2\n")
    assert codeversion.code_hash(scripts / "deep.py") != before["deep"]
    assert codeversion.code_hash(scripts / "flat.py") == before["flat"]

    (root / "templates" / "alone.html.j2").write_text("<p>{{ y }}</p>\n")
    assert codeversion.code_hash(scripts / "flat.py") != before["flat"]


def test_comments_and_layout_do_not_count_but_code_and_docstrings_do(package):
    root, scripts = package
    source = '"""Doc."""\n\n\ndef f(a, b):\n    return a + b\n'
    (root / "alone.py").write_text(source)
    reference = codeversion.code_hash(scripts / "flat.py")

    def hash_with(text):
        (root / "alone.py").write_text(text)
        return codeversion.code_hash(scripts / "flat.py")

    assert hash_with(source.replace("a + b", "a + b  # why")) == reference
    assert hash_with(source.replace("def f(a, b)", "def f(\n    a, b\n)")) == reference
    assert hash_with("# header\n\n" + source.replace("a + b", "a+b")) == reference
    assert hash_with(source.replace("a + b", "a - b")) != reference
    assert hash_with(source.replace("Doc.", "Documented.")) != reference


@pytest.fixture
def library_copy(tmp_path, monkeypatch):
    """The real library and scripts, copied so that their modules can be edited."""
    shutil.copytree(
        REPO / "tessera", tmp_path / "tessera", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copytree(REPO / "scripts", tmp_path / "scripts")
    monkeypatch.setattr(codeversion, "_ROOT", tmp_path / "tessera")
    return tmp_path


def hashes(copy):
    return {s: codeversion.code_hash(copy / "scripts" / f"{s}.py") for s in STAGES}


def test_the_real_scripts_depend_on_the_modules_they_run(library_copy):
    used = {s: codeversion.modules_used(library_copy / "scripts" / f"{s}.py") for s in STAGES}
    for stage in STAGES:
        assert {stage, "jobs", "__init__"} <= set(used[stage])
    assert "models" in used["train"]  # through tessera/train.py, not the script itself
    assert "images" in used["patches"] and "images" in used["report"]
    assert "models" not in used["report"] and "train" not in used["report"]


@pytest.mark.parametrize(
    "module, changed",
    [("report.py", {"report"}), ("templates/report.html.j2", {"report"}), ("train.py", {"train"})],
)
def test_editing_one_real_module_changes_only_its_stages(library_copy, module, changed):
    before = hashes(library_copy)
    path = library_copy / "tessera" / module
    edit = "\nEDITED = True\n" if module.endswith(".py") else "\n<!-- edited -->\n"
    path.write_text(path.read_text() + edit)
    after = hashes(library_copy)
    assert {s for s in STAGES if after[s] != before[s]} == changed


def test_every_real_module_edit_reaches_exactly_its_importers(library_copy):
    before = hashes(library_copy)
    used = {s: codeversion.modules_used(library_copy / "scripts" / f"{s}.py") for s in STAGES}
    root = library_copy / "tessera"
    # every module, those inside the packages (tessera/models/, tessera/tasks/) included
    modules = sorted(
        ".".join(p.relative_to(root).with_suffix("").parts).removesuffix(".__init__")
        for p in root.rglob("*.py")
    )
    assert {"models", "models.presets", "tasks.restore", "report"} <= set(modules)
    for name in modules:
        path = codeversion._module_file(name)
        original = path.read_text()
        path.write_text(original + "\nEDITED = True\n")
        after = hashes(library_copy)
        path.write_text(original)
        assert {s for s in STAGES if after[s] != before[s]} == {
            s for s in STAGES if name in used[s]
        }, name


def test_a_module_created_later_is_followed_from_then_on(package):
    root, scripts = package
    (scripts / "later.py").write_text("from tessera import later\n")
    assert codeversion.modules_used(scripts / "later.py") == ["__init__"]
    (root / "later.py").write_text("from tessera import leaf\n")
    assert codeversion.modules_used(scripts / "later.py") == ["__init__", "later", "leaf"]
