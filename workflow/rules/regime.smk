# `snakemake regime` (issue 22): when does clinical knowledge transfer? The models of
# config regime.models once per synthetic world x label fraction x seed, each cell a run
# (pipeline/runs.py regime_runs) served by the pipeline's own rules under
# results/regime/<world>-f<fraction>-seed<seed>/. A world other than synthetic.world has its
# own cohort, extraction, shards and splits under results/regime/world-<world>/; runs of one
# world and seed share stage 1 across label fractions; a cell equal to the default run or a
# study seed reads their models. results/regime/regime.md: pooled paired differences per
# cell, overall and per label group. Not part of `all`.

_unknown = [m for m in config["regime"]["models"] if m not in MODELS]
_needed = {"signal_only", "method_diagnoses", "ssl_ecg_only", "distilled"} - set(
    config["regime"]["models"]
)
if _unknown or _needed:
    raise WorkflowError(
        f"invalid config:\n  config regime.models: unknown {_unknown}, missing {sorted(_needed)}"
        " (the regime table compares method_diagnoses, ssl_ecg_only, distilled, signal_only)"
    )
REGIME_ROWS = [(run, m) for run in REGIME_RUNS for m in config["regime"]["models"]]


rule regime_table:
    input:
        evaluations=regime_files("evaluation"),
        predictions=regime_files("predictions"),
        groups=f"{workflow.basedir}/pipeline/resources/label_groups.tsv",
    output:
        csv=f"{R}/regime/regime.csv",
        md=f"{R}/regime/regime.md",
        plot=f"{R}/regime/regime.png",
    log:
        log("regime_table"),
    conda:
        "../envs/pipeline.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        # (world, label fraction, seed, model) of each input, in order
        rows=[
            [run.overrides[k] for k in ("synthetic.world", "label_fraction", "supervised.seed")]
            + [m]
            for run, m in REGIME_ROWS
        ],
        evaluate=section("evaluate"),
    script:
        "../scripts/regime_table.py"


rule regime:
    input:
        rules.regime_table.output,
