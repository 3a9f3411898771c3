"""Cohort tables: known-answer statistics, ordering, NaN handling and file round trips."""

import math

import numpy as np
import pandas as pd
import pytest

from cinerecon.phenotypes import PHENOTYPE_COLUMNS
from cinerecon.tables import (
    AGREEMENT_COLUMNS,
    lax_dice_numeric,
    lax_dice_table,
    markdown_table,
    mean_sd,
    phenotype_agreement,
    read_rows,
    truth_metrics_numeric,
    truth_metrics_table,
    write_table,
)

NAN = float("nan")


def lax_rows(dice_by_method, structure="LVC", phase="ED"):
    """{method: {subject: (d2ch, d3ch, d4ch)}} -> long-form LAX rows."""
    rows = []
    for method, subjects in dice_by_method.items():
        for subject, dices in subjects.items():
            for view, d in zip(("2ch", "3ch", "4ch"), dices):
                rows.append(dict(subject=subject, method=method, phase=phase, view=view, structure=structure,
                                 dice=d, coverage=1.0, n_ref_pixels=100))
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- mean_sd
def test_mean_sd_known_answers():
    assert mean_sd([0.9, 0.8]) == "0.850 (0.071)"  # sd = sqrt(2 * 0.05^2 / 1)
    assert mean_sd(pd.Series([0.9, NAN, 0.8])) == "0.850 (0.071)"
    assert mean_sd([0.9, 0.8], digits=2) == "0.85 (0.07)"
    assert mean_sd([0.5]) == "0.500 (-)"
    assert mean_sd([0.5, NAN]) == "0.500 (-)"
    assert mean_sd([NAN, NAN]) == "n/a"
    assert mean_sd([]) == "n/a"


# ---------------------------------------------------------------- LAX Dice table
def test_lax_dice_table_known_answer_and_order():
    rows = lax_rows({
        "sdf": {"A": (0.9, 0.8, 0.7), "B": (0.7, 0.6, 0.5)},
        "nn": {"A": (0.5, 0.5, 0.5), "B": (0.3, 0.3, 0.3)},
    })
    rows = pd.concat([rows, lax_rows({"sdf": {"A": (0.1, 0.1, 0.1)}}, structure="RVC")], ignore_index=True)
    table = lax_dice_table(rows, "LVC")
    assert list(table.index) == ["sdf", "nn"]  # first appearance, not alphabetical
    assert table.index.name == "method"
    assert list(table.columns) == ["protocol", "average", "2ch", "3ch", "4ch"]
    assert set(table["protocol"]) == {"covered"}
    # per-subject averages 0.8 and 0.6 -> 0.7 (sd sqrt(0.02) = 0.141)
    assert table.loc["sdf"].tolist()[1:] == ["0.700 (0.141)", "0.800 (0.141)", "0.700 (0.141)", "0.600 (0.141)"]
    assert table.loc["nn", "average"] == "0.400 (0.141)"
    assert list(lax_dice_table(rows, method_order=["nn", "sdf", "cpd"]).index) == ["nn", "sdf"]
    assert lax_dice_table(rows, "RVC").loc["sdf"].tolist()[1:] == ["0.100 (-)"] * 4


def test_lax_dice_tables_in_both_protocols():
    rows = lax_rows({"nn": {"A": (0.9, 0.8, 0.7), "B": (0.7, 0.6, 0.5)}})
    rows["dice_full"] = rows["dice"] - 0.1  # what the stack leaves uncovered costs 0.1
    whole = lax_dice_table(rows, protocol="whole")
    assert whole.loc["nn", "protocol"] == "whole" and whole.loc["nn", "average"] == "0.600 (0.141)"
    assert lax_dice_table(rows).loc["nn", "average"] == "0.700 (0.141)"
    numeric = lax_dice_numeric(rows)
    assert list(numeric.index) == [("nn", "covered"), ("nn", "whole")]
    assert numeric["average_mean"].tolist() == pytest.approx([0.7, 0.6])
    # rows from before the whole protocol existed: its table and rows say n/a, not fail
    old = rows.drop(columns="dice_full")
    assert lax_dice_table(old, protocol="whole").loc["nn", "average"] == "n/a"
    assert np.isnan(lax_dice_numeric(old).loc[("nn", "whole"), "average_mean"])


def test_lax_dice_average_pools_phases_and_skips_nan_views():
    ed = lax_rows({"linear": {"A": (0.9, 0.8, 0.7), "B": (0.7, 0.6, NAN)}})
    es = lax_rows({"linear": {"A": (0.5, 0.5, 0.5)}}, phase="ES")
    rows = pd.concat([ed, es], ignore_index=True)
    numeric = lax_dice_numeric(rows).loc[("linear", "covered")]
    # cases: A/ED 0.8, B/ED mean(0.7, 0.6) = 0.65, A/ES 0.5
    assert numeric["average_mean"] == pytest.approx((0.8 + 0.65 + 0.5) / 3)
    assert numeric["average_sd"] == pytest.approx(np.std([0.8, 0.65, 0.5], ddof=1))
    assert numeric["4ch_mean"] == pytest.approx(0.6)
    assert numeric["4ch_n"] == 2 and numeric["4ch_n_nan"] == 1
    assert lax_dice_table(rows).loc["linear", "4ch"] == "0.600 (0.141)"


def test_lax_dice_table_all_nan_view():
    rows = lax_rows({"cpd": {"A": (0.9, NAN, 0.7), "B": (0.7, NAN, 0.5)}})
    table = lax_dice_table(rows)
    assert table.loc["cpd", "3ch"] == "n/a"
    assert table.loc["cpd", "average"] == "0.700 (0.141)"


# ---------------------------------------------------------------- truth metrics
def test_truth_metrics_table():
    rows = pd.DataFrame([
        dict(subject=s, method=m, phase="ED", structure=st, dice=d, hd95=h, assd=a)
        for s, m, st, d, h, a in [
            ("A", "nn", "RVC", 0.5, 9.0, 3.0), ("A", "nn", "LVC", 0.9, 2.0, 1.0), ("B", "nn", "LVC", 0.8, 4.0, NAN),
            ("A", "sdf", "LVC", 0.95, 1.0, 0.5),
        ]
    ])
    table = truth_metrics_table(rows)
    assert list(table.index) == ["nn", "sdf"]
    # structures in label order (LVC before RVC), metrics within each structure
    assert list(table.columns) == ["dice_LVC", "hd95_LVC", "assd_LVC", "dice_RVC", "hd95_RVC", "assd_RVC"]
    assert table.loc["nn", "dice_LVC"] == "0.850 (0.071)"
    assert table.loc["nn", "hd95_LVC"] == "3.000 (1.414)"
    assert table.loc["nn", "assd_LVC"] == "1.000 (-)"
    assert table.loc["sdf", "dice_RVC"] == "n/a"
    numeric = truth_metrics_numeric(rows).set_index(["method", "structure", "metric"])
    assert numeric.loc[("nn", "LVC", "assd"), "n_nan"] == 1
    assert numeric.loc[("nn", "LVC", "hd95"), "mean"] == pytest.approx(3.0)
    assert numeric.loc[("sdf", "RVC", "dice"), "n"] == 0


# ---------------------------------------------------------------- phenotype agreement
def phenotype_rows():
    truth = {"A": 100.0, "B": 120.0, "C": 140.0}
    method = {"C": 146.0, "A": 102.0, "B": 118.0, "D": 90.0}  # shuffled; D has no truth
    labels = {"A": 101.0, "B": NAN, "C": 139.0}
    rows = []
    for name, values in (("cpd", method), ("truth", truth), ("labels", labels)):
        for subject, v in values.items():
            row = {p: 50.0 for p in PHENOTYPE_COLUMNS}
            row.update(subject=subject, method=name, LVEDV=v)
            rows.append(row)
    return pd.DataFrame(rows)


def test_phenotype_agreement_by_hand():
    table = phenotype_agreement(phenotype_rows(), reference="truth")
    assert list(table.columns) == AGREEMENT_COLUMNS
    assert list(dict.fromkeys(table["method"])) == ["cpd", "labels"]
    assert list(table.loc[table["method"] == "cpd", "phenotype"]) == list(PHENOTYPE_COLUMNS)
    row = table.set_index(["method", "phenotype"]).loc[("cpd", "LVEDV")]
    # differences 2, -2, 6 (subject D unpaired): bias 2, sd 4, LoA 2 -/+ 7.84, MAE 10/3
    assert row["unit"] == "mL" and row["n"] == 3
    assert row["bias"] == pytest.approx(2.0)
    assert row["sd"] == pytest.approx(4.0)
    assert row["loa_low"] == pytest.approx(-5.84)
    assert row["loa_high"] == pytest.approx(9.84)
    assert row["mae"] == pytest.approx(10 / 3)
    assert row["r"] == pytest.approx(880 / math.sqrt(992 * 800))
    labels = table.set_index(["method", "phenotype"]).loc[("labels", "LVEDV")]
    assert labels["n"] == 2 and labels["bias"] == pytest.approx(0.0)  # NaN subject B dropped
    # constant phenotypes: zero differences, r undefined
    lvm = table.set_index(["method", "phenotype"]).loc[("cpd", "LVM")]
    assert lvm["unit"] == "g" and lvm["bias"] == 0.0 and lvm["sd"] == 0.0 and np.isnan(lvm["r"])


def test_phenotype_agreement_errors_and_single_pair():
    rows = phenotype_rows()
    with pytest.raises(ValueError, match="reference method 'gt'"):
        phenotype_agreement(rows, reference="gt")
    with pytest.raises(ValueError, match="several rows"):
        phenotype_agreement(pd.concat([rows, rows.iloc[:1]]), reference="truth")
    one = rows[rows["subject"].isin(["A", "D"])]
    row = phenotype_agreement(one, phenotypes=["LVEDV"], method_order=["cpd"]).iloc[0]
    assert row["n"] == 1 and row["bias"] == 2.0 and np.isnan(row["sd"]) and np.isnan(row["loa_low"])


# ---------------------------------------------------------------- files
def test_write_table_round_trips(tmp_path):
    rows = lax_rows({"sdf": {"A": (0.9, 0.8, 0.7), "B": (0.7, 0.6, NAN)}, "nn": {"A": (0.5, 0.4, 0.3)}})
    table = lax_dice_table(rows)
    paths = write_table(table, tmp_path / "out" / "lax_dice_LVC")
    assert [p.name for p in paths] == [f"lax_dice_LVC.{ext}" for ext in ("parquet", "csv", "md", "html")]
    expected = table.reset_index()
    pd.testing.assert_frame_equal(pd.read_parquet(paths[0]), expected, check_dtype=False)
    pd.testing.assert_frame_equal(pd.read_csv(paths[1]), expected, check_dtype=False)
    md = paths[2].read_text()
    assert md.splitlines()[0].startswith("| method") and "0.700 (0.141)" in md and "| nn " in md
    html = paths[3].read_text()  # what the report shows
    assert html.startswith("<!DOCTYPE html>") and html.count("<tr") == len(expected) + 1
    assert all(f"<th>{c}</th>" in html for c in expected.columns) and "<td>0.700 (0.141)</td>" in html
    numeric = lax_dice_numeric(rows)
    write_table(numeric, tmp_path / "num")
    back = pd.read_parquet(tmp_path / "num.parquet").set_index(["method", "protocol"])
    pd.testing.assert_frame_equal(back, numeric, check_dtype=False)
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "num.csv").set_index(["method", "protocol"]), numeric,
                                  check_dtype=False)
    # long-form tables (RangeIndex) are written without an extra index column
    agreement = phenotype_agreement(phenotype_rows())
    write_table(agreement, tmp_path / "agree")
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "agree.parquet"), agreement, check_dtype=False)
    assert not [p for p in tmp_path.rglob(".*")]  # no temporary files left behind


def test_markdown_table_through_tabulate_escapes_pipes_in_cells():
    frame = pd.DataFrame({"method": ["nn", "a|b"], "2ch": ["0.9 (0.1)", "n/a"], "n": [12, 3]})
    assert markdown_table(frame).splitlines() == [
        "| method   | 2ch       |   n |",
        "|:---------|:----------|----:|",
        "| nn       | 0.9 (0.1) |  12 |",
        "| a\\|b     | n/a       |   3 |",
    ]


def test_read_rows(tmp_path):
    assert read_rows([]).empty
    a = lax_rows({"nn": {"A": (0.9, 0.8, 0.7)}})
    b = lax_rows({"nn": {"B": (0.6, 0.5, 0.4)}})
    a.to_parquet(tmp_path / "a.parquet")
    b.to_parquet(tmp_path / "b.parquet")
    rows = read_rows([tmp_path / "a.parquet", str(tmp_path / "b.parquet")])
    assert len(rows) == 6 and list(rows["subject"]) == ["A"] * 3 + ["B"] * 3
    assert list(rows.index) == list(range(6))
