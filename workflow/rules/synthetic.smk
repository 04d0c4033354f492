# Synthetic MIMIC-IV / -ED / -ECG cohort in the exact PhysioNet layout (the embedded default).
if config["source"]["synthetic"]:

    rule synthesize_cohort:
        output:
            [source_path(t) for t in TABLES],
            f"{SRC['mimic_iv_ecg']}/machine_measurements.csv",
            directory(f"{SRC['mimic_iv_ecg']}/files"),
            ground_truth=P["ground_truth"],
            done=P["synthetic_done"],
        log:
            log("synthesize_cohort"),
        conda:
            "../envs/pipeline.yaml"
        threads: 1
        resources:
            mem_mb=4000,
            runtime=30,
        params:
            synthetic=config["synthetic"],
            mimic_iv=SRC["mimic_iv"],
            mimic_iv_ed=SRC["mimic_iv_ed"],
            mimic_iv_ecg=SRC["mimic_iv_ecg"],
        script:
            "../scripts/synthesize_cohort.py"
