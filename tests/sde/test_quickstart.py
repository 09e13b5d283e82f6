"""End-to-end quickstart (slow: trains for real)."""

import pytest


@pytest.mark.slow
def test_quickstart_end_to_end(tmp_path):
    from diffusekit.quickstart import run

    res = run(out=str(tmp_path / "qs"), steps=3000, n=2000, onnx=False)
    assert (tmp_path / "qs" / "samples.png").exists()
    assert (tmp_path / "qs" / "config.json").exists()
    # 8 separated clusters, not a ring: within a few times the data-vs-data floor
    assert res["mmd"] < 0.01, res
