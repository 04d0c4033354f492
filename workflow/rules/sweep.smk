# `snakemake sweep`: every variant of config sweep.variants is a run (pipeline/runs.py)
# that re-trains only the stages its settings reach under results/sweep/<variant>/, with
# the pipeline's own rules, and is evaluated on the default run's test records;
# results/sweep/sweep.md compares each with the default run on the validation fold, where a
# setting is chosen. Not part of `all`.

SWEEP_ROWS = sweep_rows(PLAN, SWEEP_RUNS)


rule sweep_table:
    input:
        model_dirs=run_files("model_dir", SWEEP_ROWS),
        evaluations=run_files("evaluation", SWEEP_ROWS),
        predictions=run_files("predictions", SWEEP_ROWS),
    output:
        md=f"{R}/sweep/sweep.md",
        csv=f"{R}/sweep/sweep.csv",
        json=f"{R}/sweep/sweep.json",
        plot=f"{R}/sweep/sweep.png",
    log:
        log("sweep_table"),
    conda:
        "../envs/pipeline.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        runs=[[run.name, model] for run, model in SWEEP_ROWS],
        settings={run.name: dict(run.overrides) for run in SWEEP_RUNS},
        evaluate=section("evaluate"),
    script:
        "../scripts/sweep_table.py"


rule sweep:
    input:
        rules.sweep_table.output,
