"""Is this input a plausible body-surface ECG in mV? Warnings (never refusals) per record.

A record can be readable and still wrong: a header gain off by 5x (a public GE MUSE to
WFDB converter wrote 200 adu/mV for samples stored at 1,000 per mV), microvolts labelled
millivolts, two limb leads swapped or mislabelled. The model scores such records without
complaint, so inference reports what these checks find, with the likely cause:

``amplitude_high``
    a lead's peak-to-peak amplitude above :data:`MAX_P2P_MV` (5 mV): the input dynamic
    range diagnostic electrocardiographs are specified for (+-5 mV; Bailey et al. 1990,
    Circulation 81:730, AHA recommendations for automated electrocardiography; IEC
    60601-2-25), while adult QRS amplitudes stay within about 3 mV (upper normal limits
    of R in V5 and S in V2: Macfarlane et al., Comprehensive Electrocardiology, 2nd ed.
    2010). Likely cause: units or gain (or extreme voltage, e.g. LVH in a young adult).
``amplitude_low``
    every lead, precordial ones included, below :data:`MIN_MAX_P2P_MV` (0.5 mV): below
    even the low-voltage QRS definition (limb leads < 0.5 mV and precordial < 1.0 mV;
    Surawicz & Knilans, Chou's Electrocardiography in Clinical Practice, 6th ed. 2008).
    Likely cause: units or gain.
``clipped``
    more than :data:`MAX_CLIPPED` (1 %) of a lead's samples at or beyond the model's clip
    (+-``clip_mv``); clean synthetic records reach 0.6 % at most. Likely cause: units or
    gain (the model sees flattened QRS complexes).
``saturated``
    a lead sitting at its own extreme value for more than :data:`MAX_SATURATED` (2 %) of
    its samples (clean records: 0.2 % at most). Likely cause: amplifier saturation or
    an export that clipped the signal.
``near_flat_lead``
    a lead with peak-to-peak below :data:`MIN_P2P_MV` (0.05 mV, below a normal P wave,
    0.05-0.25 mV). Likely cause: a disconnected electrode. (An exactly constant lead is
    not warned about but refused: the quarantine reason ``flat_lead``.)
``lead_relation``
    the limb leads break Einthoven's law (III = II - I) or Goldberger's (aVR = -(I+II)/2,
    aVL = I - II/2, aVF = II - I/2, hence aVR + aVL + aVF = 0) by more than
    :data:`RELATION_TOL_MV` rms beyond quantisation. Every recorder measures I and II and
    computes the rest (or measures all from the same electrodes), so only a swapped or
    mislabelled lead breaks them; when swapping one pair back restores every relation the
    warning names that pair. Not checked when leads were derived (they hold by
    construction). Electrode reversals (e.g. left/right arm) keep the relations and are
    not detected.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import combinations

import numpy as np

from pipeline.mimic_schema import LEADS

MAX_P2P_MV = 5.0
MIN_MAX_P2P_MV = 0.5
MIN_P2P_MV = 0.05
MAX_CLIPPED = 0.01
MAX_SATURATED = 0.02
#: rms residual of a lead relation beyond which the leads are inconsistent (mV); 10
#: quantisation steps of MIMIC-IV-ECG's 5 uV (clean synthetic records: 0.003 mV)
RELATION_TOL_MV = 0.05

_LIMB = ("I", "II", "III", "aVR", "aVL", "aVF")
Leads = dict[str, np.ndarray]
#: relation name -> residual that is zero for consistent limb leads
_RELATIONS: dict[str, Callable[[Leads], np.ndarray]] = {
    "III = II - I": lambda x: x["III"] - (x["II"] - x["I"]),
    "aVR = -(I+II)/2": lambda x: x["aVR"] + (x["I"] + x["II"]) / 2,
    "aVL = I - II/2": lambda x: x["aVL"] - (x["I"] - x["II"] / 2),
    "aVF = II - I/2": lambda x: x["aVF"] - (x["II"] - x["I"] / 2),
}
_GAIN = "likely units or gain"


def _residuals(leads: Leads) -> dict[str, float]:
    """rms residual (mV) of each relation, over the samples present in every lead."""
    out = {}
    for name, f in _RELATIONS.items():
        r = f(leads)
        out[name] = float(np.sqrt(np.nanmean(r * r)))
    return out


def _broken(leads: Leads) -> list[str]:
    return [name for name, rms in _residuals(leads).items() if rms > RELATION_TOL_MV]


def _swap_that_fixes(leads: Leads) -> tuple[str, str] | None:
    """The pair of limb leads whose exchange restores every relation best, if it does."""
    best, best_rms = None, np.inf
    for a, b in combinations(_LIMB, 2):
        rms = max(_residuals({**leads, a: leads[b], b: leads[a]}).values())
        if rms < best_rms:
            best, best_rms = (a, b), rms
    return best if best_rms <= RELATION_TOL_MV else None


def _relations(leads: Leads) -> list[str]:
    broken = _broken(leads)
    if not broken:
        return []
    pair = _swap_that_fixes(leads)
    cause = (
        f"likely {pair[0]} and {pair[1]} swapped"
        if pair
        else "likely a swapped or mislabelled lead"
    )
    return [f"lead_relation: {', '.join(broken)} broken ({cause})"]


def _amplitudes(x: np.ndarray, clip_mv: float) -> list[str]:
    """Range, clipping, saturation and flat-lead checks on (12, T) mV."""
    present = np.isfinite(x)
    n = np.maximum(present.sum(axis=1), 1)
    top, bottom = np.nanmax(x, axis=1, keepdims=True), np.nanmin(x, axis=1, keepdims=True)
    p2p = (top - bottom)[:, 0]  # (12,)
    out = []
    high = [LEADS[i] for i in np.flatnonzero(p2p > MAX_P2P_MV)]
    if high:
        out.append(
            f"amplitude_high: {', '.join(high)} above {MAX_P2P_MV:g} mV peak-to-peak "
            f"(median lead {np.median(p2p):.1f} mV where 0.5-2 is usual: {_GAIN})"
        )
    if p2p.max() < MIN_MAX_P2P_MV:
        out.append(
            f"amplitude_low: every lead below {MIN_MAX_P2P_MV:g} mV peak-to-peak "
            f"(largest {p2p.max():.3g} mV: {_GAIN})"
        )
    clipped = (np.abs(np.where(present, x, 0)) >= clip_mv).sum(axis=1) / n  # (12,)
    if clipped.max() > MAX_CLIPPED:
        worst = int(np.argmax(clipped))
        out.append(
            f"clipped: {LEADS[worst]} {100 * clipped[worst]:.1f}% of samples beyond "
            f"+-{clip_mv:g} mV ({_GAIN})"
        )
    at_edge = (x == top) | (x == bottom)
    saturated = [LEADS[i] for i in np.flatnonzero(at_edge.sum(axis=1) / n > MAX_SATURATED)]
    if saturated:
        out.append(
            f"saturated: {', '.join(saturated)} at their extreme value for over "
            f"{100 * MAX_SATURATED:g}% of samples (likely amplifier saturation or a clipped export)"
        )
    flat = [LEADS[i] for i in np.flatnonzero(p2p < MIN_P2P_MV)]
    if flat:
        out.append(
            f"near_flat_lead: {', '.join(flat)} below {MIN_P2P_MV:g} mV peak-to-peak "
            "(likely a disconnected electrode)"
        )
    return out


def plausibility(x: np.ndarray, clip_mv: float, derived: tuple[str, ...] = ()) -> list[str]:
    """Warnings ``kind: detail (likely cause)`` for one record (no ``;`` inside, so a
    table can join them with ``; ``); empty when plausible.

    Args:
        x: (12, T) mV in :data:`LEADS` order, NaN = missing sample (not yet interpolated,
            so relations are judged on recorded samples only).
        clip_mv: the model's clip (the shard stage's ``clip_mv``).
        derived: leads computed by the reader (the relation checks are skipped).
    """
    x = np.asarray(x, np.float64)
    out = _amplitudes(x, clip_mv)
    if not derived:
        out += _relations(dict(zip(LEADS, x, strict=True)))
    return out
