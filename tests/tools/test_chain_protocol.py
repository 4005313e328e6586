"""run_qualiclip_experiments.sh PROTOCOL knob: checked before any stage runs."""

from __future__ import annotations

import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_unknown_protocol_stops_the_chain_before_any_stage(tmp_path: Path) -> None:
    proc = subprocess.run(["bash", str(REPO / "run_qualiclip_experiments.sh"), "--protocol",
                           "bogus", "--run_dir", str(tmp_path / "run")], cwd=REPO,
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2
    assert "error: PROTOCOL must be plan, hyperiqa or smart, got 'bogus'" in proc.stderr
    assert not (tmp_path / "run").exists()
