"""Export a trained model as ONNX, a TensorFlow SavedModel and TFLite (rule export_model)."""

from tessera import backend
from tessera.jobs import job

with job(snakemake.log[0], "export"):
    from tessera import api, export

    backend.configure(snakemake.threads)
    model = api.load(snakemake.input.model, snakemake.input.summary, precision="float32")
    for fmt in ("onnx", "tflite", "savedmodel"):
        written = model.export(snakemake.output[fmt], fmt, overwrite=True)
        print(f"wrote {written} ({fmt})")
    for line in export.passes(model.summary, snakemake.params.tiling):
        print(line)
