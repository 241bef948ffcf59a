"""The comparison page as a user sees it at 1400 pixels, for the variants of config/networks.yaml
(five networks, one a model file with its hash) with the long flags and grid names of real runs:
the scores come first, each network is one cell, and nothing scrolls sideways."""

import json
import re
import shutil
import subprocess

import pytest

from tessera import compare, models
from tests.conftest import REPO
from tests.unit.test_compare import make_variant

FLAGS = [
    "collapsed: the outputs have 16% of the targets' contrast on the validation patches (the "
    "'flat gray' failure); train longer or lower train.learning_rate",
    "no better than predicting each patch's own mean colour (validation loss 0.06181 vs "
    "0.04512); train longer or pick another preset",
]
GRID_NAME = "train_learning_rate~0.004_reconstruct_tile~64"
# config/networks.yaml's variants, normalised as the workflow hands them to the page
NETWORKS = {
    "compact-w16": {"preset": "compact", "width": 16},
    "compact-w48": {"preset": "compact", "width": 48},
    "unet": {"preset": "unet", "width": 16, "levels": 2},
    "resnet": {"preset": "resnet", "width": 24, "depth": 2},
    "tiny-unet": {"file": str(REPO / "examples" / "tiny_unet.py"), "args": {"width": 16}},
}


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    root = tmp_path_factory.mktemp("layout")
    variants = [
        make_variant(root, name, 0.5 + k / 2, model=models.normalise(spec))
        for k, (name, spec) in enumerate(NETWORKS.items())
    ]
    variants.append(
        make_variant(
            root,
            GRID_NAME,
            2.5,
            flags=FLAGS,
            model={"preset": "seed"},
            train={"learning_rate": 0.004},
            reconstruct={"tile": 64},
        )
    )
    return compare.build(variants, root / "results" / "compare", crop=48)


def _variants_table(html):
    return html[html.index('<table class="variants">') : html.index("</table>")]


def test_scores_come_first_and_each_network_is_one_cell(page):
    table = _variants_table(page.read_text())
    heads = re.findall(r"<th[^>]*>(.*?)</th>", table)
    assert heads[:9] == [
        "variant", "val PSNR", "val SSIM", "margin (dB), against", "parameters", "epochs",
        "training (s)", "patches/s", "network",
    ]  # fmt: skip
    assert heads[9] == "other settings that differ"
    assert not [h for h in heads if h.startswith("model.")]  # no column per network argument
    assert "(not set)" not in table and "hash" not in table
    cells = re.findall(r'<td class="network">(.*?)</td>', table)
    assert [c.replace("<wbr>", "") for c in cells][:3] == [
        "compact: width 16, latent 12, kernel 3",
        "compact: width 48, latent 12, kernel 3",
        "unet: width 16, levels 2, output direct",
    ]
    assert cells[4].replace("<wbr>", "").endswith("examples/tiny_unet.py: build(width=16)")
    assert "train.<wbr>learning_rate: 0.004" in table  # the other settings, one per line


def test_the_table_names_each_flag_and_the_warnings_give_it_whole(page):
    html = page.read_text()
    table = _variants_table(html)
    for flag in FLAGS:
        assert html.count(flag.replace("'", "&#39;")) == 1  # in the warnings, not the table too
    assert '<a href="#warnings">collapsed; no better than predicting each patch' in table
    assert "train_<wbr>learning_<wbr>rate~<wbr>0.004_<wbr>" in table


# Measured by the browser itself: the page's script opens the settings, then writes how far the
# page and the variants table scroll sideways, where the table's last column ends and the tallest
# row's height in lines into the title, which --dump-dom prints.
MEASURE = """<script>
document.querySelector("details").open = true;
const t = document.querySelector("table.variants"), page = document.documentElement;
const line = parseFloat(getComputedStyle(t).lineHeight) || 16;
const rows = [...t.rows].slice(1).map(r => r.getBoundingClientRect().height / line);
document.title = JSON.stringify({page_scroll: page.scrollWidth - page.clientWidth,
  table_right: t.getBoundingClientRect().right, page: page.clientWidth,
  lines: Math.max(...rows)});
</script></body>"""


def test_nothing_scrolls_sideways_at_1400_pixels_in_a_browser(page, tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("needs chromium (apt-get install chromium) to lay the page out")
    measured = tmp_path / "index.html"
    measured.write_text(page.read_text().replace("</body>", MEASURE))
    for f in page.parent.iterdir():
        if f.name != "index.html":
            (tmp_path / f.name).symlink_to(f)
    dom = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--window-size=1400,2600",
         "--dump-dom", measured.as_uri()],
        capture_output=True, text=True, timeout=120,
    ).stdout  # fmt: skip
    figures = json.loads(re.search(r"<title>(.*?)</title>", dom).group(1).replace("&quot;", '"'))
    # the whole page, the full settings with a model file's hash open, stays within the window
    assert figures["page_scroll"] <= 0 and figures["table_right"] <= figures["page"], figures
    # the flags cell wraps the two flag heads in a narrow column: at most 6 lines, not 20
    assert figures["lines"] <= 6, figures
