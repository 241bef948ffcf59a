rule compare:
    """One page comparing every variant: the settings that differ, metrics, loss curves, a crop."""
    input:
        summaries=[run_path("model/summary.json", v) for v in VARIANTS],
        histories=[run_path("model/history.tsv", v) for v in VARIANTS],
        metrics=[run_path("report/metrics.tsv", v) for v in VARIANTS],
        reports=[run_path("report/index.html", v) for v in VARIANTS],
        baselines=[results(f"{BASELINES}/metrics.tsv").format(**KEYS[v]) for v in VARIANTS],
        rebuilt=lambda w: [
            run_path(f"reconstructed/{i}.png", v) for v in VARIANTS for i in usable_of(KEYS[v])
        ],
    output:
        html=results("compare/index.html"),
        table=report(
            results("compare/compare.tsv"),
            caption="captions/compare.rst",
            category="Comparison",
        ),
        loss=report(
            results("compare/loss.png"),
            caption="captions/compare_loss.rst",
            category="Comparison",
        ),
        crops=report(
            directory(results("compare/crops")),
            patterns=["{picture}.png"],
            caption="captions/compare_crops.rst",
            category="Comparison",
            labels={"picture": "{picture}"},
        ),
    log:
        logs("compare.log"),
    benchmark:
        logs("benchmarks/compare.tsv")
    conda:
        "../envs/tessera.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        variants=lambda w: [
            {"name": v, "settings": shown_config(c), "images": usable_of(KEYS[v])}
            for v, c in VARIANTS.items()
        ],
        sources=lambda w: {i: source_of(i) for v in VARIANTS for i in usable_of(KEYS[v])},
        code=code("compare"),
    script:
        "../scripts/compare.py"
