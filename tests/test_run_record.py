"""The run record tables of the report: the effective configuration and the checkpoints."""

import hashlib
import json

from cinerecon.tables.run_record import config_rows, model_rows


def test_config_rows_flatten_every_leaf_with_dotted_keys():
    config = {"preset": "demo", "mae": {"pretrain": {"steps": 200}, "model": {}},
              "evaluation": {"splits": ["test"]}, "segmentation": {"checkpoint": None}}
    rows = dict(config_rows(config).itertuples(index=False))
    assert rows == {"preset": "demo", "mae.pretrain.steps": "200", "mae.model": "{}",
                    "evaluation.splits": '["test"]', "segmentation.checkpoint": "null"}
    assert json.loads(rows["evaluation.splits"]) == ["test"]


def test_model_rows_hash_the_weights(tmp_path):
    a, b = tmp_path / "a.pt", tmp_path / "b.pt"
    a.write_bytes(b"weights-a")
    b.write_bytes(b"weights-b" * 1000)
    table = model_rows({"seg": a, "mae_pretrained": b})
    assert list(table["model"]) == ["seg", "mae_pretrained"]
    assert table.loc[0, "sha256"] == hashlib.sha256(b"weights-a").hexdigest()
    assert table.loc[1, "bytes"] == 9000
    a.write_bytes(b"weights-A")  # another checkpoint: another hash
    assert model_rows({"seg": a}).loc[0, "sha256"] != table.loc[0, "sha256"]
