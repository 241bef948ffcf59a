"""Write the page that compares every variant of the run (rule compare)."""

from pathlib import Path

from tessera import compare
from tessera.jobs import job

with job(snakemake.log[0], "compare"):
    rebuilt = iter(snakemake.input.rebuilt)
    variants = []
    for k, v in enumerate(snakemake.params.variants):
        variants.append(
            {
                "name": v["name"],
                "settings": v["settings"],
                "summary": snakemake.input.summaries[k],
                "history": snakemake.input.histories[k],
                "metrics": snakemake.input.metrics[k],
                "baselines": snakemake.input.baselines[k],
                "report": snakemake.input.reports[k],
                "sources": {i: snakemake.params.sources[i] for i in v["images"]},
                "rebuilt": {i: next(rebuilt) for i in v["images"]},
            }
        )
    page = compare.build(variants, Path(snakemake.output.html).parent)
    print(f"wrote {page}")
