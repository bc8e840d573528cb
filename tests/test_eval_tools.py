"""eval/tools/cold_gate.py on the real data: the documented command runs, its choice is the
validation line's best, and its test rows are the protocol's users."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_cold_gate_chooses_on_validation_and_reports_the_protocol_users(
    ml_latest_small: Path, tmp_path: Path
):
    out = tmp_path / "cold-gate.json"
    subprocess.run(
        [
            sys.executable,
            "eval/tools/cold_gate.py",
            "--data",
            str(ml_latest_small),
            "--out",
            str(out),
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=600,
    )
    doc = json.loads(out.read_text())
    val = doc["validation"]
    line = val["gate_line_ndcg@10"]
    chosen = val["chosen"]
    c = "inf" if chosen["c"] == "inf" else float(chosen["c"])
    assert line[f"c={c} w={chosen['w']}"] == max(line.values())
    # w = 0 is the ID-only hybrid whatever the gate: one value, the best of the ID-only grid
    no_channel = {v for k, v in line.items() if k.endswith(" w=0.0")}
    assert no_channel == {max(val["id_line_ndcg@10"].values())}
    test = doc["test"]
    assert test["all"]["users"] == 610
    assert 0 < test["cold"]["users"] < 610
    for view in test.values():
        means = view["ndcg@10"]
        diff = view["gated - hybrid_id ndcg@10"]
        assert diff["users"] == view["users"]
        assert abs(diff["diff"] - (means["gated"] - means["hybrid_id"])) < 1e-4
        assert diff["ci95_low"] <= diff["diff"] <= diff["ci95_high"]
