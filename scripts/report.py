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
    page = report.build(
        snakemake.input.history,
        snakemake.input.summary,
        snakemake.input.split,
        items,
        skipped=snakemake.params.skipped,
        config=snakemake.params.shown_config,
        thumbnail=snakemake.params.settings["thumbnail"],
        out_dir=Path(snakemake.output.html).parent,
    )
    print(f"wrote {page}")
