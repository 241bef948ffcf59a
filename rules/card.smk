rule card:
    """The model card, MODEL.md beside the model: what it does, how it was trained and tiled, how
    it scores against the classical methods, and how to load it outside the workflow."""
    input:
        model=run_path("model/model.keras"),
        summary=run_path("model/summary.json"),
        split=lambda w: fill(results(f"{SPLIT}/split.tsv"), w),
        baselines=lambda w: fill(results(f"{BASELINES}/metrics.tsv"), w),
        metrics=lambda w: rebuilt(w, "json"),
    output:
        md=run_path("model/MODEL.md"),
    log:
        logs(f"{RUN}card.log"),
    benchmark:
        logs(f"benchmarks/{RUN}card.tsv")
    conda:
        "../envs/tessera.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        tiling=lambda w: settings_of(conf(w), "reconstruct", "batch_size"),
        data=lambda w: training_data(conf(w)),
        # the folder as the card's snippets name it: where this run's results are
        folder=lambda w, output: os.path.dirname(output.md),
        code=code("card"),
    script:
        "../scripts/card.py"
