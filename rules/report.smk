rule report:
    """One offline HTML page: loss, per-image metrics, galleries, skipped inputs, provenance."""
    input:
        history=results("model/history.tsv"),
        summary=results("model/summary.json"),
        split=results("dataset/split.tsv"),
        model=results("model/model.keras"),
        baselines=results("baselines/metrics.tsv"),
        baselines_parameters=results("baselines/parameters.json"),
        metrics=lambda w: expand(results("reconstructed/{image}.json"), image=usable_images(w)),
        rebuilt=lambda w: expand(results("reconstructed/{image}.png"), image=usable_images(w)),
        sources=lambda w: [source_of(i) for i in usable_images(w)],
    output:
        html=results("report/index.html"),
        loss=report(
            results("report/loss.png"),
            caption="captions/loss.rst",
            category="Training",
        ),
        loss_tsv=report(
            results("report/loss.tsv"),
            caption="captions/loss_table.rst",
            category="Training",
        ),
        metrics=report(
            results("report/metrics.tsv"),
            caption="captions/metrics.rst",
            category="Reconstruction",
        ),
        baselines=report(
            results("report/baselines.tsv"),
            caption="captions/baselines.rst",
            category="Reconstruction",
        ),
        gallery=report(
            directory(results("report/images")),
            patterns=["{image}.{kind}.thumb.jpg"],
            caption="captions/gallery.rst",
            category="Reconstruction",
            subcategory="Before, after and difference",
            labels={"image": "{image}", "kind": "{kind}"},
        ),
    log:
        logs("report.log"),
    conda:
        "../envs/tessera.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        images=usable_images,
        skipped=SKIPPED,
        shown_config=shown_config(),
        settings={
            **config["report"],
            "tile": config["reconstruct"]["tile"],
            "batch_size": config["reconstruct"]["batch_size"],
            "max_megapixels": config["max_megapixels"],
        },
        code=code("report"),
    script:
        "../scripts/report.py"
