rule reconstruct:
    """Rebuild one whole image tile by tile with the trained model, and measure it."""
    input:
        image=source,
        model=results("model/model.keras"),
        summary=results("model/summary.json"),
    output:
        png=results("reconstructed/{image}.png"),
        metrics=results("reconstructed/{image}.json"),
    log:
        logs("reconstruct/{image}.log"),
    conda:
        "../envs/tessera.yaml"
    threads: config["reconstruct"]["threads"]
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        settings=settings_of("reconstruct"),
        task=config["task"],
        max_megapixels=config["max_megapixels"],
        code=code("reconstruct"),
    script:
        "../scripts/reconstruct.py"
