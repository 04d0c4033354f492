# ECG-explain: MIMIC-IV + ED + ECG -> an ECG-only diagnosis model that explains itself
# with predicted lab abnormalities. This file only wires things up; rules live in
# workflow/rules/, logic in the `pipeline` package.
from snakemake.utils import min_version, validate

min_version("8.0")


configfile: "config.yaml"


validate(config, "workflow/schemas/config.schema.yaml")


include: "workflow/rules/common.smk"
include: "workflow/rules/synthetic.smk"
include: "workflow/rules/extract.smk"
include: "workflow/rules/shard.smk"
include: "workflow/rules/splits.smk"
include: "workflow/rules/pretrain.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"


rule all:
    default_target: True
    input:
        P["table1_md"],
        P["report"],
