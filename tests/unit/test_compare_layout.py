"""The comparison page as a user sees it at 1400 pixels: the variants table fits the page and no
row is drawn many lines tall, with the long flags and grid names of real runs."""

import re
import shutil
import subprocess

import pytest

from tessera import compare
from tests.unit.test_compare import make_variant

FLAGS = [
    "collapsed: the outputs have 16% of the targets' contrast on the validation patches (the "
    "'flat gray' failure); train longer or lower train.learning_rate",
    "no better than predicting each patch's own mean colour (validation loss 0.06181 vs "
    "0.04512); train longer or pick another preset",
]
GRID_NAME = "train_learning_rate~0.004_reconstruct_mode~blend"


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    root = tmp_path_factory.mktemp("layout")
    seed = {"model": {"preset": "seed"}, "train": {"batch_size": 160, "optimizer": "rmsprop"}}
    variants = [
        make_variant(root, "compact", 0.6),
        make_variant(root, "compact-lr5e-3", 0.9, train={"learning_rate": 0.005}),
        make_variant(root, "seed", 2.5, flags=FLAGS, **seed),
        make_variant(root, GRID_NAME, 1.0, reconstruct={"mode": "blend"}),
    ]
    return compare.build(variants, root / "results" / "compare", crop=48)


def test_the_table_names_each_flag_and_the_warnings_give_it_whole(page):
    html = page.read_text()
    table = html[html.index('<table class="variants">') : html.index("</table>")]
    for flag in FLAGS:
        assert html.count(flag.replace("'", "&#39;")) == 1  # in the warnings, not the table too
    assert '<a href="#warnings">collapsed; no better than predicting each patch' in table
    assert (
        "train.<wbr>learning_rate" in table
        and "train_<wbr>learning_<wbr>rate~<wbr>0.004_<wbr>" in table
    )


# Measured by the browser itself: the page's script writes the table's and the page's right
# edges and the tallest row's height in lines into the DOM that --dump-dom prints.
MEASURE = """<script>
const t = document.querySelector("table.variants"), box = t.parentElement;
const line = parseFloat(getComputedStyle(t).lineHeight) || 16;
const rows = [...t.rows].slice(1).map(r => r.getBoundingClientRect().height / line);
document.title = JSON.stringify({table: box.getBoundingClientRect().right,
  scroll: box.scrollWidth - box.clientWidth, page: document.documentElement.clientWidth,
  lines: Math.max(...rows)});
</script></body>"""


def test_the_table_fits_1400_pixels_in_a_browser(page, tmp_path):
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
    import json

    figures = json.loads(re.search(r"<title>(.*?)</title>", dom).group(1).replace("&quot;", '"'))
    assert figures["table"] <= figures["page"] and figures["scroll"] <= 0, figures
    # the flags cell wraps the two flag heads in a narrow column: at most 6 lines, not 20
    assert figures["lines"] <= 6, figures
