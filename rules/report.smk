rule report:
    """One offline HTML page: loss, per-image metrics, galleries, skipped inputs, provenance."""
    input:
        history=run_path("model/history.tsv"),
        summary=run_path("model/summary.json"),
        split=lambda w: fill(results(f"{SPLIT}/split.tsv"), w),
        baselines=lambda w: fill(results(f"{BASELINES}/metrics.tsv"), w),
        baselines_parameters=lambda w: fill(results(f"{BASELINES}/parameters.json"), w),
        metrics=lambda w: rebuilt(w, "json"),
        rebuilt=lambda w: rebuilt(w, "png"),
        # the truth each image is measured against: itself, or with task paired its target,
        # the image being the damaged input
        sources=lambda w: [target_of(i) or source_of(i) for i in usable_images(w)],
        damaged=lambda w: [source_of(i) for i in usable_images(w)] if PARTNERS else [],
        naive=lambda w: rebuilt(w, "naive.png", [shown_image(w)])[0],
        naive_metrics=lambda w: rebuilt(w, "naive.json", [shown_image(w)])[0],
        benchmarks=lambda w: [path for _, path in cost_files(w)],
    output:
        html=run_path("report/index.html"),
        loss=report(
            run_path("report/loss.png"),
            caption="captions/loss.rst",
            category="Training",
        ),
        loss_tsv=report(
            run_path("report/loss.tsv"),
            caption="captions/loss_table.rst",
            category="Training",
        ),
        metrics=report(
            run_path("report/metrics.tsv"),
            caption="captions/metrics.rst",
            category="Reconstruction",
        ),
        baselines=report(
            run_path("report/baselines.tsv"),
            caption="captions/baselines.rst",
            category="Reconstruction",
        ),
        gallery=report(
            directory(run_path("report/images")),
            patterns=["{image}.{kind}.thumb.jpg"],
            caption="captions/gallery.rst",
            category="Reconstruction",
            subcategory="Before, after and difference",
            labels={"image": "{image}", "kind": "{kind}"},
        ),
    log:
        logs(f"{RUN}report.log"),
    benchmark:
        logs(f"benchmarks/{RUN}report.tsv")
    conda:
        "../envs/tessera.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        images=usable_images,
        shown=shown_image,
        skipped=SKIPPED,
        shown_config=lambda w: shown_config(conf(w)),
        settings={**config["report"], "max_megapixels": config["max_megapixels"]},
        # the page comparing every variant, linked from each variant's report
        compare=(
            os.path.relpath(results("compare/index.html"), results("v/report"))
            if VARIANTS
            else None
        ),
        stages=lambda w: [stage for stage, _ in cost_files(w)],
        code=code("report"),
    script:
        "../scripts/report.py"
