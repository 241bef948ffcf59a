rule reconstruct:
    """Rebuild one whole image tile by tile with the trained model, and measure it."""
    input:
        image=source,
        target=target,
        model=run_path("model/model.keras"),
        summary=run_path("model/summary.json"),
    output:
        png=run_path("reconstructed/{image}.png"),
        metrics=run_path("reconstructed/{image}.json"),
    log:
        logs(f"{RUN}reconstruct/{{image}}.log"),
    benchmark:
        logs(f"benchmarks/{RUN}reconstruct/{{image}}.tsv")
    conda:
        "../envs/tessera.yaml"
    threads: lambda w: conf(w)["reconstruct"]["threads"]
    resources:
        mem_mb=settings.MEM_MB["reconstruct"],
        runtime=30,
    params:
        settings=lambda w: settings_of(conf(w), "reconstruct"),
        task=lambda w: conf(w)["task"],
        max_megapixels=config["max_megapixels"],
        # the only code that may build the network: the run's own model file
        model_file=lambda w: conf(w)["model"].get("file"),
        code=code("reconstruct"),
    script:
        "../scripts/reconstruct.py"


rule seams:
    """The image the report shows, rebuilt the blog post's naive way too: tiles side by side, no
    margin, so the report can show the seams that the configured tiling avoids."""
    input:
        image=source,
        target=target,
        model=run_path("model/model.keras"),
        summary=run_path("model/summary.json"),
    output:
        png=run_path("reconstructed/{image}.naive.png"),
        metrics=run_path("reconstructed/{image}.naive.json"),
    log:
        logs(f"{RUN}reconstruct/{{image}}.naive.log"),
    benchmark:
        logs(f"benchmarks/{RUN}reconstruct/{{image}}.naive.tsv")
    conda:
        "../envs/tessera.yaml"
    threads: lambda w: conf(w)["reconstruct"]["threads"]
    resources:
        mem_mb=settings.MEM_MB["reconstruct"],
        runtime=30,
    params:
        settings=lambda w: {
            **settings_of(conf(w), "reconstruct"),
            "mode": "naive",
            "ensemble": False,
        },
        task=lambda w: conf(w)["task"],
        max_megapixels=config["max_megapixels"],
        # the only code that may build the network: the run's own model file
        model_file=lambda w: conf(w)["model"].get("file"),
        code=code("reconstruct"),
    script:
        "../scripts/reconstruct.py"
