# Synthetic MIMIC-IV / -ED / -ECG cohort in the exact PhysioNet layout (the embedded default).
if config["source"]["synthetic"]:

    rule synthesize_cohort:
        output:
            [source_path(SRC, t) for t in TABLES if t not in ("record_list", "patients", "edstays")],
            f"{SRC['mimic_iv_ecg']}/machine_measurements.csv",
            directory(f"{SRC['mimic_iv_ecg']}/files"),
            record_list=source_path(SRC, "record_list"),
            patients=source_path(SRC, "patients"),
            edstays=source_path(SRC, "edstays"),
            ground_truth=P["ground_truth"],
            done=P["synthetic_done"],
        log:
            log("synthesize_cohort"),
        benchmark:
            bench_tsv("synthesize_cohort")
        conda:
            "../envs/pipeline.yaml"
        threads: 1
        resources:
            mem_mb=4000,
            runtime=30,
        params:
            synthetic=section("synthetic"),
            # dataset roots, from the files that sit at known depths below them
            mimic_iv=lambda wildcards, output: Path(output.patients).parents[1],
            mimic_iv_ed=lambda wildcards, output: Path(output.edstays).parents[1],
            mimic_iv_ecg=lambda wildcards, output: Path(output.record_list).parent,
        script:
            "../scripts/synthesize_cohort.py"
