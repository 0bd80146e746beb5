"""Start-up: the pipeline's stages that build no model never import torch or torchvision (each DVC
stage is a fresh process; ``bench/bench_startup.py`` times them)."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("bench_startup", ROOT / "bench" / "bench_startup.py")
_bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_bench)
MODEL_FREE = _bench.MODEL_FREE  # the stages the benchmark times as model-free


@pytest.mark.parametrize("entry", MODEL_FREE)
def test_a_stage_without_a_model_imports_no_torch(entry):
    code = (f"import sys, pipelines.{entry}; heavy = sorted(m for m in ('torch', 'torchvision') if m in sys.modules); "
            "print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "", f"pipelines.{entry} imports {out.strip()}"


def test_a_stage_with_a_model_still_gets_torch():  # the check above can see an import at all
    code = "import sys, pipelines.train; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout.strip() == "True"
