# ECG-explain: MIMIC-IV + ED + ECG -> an ECG-only diagnosis model that explains itself
# with predicted lab abnormalities. This file only wires things up; rules live in
# workflow/rules/, logic in the `pipeline` package.
import sys
from pathlib import Path

import yaml
from snakemake.utils import min_version, validate

sys.path.insert(0, workflow.basedir)  # the pipeline package, even where not pip-installed
from pipeline.config_checks import coerce_cli_strings

CONFIG_SCHEMA = "workflow/schemas/config.schema.yaml"

min_version("8.0")


configfile: "config.yaml"


# `snakemake --report report.html`: captions and categories are set on the rules' outputs.
report: "workflow/report/workflow.rst"


# `--config key='{a: false}'` delivers nested values as strings: parse those the schema types.
SCHEMA = yaml.safe_load(Path(workflow.basedir, CONFIG_SCHEMA).read_text())
coerce_cli_strings(config, SCHEMA)
validate(config, CONFIG_SCHEMA)


include: "workflow/rules/common.smk"
include: "workflow/rules/runs.smk"
include: "workflow/rules/synthetic.smk"
include: "workflow/rules/extract.smk"
include: "workflow/rules/shard.smk"
include: "workflow/rules/beyond.smk"
include: "workflow/rules/splits.smk"
include: "workflow/rules/pretrain.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/probe.smk"
include: "workflow/rules/study.smk"
include: "workflow/rules/sweep.smk"
include: "workflow/rules/regime.smk"
include: "workflow/rules/export.smk"


rule all:
    default_target: True
    input:
        P["table1_md"],
        P["report"],
        P["probe_md"],
        P["export_dir"],
