import pandas as pd

from tessera import report


def _tables():
    table = pd.DataFrame(
        {
            "image": ["a.png", "b.png", "c.png"],
            "split": ["train", "val", "val"],
            "psnr": [30.0, 31.0, 27.0],
            "ssim": [0.9, 0.9, 0.8],
            "contrast_ratio": [1.0, 1.0, 1.0],
        }
    )
    base = pd.DataFrame(
        {
            "image": ["a.png", "b.png", "c.png"] * 2,
            "split": ["train", "val", "val"] * 2,
            "method": ["non-local means"] * 3 + ["median filter"] * 3,
            "psnr": [29.0, 30.0, 28.0, 20.0, 20.0, 20.0],
            "ssim": [0.8] * 6,
        }
    )
    return table, base


def test_verdicts_say_where_the_autoencoder_wins_and_loses():
    rows, mean = report.comparison(*_tables())
    said = report.verdicts(rows, {})
    nlm = next(s for s in said if "non-local means" in s)
    med = next(s for s in said if "median filter" in s)
    # validation: (31 - 30 + 27 - 28) / 2 = 0 dB against non-local means, one win of two
    assert "validation" in nlm and "better on 1 of 2 images" in nlm
    assert "beats median filter by 9.00 dB" in med and "better on 2 of 2" in med
    val = mean[(mean.split == "val") & (mean.method == report.AUTOENCODER)]
    assert val.psnr.item() == 29.0


def test_flags_from_training_and_flat_outputs_become_warnings():
    table, _ = _tables()
    flat = table.assign(contrast_ratio=0.05)
    summary = {"flags": ["collapsed: ..."], "stopped_by_budget": True, "epochs": 3}
    warned = report.warnings_for(flat, summary)
    assert warned[0] == "collapsed: ..."
    assert any("flat gray" in w and "the validation images" in w for w in warned)
    assert any("time budget" in w for w in warned)
    assert report.warnings_for(table, {}) == []


def test_file_names_are_escaped_in_the_page():
    name = '<img src=x onerror="alert(1)">&.png'
    source = report.template().environment.from_string("<td>{{ path }}</td>")
    assert source.render(path=name) == (
        "<td>&lt;img src=x onerror=&#34;alert(1)&#34;&gt;&amp;.png</td>"
    )
    assert report.template().environment.autoescape("report.html.j2")


def test_verdicts_say_plainly_when_the_network_harms_its_inputs_and_how_it_does_in_the_holes():
    table, _ = _tables()
    table = table.assign(psnr_holes=[25.0, 24.0, 22.0])
    base = pd.DataFrame(
        {
            "image": ["a.png", "b.png", "c.png"] * 2,
            "split": ["train", "val", "val"] * 2,
            "method": ["damaged input"] * 3 + ["biharmonic inpainting"] * 3,
            "psnr": [29.0, 31.5, 28.5, 28.0, 30.0, 26.0],
            "ssim": [0.8] * 6,
            "psnr_holes": [10.0, 10.0, 10.0, 24.0, 25.0, 25.0],
        }
    )
    rows, _ = report.comparison(table, base)
    said = report.verdicts(rows, {"task": {"kind": "restore", "degradations": []}})
    # validation: (31 - 31.5 + 27 - 28.5) / 2 = -1 dB against its own input, worse on both
    harm = next(s for s in said if "harms its inputs" in s)
    assert "1.00 dB worse than the damaged input" in harm and "worse on 2 of 2" in harm
    # inside the holes: (24 - 25 + 22 - 25) / 2 = -2 dB against biharmonic inpainting
    assert any("holes" in s and "loses to biharmonic inpainting by 2.00 dB" in s for s in said)
    assert not any("harms" in s for s in report.verdicts(rows, {}))  # reconstruct: no input row


def test_stage_costs_sum_each_stages_jobs_and_keep_the_largest_peak(tmp_path):
    header = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
    files = []
    for k, (s, rss, cpu) in enumerate([(1.5, 100, 1.0), (2.5, 300, "NA"), (10, 900, 19.5)]):
        path = tmp_path / f"{k}.tsv"
        path.write_text(header + f"{s}\t0:00:01\t{rss}\t1\t1\t1\t0\t0\t0\t{cpu}\n")
        files.append(path)
    table = report.stage_costs(["patches", "patches", "train"], files).set_index("stage")
    assert list(table.index) == ["patches", "train", "all"]
    assert table.loc["patches"].tolist() == [2, 4.0, 300.0, 1.0]  # "NA": not measured, not 0
    assert table.loc["all"].tolist() == [3, 14.0, 900.0, 20.5]
