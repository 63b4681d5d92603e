"""The UTS training recipe's own loader reads our export with exact multi-hot targets (bench/uts_recipe_check.py).

Needs a checkout of github.com/AudenAI/Auden named by the AUDEN_CHECKOUT environment variable (no network here,
so the suite cannot fetch it); skipped with that reason otherwise.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import PROJECT

AUDEN = os.environ.get("AUDEN_CHECKOUT")


@pytest.mark.skipif(not AUDEN or not (Path(AUDEN) / "examples" / "uts" / "data_module.py").is_file(),
                    reason="AUDEN_CHECKOUT does not name a checkout of AudenAI/Auden (examples/uts/data_module.py)")
def test_the_recipes_loader_reads_every_cut_in_its_window_with_exact_targets():
    done = subprocess.run([sys.executable, "bench/uts_recipe_check.py", "--auden", AUDEN, "--json"], cwd=PROJECT,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["target_mismatches"] == [] and result["cuts_read_by_recipe"] >= 4
    assert result["dropped_by_recipe_window"] == ["mono_16k_wav"]  # the 0.6 s clip, as our export report says
