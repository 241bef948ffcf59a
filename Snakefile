# Tessera: train a convolutional autoencoder on image patches, rebuild every image tile by tile,
# and report how well it did. Run with `snakemake --cores all`; see README.md.
import os
import sys

from snakemake.utils import min_version, validate

min_version("9.0")

# The tessera library sits next to this file: import it here, and let every job (local, conda or
# on a cluster node) import it too.
sys.path.insert(0, workflow.basedir)
from tessera import settings

os.environ["PYTHONPATH"] = os.pathsep.join(
    [workflow.basedir] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
)


envvars:
    "PYTHONPATH",


configfile: "config/config.yaml"


# --config values arrive as text; read them as the schema's types before validating.
settings.coerce(config, settings.load_schema(workflow.source_path("config/config.schema.yaml")))


validate(config, "config/config.schema.yaml")


include: "rules/common.smk"
include: "rules/patches.smk"
include: "rules/split.smk"
include: "rules/train.smk"
include: "rules/reconstruct.smk"
include: "rules/report.smk"


rule all:
    default_target: True
    input:
        results("report/index.html"),
