"""Deprecated name of :mod:`pipeline.mimic_schema` (the MIMIC tables the pipeline reads).

Renamed in issue 21: "schema" also names the config schema
(``workflow/schemas/config.schema.yaml``). Kept one release so that code written against the
old name still imports; import :mod:`pipeline.mimic_schema` instead.
"""

import warnings

from pipeline.mimic_schema import *  # noqa: F403

warnings.warn(
    "pipeline.schema is deprecated: import pipeline.mimic_schema (the MIMIC table schema)",
    DeprecationWarning,
    stacklevel=2,
)
