"""Gemini-GAN's tables in the shape of the paper's Tables 2 and 3: one row per method,
Dice (LV cavity, LV myocardium, RV cavity) at ED and ES, then PSNR and SSIM at ED and ES,
each as mean (sd) over subjects, and the subject count."""

from __future__ import annotations

import pandas as pd

from cinerecon.superres.data import PHASES

METRICS = [("dice_LVC", "Dice LVC"), ("dice_LVM", "Dice LVM"), ("dice_RVC", "Dice RVC"), ("psnr", "PSNR"),
           ("ssim", "SSIM")]
ROW_COLUMNS = ["subject", "domain", "method", "phase", "metric", "value"]  # cinerecon.superres.stages
SUPER_RESOLUTION_ORDER = ["nn", "linear", "unet_seg", "unet_image", "gemini_gan"]
DOMAIN_ADAPTATION_ORDER = ["no_adaptation", "vama"]


def paper_table(rows: pd.DataFrame, order: list[str]) -> pd.DataFrame:
    """Long rows (subject, method, phase, metric, value) -> the paper's wide table; a method
    without a metric (an ablation without images or labels) shows n/a there."""
    out = []
    for method in [m for m in order if m in set(rows["method"])]:
        mine = rows[rows["method"] == method]
        row = {"method": method, "subjects": int(mine["subject"].nunique())}
        for metric, name in METRICS:
            for phase in PHASES:
                values = mine.loc[(mine["metric"] == metric) & (mine["phase"] == phase), "value"]
                row[f"{name} {phase}"] = f"{values.mean():.3f} ({values.std(ddof=0):.3f})" if len(values) else "n/a"
        out.append(row)
    columns = ["method", "subjects"] + [f"{name} {phase}" for _, name in METRICS for phase in PHASES]
    return pd.DataFrame(out, columns=columns)


def superres_tables(rows: pd.DataFrame) -> dict:
    """{"super_resolution": Table 2 on the target domain, "domain_adaptation": Table 3 on the source's}."""
    return {"super_resolution": paper_table(rows[rows["domain"] == "target"], SUPER_RESOLUTION_ORDER),
            "domain_adaptation": paper_table(rows[rows["domain"] == "source"], DOMAIN_ADAPTATION_ORDER)}
