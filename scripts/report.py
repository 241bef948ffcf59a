"""Write the HTML report and its tables (rule report)."""

from pathlib import Path

from tessera import report
from tessera.jobs import job

with job(snakemake.log[0], "report"):
    items = [
        {"image": i, "source": s, "metrics": m, "rebuilt": r}
        for i, s, m, r in zip(
            snakemake.params.images,
            snakemake.input.sources,
            snakemake.input.metrics,
            snakemake.input.rebuilt,
        )
    ]
    for item, damaged in zip(items, snakemake.input.damaged):
        item["damaged"] = damaged
    inputs = {
        key: getattr(snakemake.input, key)
        for key in (
            "history",
            "summary",
            "split",
            "baselines",
            "baselines_parameters",
            "naive",
            "naive_metrics",
        )
    }
    page = report.build(
        inputs,
        items,
        skipped=snakemake.params.skipped,
        config=snakemake.params.shown_config,
        settings=snakemake.params.settings,
        out_dir=Path(snakemake.output.html).parent,
        shown_image=snakemake.params.shown,
        compare=snakemake.params.compare,
        costs=report.stage_costs(snakemake.params.stages, snakemake.input.benchmarks),
    )
    print(f"wrote {page}")
