# Tessera: train a convolutional autoencoder on image patches, rebuild every image tile by tile,
# and report how well it did. Run with `snakemake --cores all`; see README.md.
import os
import sys

from snakemake.utils import min_version, validate

min_version("9.0")

# The tessera library sits next to this file: import it here, and let every job (local, conda or
# on a cluster node) import it too.
sys.path.insert(0, workflow.basedir)
from tessera import TesseraError, settings

os.environ["PYTHONPATH"] = os.pathsep.join(
    [workflow.basedir] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
)


envvars:
    "PYTHONPATH",


configfile: "config/config.yaml"


# Snakemake merges each layer of settings (config/config.yaml, each --configfile, --config) into
# those below it; a model section that names its network (a preset or a file) replaces the model
# below it instead.
_given = workflow.config_settings
_layers = settings.config_layers(
    [] if _given.replace_workflow_config else ["config/config.yaml"],
    _given.configfiles,
    _given.config,
)
if (_model := settings.layered_model(_layers)) is not None:
    config["model"] = _model
# --config values arrive as text; read them as the schema's types before validating.
config_schema = settings.load_schema(workflow.source_path("config/config.schema.yaml"))
settings.coerce(config, config_schema)
try:
    settings.validate(config, config_schema)
except TesseraError as e:
    # One line naming the key; SystemExit, as a WorkflowError would add a traceback of this file.
    raise SystemExit(f"tessera: error: {e}")


# Fills in the schema's defaults for keys left out.
validate(config, "config/config.schema.yaml")


include: "rules/common.smk"
include: "rules/patches.smk"
include: "rules/split.smk"
include: "rules/train.smk"
include: "rules/reconstruct.smk"
include: "rules/baselines.smk"
include: "rules/report.smk"
include: "rules/compare.smk"
include: "rules/apply.smk"
include: "rules/card.smk"
include: "rules/export.smk"


rule all:
    default_target: True
    input:
        # every variant's report and the page comparing them; or the one run's report
        [run_path("report/index.html", v) for v in VARIANTS] + [results("compare/index.html")]
        if VARIANTS
        else results("report/index.html"),
        # the card beside every trained model
        [run_path("model/MODEL.md", v) for v in (VARIANTS or [None])],
