"""MIMIC-shaped tables (hosp, ed, ecg) built from the simulated cohort frames.

Times are carried as epoch seconds during simulation and converted here; every frame
returned has exactly the columns of :data:`pipeline.mimic_schema.TABLES` in file order.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from pipeline.mimic_schema import TABLES
from pipeline.synth.catalogue import ICD9, ICD10_TITLES, UNUSED_ICD9, UNUSED_ICD10, LabItem
from pipeline.synth.physiology import COMPLAINTS, DAY, YEAR_GROUPS

RACES = (
    "WHITE",
    "BLACK/AFRICAN AMERICAN",
    "HISPANIC/LATINO - PUERTO RICAN",
    "ASIAN - CHINESE",
    "OTHER",
    "UNKNOWN",
    "WHITE - OTHER EUROPEAN",
)
_RACE_P = (0.55, 0.18, 0.07, 0.04, 0.06, 0.05, 0.05)


def ts(name: str) -> pl.Expr:
    """Epoch seconds -> Datetime."""
    return pl.from_epoch(pl.col(name), time_unit="s").cast(pl.Datetime("us"))


def finish(df: pl.DataFrame, table: str) -> pl.DataFrame:
    """Select the schema's columns in order and cast to the schema's types."""
    cols = TABLES[table].columns
    return df.select([pl.col(c).cast(t) for c, t in cols.items()])


def _pick(
    rng: np.random.Generator, options: tuple[str, ...], n: int, p: tuple[float, ...] | None = None
) -> np.ndarray:
    return np.asarray(options)[rng.choice(len(options), n, p=p)]


def patients(rng: np.random.Generator, subjects: pl.DataFrame, stays: pl.DataFrame) -> pl.DataFrame:
    last = stays.group_by("subject_id").agg(pl.col("dischtime").max().alias("last"))
    df = subjects.join(last, on="subject_id", how="left").sort("subject_id", maintain_order=True)
    n = df.height
    death = df["last"].to_numpy() + (rng.uniform(2, 600, n) * DAY).astype(np.int64)
    return finish(
        df.with_columns(
            pl.when(pl.col("female")).then(pl.lit("F")).otherwise(pl.lit("M")).alias("gender"),
            pl.Series("anchor_year_group", np.asarray(YEAR_GROUPS)[df["year_group"].to_numpy()]),
            pl.when(pl.col("dies")).then(pl.Series(death)).otherwise(None).alias("dod_s"),
        ).with_columns(ts("dod_s").dt.date().alias("dod")),
        "patients",
    )


def admissions(rng: np.random.Generator, stays: pl.DataFrame) -> pl.DataFrame:
    adm = stays.filter(pl.col("admitted"))
    n = adm.height
    died = adm["dies"].to_numpy() & (rng.random(n) < 0.15)
    disch = np.where(
        died,
        "DIED",
        _pick(
            rng,
            ("HOME", "HOME HEALTH CARE", "SKILLED NURSING FACILITY", "REHAB"),
            n,
            (0.5, 0.3, 0.15, 0.05),
        ),
    )
    return finish(
        adm.with_columns(
            ts("admittime").alias("admittime"),
            ts("dischtime").alias("dischtime"),
            pl.when(pl.Series(died)).then(ts("dischtime")).otherwise(None).alias("deathtime"),
            pl.Series(
                "admission_type",
                _pick(
                    rng,
                    ("EW EMER.", "OBSERVATION ADMIT", "URGENT", "EU OBSERVATION"),
                    n,
                    (0.6, 0.2, 0.1, 0.1),
                ),
            ),
            pl.Series(
                "admit_provider_id", np.char.add("P", rng.integers(10000, 99999, n).astype(str))
            ),
            pl.lit("EMERGENCY ROOM").alias("admission_location"),
            pl.Series("discharge_location", disch),
            pl.Series("insurance", _pick(rng, ("Medicare", "Medicaid", "Other"), n)),
            pl.lit("ENGLISH").alias("language"),
            pl.Series(
                "marital_status", _pick(rng, ("MARRIED", "SINGLE", "WIDOWED", "DIVORCED"), n)
            ),
            pl.Series("race", _pick(rng, RACES, n, _RACE_P)),
            ts("intime").alias("edregtime"),
            ts("outtime").alias("edouttime"),
            pl.Series("hospital_expire_flag", died.astype(np.int64)),
        ),
        "admissions",
    )


def omr(rng: np.random.Generator, stays: pl.DataFrame) -> pl.DataFrame:
    """Height/weight/BMI/blood pressure rows on clinic dates around each stay (Lbs, Inches)."""
    n = stays.height
    rows = []
    for k in range(2):
        m = rng.random(n) < (0.8 if k == 0 else 0.4)
        day = stays["intime"].to_numpy() + (rng.uniform(-25, 25, n) * DAY).astype(np.int64)
        w_kg = stays["bmi"].to_numpy() * (stays["height_cm"].to_numpy() / 100) ** 2
        w_kg = w_kg * np.exp(rng.normal(0, 0.015, n))
        h_in = stays["height_cm"].to_numpy() / 2.54 + rng.normal(0, 0.3, n)
        bmi = w_kg / (h_in * 0.0254) ** 2
        bp = np.char.add(
            np.char.add(stays["sbp"].to_numpy().round().astype(int).astype(str), "/"),
            (stays["sbp"].to_numpy() * 0.6).round().astype(int).astype(str),
        )
        base = pl.DataFrame({"subject_id": stays["subject_id"].to_numpy(), "day": day})
        for name, val in (
            ("BMI (kg/m2)", np.char.mod("%.1f", bmi)),
            ("Weight (Lbs)", np.char.mod("%.2f", w_kg * 2.20462)),
            ("Height (Inches)", np.char.mod("%.1f", h_in)),
            ("Blood Pressure", bp),
        ):
            rows.append(
                base.with_columns(
                    pl.lit(name).alias("result_name"), pl.Series("result_value", val)
                ).filter(pl.Series(m))
            )
    df = pl.concat(rows).with_columns(ts("day").dt.date().alias("chartdate"))
    df = df.unique(["subject_id", "chartdate", "result_name"], keep="first", maintain_order=True)
    df = df.sort(["subject_id", "chartdate", "result_name"], maintain_order=True).with_columns(
        pl.lit(1).alias("seq_num")
    )
    return finish(df, "omr")


def edstays(rng: np.random.Generator, stays: pl.DataFrame) -> pl.DataFrame:
    n = stays.height
    adm = stays["admitted"].to_numpy()
    other = _pick(
        rng,
        ("HOME", "LEFT WITHOUT BEING SEEN", "TRANSFER", "OTHER", "ELOPED"),
        n,
        (0.85, 0.04, 0.04, 0.05, 0.02),
    )
    return finish(
        stays.with_columns(
            ts("intime").alias("intime"),
            ts("outtime").alias("outtime"),
            pl.when(pl.col("female")).then(pl.lit("F")).otherwise(pl.lit("M")).alias("gender"),
            pl.Series("race", _pick(rng, RACES, n, _RACE_P)),
            pl.Series(
                "arrival_transport",
                _pick(
                    rng,
                    ("WALK IN", "AMBULANCE", "UNKNOWN", "OTHER", "HELICOPTER"),
                    n,
                    (0.55, 0.35, 0.06, 0.035, 0.005),
                ),
            ),
            pl.Series("disposition", np.where(adm, "ADMITTED", other)),
        ),
        "edstays",
    )


def _acuity(stays: pl.DataFrame) -> np.ndarray:
    return np.clip(np.round(3.2 - 1.1 * stays["severity"].to_numpy()), 1, 5)


def triage(rng: np.random.Generator, stays: pl.DataFrame) -> pl.DataFrame:
    n = stays.height
    temp = stays["temp_f"].to_numpy() + rng.normal(0, 0.3, n)
    celsius = rng.random(n) < 0.02  # some entered in Celsius, as in the real table
    temp = np.where(celsius, (temp - 32) / 1.8, temp).round(1)
    temp = np.where(rng.random(n) < 0.05, np.nan, temp)
    sbp = stays["sbp"].to_numpy() + rng.normal(0, 5, n)
    pain = np.where(rng.random(n) < 0.1, "UTA", rng.integers(0, 11, n).astype(str))
    return finish(
        stays.with_columns(
            pl.Series("temperature", temp, nan_to_null=True),
            pl.Series("heartrate", (stays["heart_rate"].to_numpy() + rng.normal(0, 4, n)).round()),
            pl.Series("resprate", stays["resprate"].to_numpy().round()),
            pl.Series("o2sat", stays["o2sat"].to_numpy().round()),
            pl.Series("sbp", sbp.round()),
            pl.Series("dbp", (sbp * 0.58 + rng.normal(0, 6, n)).round()),
            pl.Series("pain", pain),
            pl.Series("acuity", _acuity(stays)),
            pl.Series("chiefcomplaint", np.asarray(COMPLAINTS)[stays["complaint"].to_numpy()]),
        ),
        "triage",
    )


def vitalsign(rng: np.random.Generator, stays: pl.DataFrame) -> pl.DataFrame:
    """A vitals row every ~30-120 min from intime to outtime (temperature often missing)."""
    n = stays.height
    dur = stays["outtime"].to_numpy() - stays["intime"].to_numpy()
    k = np.clip(dur // (75 * 60), 1, 12).astype(np.int64)
    row = np.repeat(np.arange(n), k)
    j = np.arange(row.size) - np.repeat(np.cumsum(k) - k, k)
    frac = (j + rng.uniform(0.05, 0.9, row.size)) / k[row]
    t = stays["intime"].to_numpy()[row] + (frac * dur[row]).astype(np.int64) // 60 * 60
    s = stays[row]
    m = row.size
    decay = 1.0 - 0.5 * frac  # vitals drift towards normal during the stay
    hr = 78 + (s["heart_rate"].to_numpy() - 78) * decay + rng.normal(0, 5, m)
    temp = 98.2 + (s["temp_f"].to_numpy() - 98.2) * decay + rng.normal(0, 0.3, m)
    sbp = s["sbp"].to_numpy() + rng.normal(0, 8, m)
    af = s["af"].to_numpy()
    rhythm = np.where(
        rng.random(m) < 0.25,
        np.where(
            af,
            "Atrial Fibrillation",
            np.where(hr > 100, "Sinus Tachycardia", "Normal Sinus Rhythm"),
        ),
        "",
    )
    return finish(
        s.with_columns(
            pl.Series("charttime", t),
            pl.Series(
                "temperature",
                np.where(rng.random(m) < 0.33, np.nan, temp.round(1)),
                nan_to_null=True,
            ),
            pl.Series("heartrate", hr.round()),
            pl.Series("resprate", (s["resprate"].to_numpy() + rng.normal(0, 1.5, m)).round()),
            pl.Series(
                "o2sat", np.clip(s["o2sat"].to_numpy() + rng.normal(0, 1, m), 70, 100).round()
            ),
            pl.Series("sbp", sbp.round()),
            pl.Series("dbp", (sbp * 0.58 + rng.normal(0, 6, m)).round()),
            pl.Series("rhythm", rhythm),
            pl.Series("pain", rng.integers(0, 11, m).astype(str)),
        )
        .with_columns(ts("charttime").alias("charttime"))
        .with_columns(pl.col("rhythm").replace("", None)),
        "vitalsign",
    )


def d_labitems(items: list[LabItem]) -> pl.DataFrame:
    seen: dict[int, LabItem] = {}
    for it in items:
        seen.setdefault(it.itemid, it)
    df = pl.DataFrame(
        {
            "itemid": list(seen),
            "label": [i.label for i in seen.values()],
            "fluid": [i.fluid for i in seen.values()],
            "category": [i.category for i in seen.values()],
        }
    )
    return finish(df.sort("itemid"), "d_labitems")


def d_icd_diagnoses() -> pl.DataFrame:
    rows = [(c, 9, t) for c, (t, _) in ICD9.items()] + [(c, 9, t) for c, t in UNUSED_ICD9.items()]
    rows += [(c, 10, t) for c, t in ICD10_TITLES.items()]
    rows += [(c, 10, t) for c, t in UNUSED_ICD10.items()]
    df = pl.DataFrame(rows, schema=["icd_code", "icd_version", "long_title"], orient="row")
    return finish(df.sort(["icd_version", "icd_code"]), "d_icd_diagnoses")
