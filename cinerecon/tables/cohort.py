"""Cohort aggregation of per-subject evaluation rows into the papers' tables.

Inputs are long-form DataFrames (one row per subject x method x ... ), so a
cohort of thousands of subjects is one concat away. Every statistic is
nan-aware: an undefined Dice or a missing surface distance (NaN, see
:mod:`cinerecon.metrics`) is skipped and counted in the numeric tables
(``n_nan``) instead of turning a whole cohort mean into NaN.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..io.files import atomic_path
from ..labels import LAX_VIEWS, SAX_LABELS
from ..phenotypes import PHENOTYPE_COLUMNS, PHENOTYPE_UNITS

TRUTH_METRICS = ("dice", "hd95", "assd")
SPLITS = ("train", "val", "test")


# ---------------------------------------------------------------- statistics
def summarize(values) -> tuple[float, float, int, int]:
    """(mean, sd with ddof=1, n finite, n NaN) of ``values``; sd is NaN below two values."""
    x = np.asarray(values, dtype=float).ravel()
    finite = x[~np.isnan(x)]
    n = finite.size
    mean = float(finite.mean()) if n else float("nan")
    sd = float(finite.std(ddof=1)) if n > 1 else float("nan")
    return mean, sd, int(n), int(x.size - n)


def mean_sd(series, digits: int = 3) -> str:
    """"0.912 (0.031)" as the papers print it; "x (-)" for one value, "n/a" for none."""
    mean, sd, n, _ = summarize(series)
    if n == 0:
        return "n/a"
    if n == 1:
        return f"{mean:.{digits}f} (-)"
    return f"{mean:.{digits}f} ({sd:.{digits}f})"


def _method_order(rows: pd.DataFrame, method_order=None) -> list[str]:
    """Methods in order of first appearance, or the caller's order (methods absent from rows dropped)."""
    present = list(dict.fromkeys(rows["method"]))
    if method_order is None:
        return present
    return [m for m in method_order if m in set(present)]


def _require(rows: pd.DataFrame, columns, what: str) -> None:
    missing = [c for c in columns if c not in rows.columns]
    if missing:
        raise KeyError(f"{what} rows lack columns {missing}; have {list(rows.columns)}")


# ---------------------------------------------------------------- LAX Dice (Table 2)
# The two LAX-Dice protocols (cinerecon.metrics.lax): the row column each reads, and the
# name its tables carry in their `protocol` column.
LAX_PROTOCOLS = {"covered": "dice", "whole": "dice_full"}


def _lax_values(rows: pd.DataFrame, structure: str, column: str) -> dict[tuple[str, str], pd.Series]:
    """{(method, column): Dice values over subjects x phases} for columns average + views.

    Rows written before a protocol's column existed count as missing values (n/a)."""
    _require(rows, ["subject", "method", "phase", "view", "structure", "dice"], "LAX")
    sub = rows[rows["structure"] == structure]
    if column not in sub.columns:
        sub = sub.assign(**{column: np.nan})
    # average: each subject/phase first averages its (defined) views, then the cohort is summarised
    per_case = sub.groupby(["method", "subject", "phase"], sort=False)[column].mean()
    out = {}
    for method, group in sub.groupby("method", sort=False):
        out[(method, "average")] = per_case.loc[method]
        for view in LAX_VIEWS:
            out[(method, view)] = group.loc[group["view"] == view, column]
    return out


def lax_dice_table(rows: pd.DataFrame, structure: str = "LVC", method_order=None, digits: int = 3,
                   protocol: str = "covered") -> pd.DataFrame:
    """Table 2 of the papers: per method, "mean (sd)" Dice of the LAX intersections, average and
    per view, in one protocol (LAX_PROTOCOLS: `covered` masks what the SAX stack leaves
    uncovered, `whole` is the papers'), which the table's `protocol` column names."""
    values = _lax_values(rows, structure, LAX_PROTOCOLS[protocol])
    methods = _method_order(rows[rows["structure"] == structure], method_order)
    columns = ["average", *LAX_VIEWS]
    table = pd.DataFrame(
        [[mean_sd(values[(m, c)], digits) for c in columns] for m in methods],
        index=pd.Index(methods, name="method"), columns=columns,
    )
    table.insert(0, "protocol", protocol)
    return table


def lax_dice_numeric(rows: pd.DataFrame, structure: str = "LVC", method_order=None) -> pd.DataFrame:
    """Machine-readable Table 2, one row per (method, protocol): ``{col}_mean``, ``{col}_sd``,
    ``{col}_n``, ``{col}_n_nan``."""
    methods = _method_order(rows[rows["structure"] == structure], method_order)
    records, index = [], []
    for protocol, column in LAX_PROTOCOLS.items():
        values = _lax_values(rows, structure, column)
        for m in methods:
            record = {}
            for c in ["average", *LAX_VIEWS]:
                mean, sd, n, n_nan = summarize(values[(m, c)])
                record.update({f"{c}_mean": mean, f"{c}_sd": sd, f"{c}_n": n, f"{c}_n_nan": n_nan})
            records.append(record)
            index.append((m, protocol))
    return pd.DataFrame(records, index=pd.MultiIndex.from_tuples(index, names=["method", "protocol"]))


# ---------------------------------------------------------------- truth metrics
def _truth_columns(rows: pd.DataFrame, metrics) -> tuple[list[str], list[str]]:
    _require(rows, ["subject", "method", "phase", "structure"], "truth")
    metrics = [m for m in (metrics or TRUTH_METRICS) if m in rows.columns]
    known = [s for s in SAX_LABELS.values() if s in set(rows["structure"])]
    others = [s for s in dict.fromkeys(rows["structure"]) if s not in known]
    return metrics, known + others


def truth_metrics_table(rows: pd.DataFrame, method_order=None, metrics=None, digits: int = 3) -> pd.DataFrame:
    """Per method, "mean (sd)" over subjects x phases in flat columns ``{metric}_{structure}`` (structure-major)."""
    metrics, structures = _truth_columns(rows, metrics)
    methods = _method_order(rows, method_order)
    groups = {key: g for key, g in rows.groupby(["method", "structure"], sort=False)}
    data = {}
    for s in structures:
        for metric in metrics:
            data[f"{metric}_{s}"] = [
                mean_sd(groups[(m, s)][metric], digits) if (m, s) in groups else "n/a" for m in methods
            ]
    return pd.DataFrame(data, index=pd.Index(methods, name="method"))


def truth_metrics_numeric(rows: pd.DataFrame, method_order=None, metrics=None) -> pd.DataFrame:
    """Long form: method, structure, metric, mean, sd, n, n_nan (for machines and plots)."""
    metrics, structures = _truth_columns(rows, metrics)
    groups = {key: g for key, g in rows.groupby(["method", "structure"], sort=False)}
    records = []
    for m in _method_order(rows, method_order):
        for s in structures:
            for metric in metrics:
                values = groups[(m, s)][metric] if (m, s) in groups else []
                mean, sd, n, n_nan = summarize(values)
                records.append(dict(method=m, structure=s, metric=metric, mean=mean, sd=sd, n=n, n_nan=n_nan))
    return pd.DataFrame(records, columns=["method", "structure", "metric", "mean", "sd", "n", "n_nan"])


# ---------------------------------------------------------------- phenotype agreement
def paired_phenotypes(rows: pd.DataFrame, method: str, reference: str, phenotype: str) -> tuple[np.ndarray, np.ndarray]:
    """(method values, reference values) for subjects where both are finite, in subject order.

    Pairing by subject (never by row position) so a subject that failed for one method
    drops out of that comparison only. A subject listed twice for one method is an error.
    """
    pair = []
    for name in (method, reference):
        part = rows.loc[rows["method"] == name, ["subject", phenotype]]
        duplicated = part["subject"][part["subject"].duplicated()]
        if len(duplicated):
            raise ValueError(f"method {name!r} has several rows for subjects {sorted(set(duplicated))}")
        pair.append(part.set_index("subject")[phenotype].astype(float))
    both = pd.concat(pair, axis=1, keys=["m", "r"], join="inner").dropna().sort_index()
    return both["m"].to_numpy(), both["r"].to_numpy()


def agreement_stats(values, reference) -> dict[str, float]:
    """Bland–Altman bias, sd of differences, 95% limits of agreement, MAE and Pearson r."""
    m, r = np.asarray(values, dtype=float), np.asarray(reference, dtype=float)
    diff = m - r
    n = diff.size
    bias = float(diff.mean()) if n else float("nan")
    sd = float(diff.std(ddof=1)) if n > 1 else float("nan")
    corr = float("nan")
    if n > 1 and m.std() > 0 and r.std() > 0:
        corr = float(np.corrcoef(m, r)[0, 1])
    return dict(
        n=int(n), bias=bias, sd=sd, loa_low=bias - 1.96 * sd, loa_high=bias + 1.96 * sd,
        mae=float(np.abs(diff).mean()) if n else float("nan"), r=corr,
    )


AGREEMENT_COLUMNS = ["method", "phenotype", "unit", "n", "bias", "sd", "loa_low", "loa_high", "mae", "r"]


def phenotype_agreement(rows: pd.DataFrame, reference: str = "truth", phenotypes=None, method_order=None) -> pd.DataFrame:
    """Agreement of every method with ``reference`` per phenotype, long form (AGREEMENT_COLUMNS)."""
    _require(rows, ["subject", "method"], "phenotype")
    if reference not in set(rows["method"]):
        raise ValueError(f"reference method {reference!r} not in rows (methods: {sorted(set(rows['method']))})")
    if phenotypes is None:
        phenotypes = [p for p in PHENOTYPE_COLUMNS if p in rows.columns]
    _require(rows, phenotypes, "phenotype")
    records = []
    for method in _method_order(rows, method_order):
        if method == reference:
            continue
        for p in phenotypes:
            stats = agreement_stats(*paired_phenotypes(rows, method, reference, p))
            records.append(dict(method=method, phenotype=p, unit=PHENOTYPE_UNITS.get(p, ""), **stats))
    return pd.DataFrame(records, columns=AGREEMENT_COLUMNS)


# ---------------------------------------------------------------- I/O
def markdown_table(frame: pd.DataFrame) -> str:
    """Markdown pipe table through tabulate (pandas' to_markdown), with `|` and line breaks
    inside cells escaped (tabulate leaves them, which would split a cell)."""
    def cell(v):
        return v.replace("|", "\\|").replace("\n", " ") if isinstance(v, str) else v

    escaped = frame.map(cell).rename(columns=lambda c: cell(str(c)))
    return escaped.to_markdown(index=False)


def _flat(frame: pd.DataFrame) -> pd.DataFrame:
    """Index moved into columns (so `method` survives) and MultiIndex columns joined with '_'."""
    out = frame.copy()
    if isinstance(out.columns, pd.MultiIndex):
        out.columns = ["_".join(str(level) for level in col if str(level)) for col in out.columns]
    named = any(name is not None for name in out.index.names)
    if named or not isinstance(out.index, pd.RangeIndex):
        out = out.reset_index()
    out.columns = [str(c) for c in out.columns]
    return out


def with_split(table: pd.DataFrame, rows: pd.DataFrame, splits: dict | None) -> pd.DataFrame:
    """`table` (flattened) with a `split` column from `splits` ({subject: train|val|test}).

    A table of per-subject rows gets each row's split (after `subject`); a per-method table
    the splits its method's `rows` cover, joined with "+" in train, val, test order (after
    `method`), e.g. "val+test" when both are evaluated and "test" for DirectSeg, which is
    judged on test subjects only. splits None: `table` unchanged (flattened).
    """
    out = _flat(table)
    if splits is None or "split" in out.columns:
        return out
    if "subject" in out.columns:
        out.insert(out.columns.get_loc("subject") + 1, "split", out["subject"].astype(str).map(splits))
    elif "method" in out.columns:
        covered = {}
        if len(rows) and {"subject", "method"} <= set(rows.columns):
            split = rows["subject"].astype(str).map(splits)
            for method, values in split.groupby(rows["method"], sort=False):
                present = set(values.dropna())
                covered[method] = "+".join([s for s in SPLITS if s in present] + sorted(present - set(SPLITS)))
        out.insert(out.columns.get_loc("method") + 1, "split", out["method"].map(covered))
    return out


TABLE_FORMATS = ("parquet", "csv", "md", "html")
_HTML_STYLE = (
    "body{font-family:system-ui,sans-serif;font-size:14px;margin:12px}"
    "table{border-collapse:collapse}th,td{padding:3px 10px;border-bottom:1px solid #ddd;text-align:right}"
    "th{background:#f1f5f9;position:sticky;top:0}td:first-child,th:first-child{text-align:left}"
)


def html_table(frame: pd.DataFrame, title: str) -> str:
    """A standalone HTML page holding the table (what Snakemake's report shows inline)."""
    body = frame.to_html(index=False, na_rep="", border=0, escape=True)
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{title}</title>"
            f"<style>{_HTML_STYLE}</style></head>\n<body>\n{body}\n</body></html>\n")


def write_table(frame: pd.DataFrame, stem) -> list[Path]:
    """Write ``{stem}.parquet``, ``.csv``, ``.md`` and ``.html`` (for the report) atomically;
    returns the four paths."""
    flat = _flat(frame)
    paths = [Path(f"{stem}.{ext}") for ext in TABLE_FORMATS]
    with atomic_path(paths[0]) as tmp:
        flat.to_parquet(tmp, index=False)
    with atomic_path(paths[1]) as tmp:
        flat.to_csv(tmp, index=False)
    with atomic_path(paths[2]) as tmp:
        tmp.write_text(markdown_table(flat) + "\n")
    with atomic_path(paths[3]) as tmp:
        tmp.write_text(html_table(flat, paths[3].stem))
    return paths


def read_rows(paths) -> pd.DataFrame:
    """Concatenate per-subject parquet row files; no files gives an empty frame."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    frames = [pd.read_parquet(p) for p in paths]
    frames = [f for f in frames if len(f.columns)]
    if not frames:
        return pd.DataFrame()
    return pd.concat(frames, ignore_index=True)
