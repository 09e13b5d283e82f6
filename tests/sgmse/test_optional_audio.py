"""Without the optional audio packages the speech tests skip with a reason and fail nothing:
pytest runs the tests that use them in a child process whose imports of pesq, pystoi,
soundfile and torchaudio fail (as on a machine without the ``audio`` extra)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
BLOCK = """
import sys, pytest
class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("pesq", "pystoi", "soundfile", "torchaudio"):
            raise ImportError(name + " is not installed (blocked by the test)")
sys.meta_path.insert(0, Blocker())
sys.exit(pytest.main(["-q", "-rs", "-p", "no:cacheprovider", "-W", "error::pytest.PytestDeprecationWarning",
                      *sys.argv[1:]]))
"""


@pytest.mark.slow
def test_speech_tests_skip_with_a_reason_without_the_audio_packages():
    files = [str(HERE / f) for f in ("test_metrics.py", "test_data.py", "test_enhance_cli.py")]
    out = subprocess.run([sys.executable, "-c", BLOCK, *files], capture_output=True, text=True, timeout=600,
                         cwd=HERE.parent.parent)
    text = out.stdout + out.stderr
    assert out.returncode == 0, text[-3000:]
    assert "failed" not in text and "error" not in text.lower().split("short test summary")[-1], text[-3000:]
    assert "SKIPPED" in text and "pip install diffusekit[audio]" in text, text[-3000:]
