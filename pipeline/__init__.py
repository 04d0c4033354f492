"""ECG-explain: joint-embedding ECG model with lab-abnormality explanations on MIMIC-IV.

Each pipeline stage exposes one typed function; the Snakemake rules under
``workflow/`` are thin wrappers around them. This package never imports snakemake.
"""

__version__ = "0.1.0"
