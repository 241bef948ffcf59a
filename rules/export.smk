# The export target, `snakemake export`: every variant's model written beside it as ONNX, a
# TensorFlow SavedModel and TFLite, for use without Tessera (not part of rule all).
rule export_model:
    """Export one trained model in the three formats, float32, height and width left free."""
    input:
        model=run_path("model/model.keras"),
        summary=run_path("model/summary.json"),
    output:
        onnx=run_path("model/model.onnx"),
        tflite=run_path("model/model.tflite"),
        savedmodel=directory(run_path("model/model.savedmodel")),
    log:
        logs(f"{RUN}export.log"),
    benchmark:
        logs(f"benchmarks/{RUN}export.tsv")
    conda:
        "../envs/tessera.yaml"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=20,
    params:
        # what the export's log says of how the workflow tiles the model
        tiling=lambda w: settings_of(conf(w), "reconstruct", "batch_size"),
        code=code("export"),
    script:
        "../scripts/export.py"


rule export:
    """The export target: the exports of every variant's model (or of the run's one)."""
    input:
        [
            run_path(f"model/{name}", v)
            for v in (VARIANTS or [None])
            for name in ("model.onnx", "model.tflite", "model.savedmodel")
        ],
