"""Extraction stages: MIMIC csv(.gz) -> parquet -> cohort, features, labels, lab targets.

Every stage is one typed public function driven by a frozen config dataclass; the
Snakemake scripts in ``workflow/scripts`` only build the config and call it.
"""
