"""Synthetic MIMIC-IV / MIMIC-IV-ED / MIMIC-IV-ECG cohort (the pipeline's embedded default).

See ``docs/synthetic_cohort.md`` for the physiology model and the conventions.
"""

from pipeline.synth.cohort import (
    SynthConfig,
    SynthSummary,
    synthesize_cohort,
    synthesize_labevents_only,
)

__all__ = ["SynthConfig", "SynthSummary", "synthesize_cohort", "synthesize_labevents_only"]
