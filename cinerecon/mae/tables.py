"""The MAE's tables in the shapes of the paper's:

- mae_phenotypes (Table 1): one row per method (mean guess, ResNet, MAE), per phenotype
  the mean absolute error and its SD over the test subjects, against the reference (the
  synthetic truth; on a real cohort, the manual labels' phenotypes);
- mae_segmentation (Table 2): one row per structure, Dice mean (SD) per method; n/a where
  a method does not segment that view (the U-Net: SAX only);
- mae_robustness: per number of planes removed, the representation's cosine similarity to
  the all-planes one and the change of each predicted phenotype; and, for scale, the cosine
  between different subjects' representations.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from cinerecon.mae.data import TARGETS, UNITS
from cinerecon.tables.cohort import mean_sd

COLUMNS = {"phenotypes": ["subject", "method", "phenotype", "predicted", "reference", "abs_error", "reference_source"],
           "segmentation": ["subject", "method", "structure", "view", "dice"],
           "robustness": ["subject", "removed", "n_removed", "cosine"] + [f"delta_{n}" for n in TARGETS],
           "representation": ["subject"]}
PHENOTYPE_METHODS = ("mean_guess", "resnet", "mae")
SEGMENTATION_METHODS = ("directseg", "mae")
STRUCTURE_ORDER = ("LVC", "LVM", "RVC", "LA", "RA")


def phenotype_table(rows: pd.DataFrame) -> pd.DataFrame:
    out = []
    for method in [m for m in PHENOTYPE_METHODS if m in set(rows["method"])]:
        mine = rows[rows["method"] == method]
        row = {"method": method, "subjects": int(mine["subject"].nunique())}
        for name in TARGETS:
            row[f"{name} ({UNITS[name]})"] = mean_sd(mine.loc[mine["phenotype"] == name, "abs_error"], 3)
        out.append(row)
    sources = sorted(set(rows["reference_source"])) if len(rows) else []
    table = pd.DataFrame(out, columns=["method", "subjects"] + [f"{n} ({UNITS[n]})" for n in TARGETS])
    table.insert(2, "reference", "+".join(sources))
    return table


def segmentation_table(rows: pd.DataFrame) -> pd.DataFrame:
    out = []
    for structure in STRUCTURE_ORDER:
        mine = rows[rows["structure"] == structure]
        row = {"structure": structure}
        for method in SEGMENTATION_METHODS:
            values = mine.loc[mine["method"] == method, "dice"]
            row[method] = mean_sd(values, 3)
            row[f"{method} subjects"] = int(len(values))
        out.append(row)
    return pd.DataFrame(out, columns=["structure"] + [c for m in SEGMENTATION_METHODS for c in (m, f"{m} subjects")])


def robustness_table(rows: pd.DataFrame, representations: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per number of planes removed: cosine similarity to the subject's all-planes
    representation and the change of each predicted phenotype. The last row, `other
    subjects`, is the cosine between different subjects' all-planes representations: how
    close to 1 a cosine is anyway (mean-pooled tokens share a large common part)."""
    out = []
    for n in sorted(set(rows["n_removed"])) if len(rows) else []:
        mine = rows[rows["n_removed"] == n]
        row = {"planes removed": str(int(n)), "cases": len(mine), "subjects": int(mine["subject"].nunique()),
               "cosine": mean_sd(mine["cosine"], 4), "cosine min": f"{mine['cosine'].min():.4f}"}
        for name in TARGETS:
            row[f"|d {name}| ({UNITS[name]})"] = mean_sd(mine[f"delta_{name}"].abs(), 3)
        out.append(row)
    if representations is not None and len(representations) > 1:
        vectors = representations.drop(columns="subject").to_numpy(float)
        unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
        pairs = np.triu_indices(len(unit), k=1)
        cosines = (unit @ unit.T)[pairs]
        out.append({"planes removed": "other subjects", "cases": len(cosines), "subjects": len(unit),
                    "cosine": mean_sd(cosines, 4), "cosine min": f"{cosines.min():.4f}",
                    **{f"|d {n}| ({UNITS[n]})": "" for n in TARGETS}})
    return pd.DataFrame(out, columns=["planes removed", "cases", "subjects", "cosine", "cosine min"]
                        + [f"|d {n}| ({UNITS[n]})" for n in TARGETS])


def mae_tables(rows: dict) -> dict:
    """rows: {"phenotypes", "segmentation", "robustness"} long rows (cinerecon.mae.files);
    no rows (no test subject finished) gives tables without rows."""
    rows = {kind: frame if len(frame.columns) else pd.DataFrame(columns=COLUMNS[kind]) for kind, frame in rows.items()}
    return {"mae_phenotypes": phenotype_table(rows["phenotypes"]),
            "mae_segmentation": segmentation_table(rows["segmentation"]),
            "mae_robustness": robustness_table(rows["robustness"], rows.get("representation"))}
