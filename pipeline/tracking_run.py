"""One MLflow run as a sink: retried calls, identifier screening, off when tracking fails.

:class:`StageRun` is what every stage logs through (:func:`pipeline.tracking.stage_run`
opens it); a tracking error disables the run with a warning and never reaches the stage.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from pipeline.privacy import check_no_identifiers, screen_artifact

log = logging.getLogger(__name__)

T = TypeVar("T")

_RETRY_SLEEPS_S = (0.5, 2.0)  # a locked sqlite database usually frees up within seconds


def flatten_params(params: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Flatten nested mappings to ``{"a.b": "value"}`` with string values.

    Lists and other values are JSON-encoded (falling back to ``str``), as MLflow stores
    parameters as strings.
    """
    flat: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_params(value, prefix=f"{name}."))
            continue
        try:
            text = value if isinstance(value, str) else json.dumps(value)
        except TypeError:
            text = str(value)
        flat[name] = text
    return flat


def retrying(what: str, fn: Callable[[], T]) -> tuple[bool, T | None]:
    """Call ``fn`` with a few retries; ``(False, None)`` with a warning when it keeps failing."""
    for attempt, pause in enumerate((*_RETRY_SLEEPS_S, None)):
        try:
            return True, fn()
        except Exception as exc:  # any tracking error: the stage's own results matter more
            if pause is None:
                log.warning(
                    "MLflow %s failed after %d attempts (%s: %s); tracking disabled, "
                    "the stage continues",
                    what,
                    attempt + 1,
                    type(exc).__name__,
                    exc,
                )
                return False, None
            time.sleep(pause)
    return False, None


class StageRun:
    """Handle to one MLflow run; every method is a no-op when tracking is off or has failed."""

    def __init__(self, client: Any | None = None, run_id: str | None = None) -> None:
        self._client = client
        self.run_id = run_id

    @property
    def enabled(self) -> bool:
        """Whether calls still reach MLflow (False when disabled or after a failure)."""
        return self._client is not None and self.run_id is not None

    def _call(self, method: str, *args: Any, **kwargs: Any) -> None:
        """Call ``client.<method>(run_id, *args)`` with retries; on failure disable this run."""
        client = self._client
        if client is None or self.run_id is None:
            return
        run_id = self.run_id
        ok, _ = retrying(method, lambda: getattr(client, method)(run_id, *args, **kwargs))
        if not ok:
            self._client = None

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Log (nested) parameters, flattened to dotted keys; over-long values are truncated."""
        flat = flatten_params(params)
        check_no_identifiers(flat, "MLflow params")
        if not self.enabled:
            return  # also spares importing mlflow when tracking is off
        from mlflow.entities import Param
        from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH, MAX_PARAMS_TAGS_PER_BATCH

        cut = MAX_PARAM_VAL_LENGTH
        items = [Param(k, v if len(v) <= cut else v[: cut - 3] + "...") for k, v in flat.items()]
        for i in range(0, len(items), MAX_PARAMS_TAGS_PER_BATCH):
            self._call("log_batch", params=items[i : i + MAX_PARAMS_TAGS_PER_BATCH])

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Log scalar metrics at ``step`` (0 when omitted); infinities are logged as NaN."""
        check_no_identifiers(metrics, "MLflow metrics")
        values = {k: float(v) for k, v in metrics.items()}  # non-numbers raise here
        if not self.enabled:
            return
        from mlflow.entities import Metric
        from mlflow.utils.validation import MAX_METRICS_PER_BATCH

        now = int(time.time() * 1000)
        items = [
            Metric(k, math.nan if math.isinf(v) else v, now, int(step or 0))
            for k, v in values.items()
        ]
        for i in range(0, len(items), MAX_METRICS_PER_BATCH):
            self._call("log_batch", metrics=items[i : i + MAX_METRICS_PER_BATCH])

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        """Copy a file into the run's artifacts after screening it for identifiers."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"MLflow artifact {path} does not exist or is not a file")
        screen_artifact(path)
        self._call("log_artifact", str(path), artifact_path)

    def set_tag(self, key: str, value: Any) -> None:
        """Set a run tag (value stored as a string)."""
        check_no_identifiers([key], "MLflow tags")
        self._call("set_tag", key, str(value))

    def _terminate(self, status: str) -> None:
        self._call("set_terminated", status)
