"""The peers of run_all's model rows compute lucid's function: the JAX twins (peers/jax_models.py),
the PyTorch twins and the ONNX export of them, on the tiny shapes, each checked by the row check
run_all itself uses (forward output; the parameters after one SGD step)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest


@pytest.fixture
def bench(bench_imports):
    """run_all and the workloads, imported from benchmarks/."""
    import run_all
    from workloads import TINY, make_data

    return SimpleNamespace(run_all=run_all, TINY=TINY, make_data=make_data)


def _rows(bench, system, name: str) -> dict[str, dict]:
    """run_all's record of `system` on every mode of the tiny workload `name`."""
    w = bench.TINY[name]
    d = bench.make_data(w)
    args = SimpleNamespace(quick=True)
    out = {}
    for mode in w.modes:
        ref = bench.run_all.reference_for(w, d, mode)
        out[mode] = bench.run_all.run_system(system, w, d, mode, ref, args)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("name", ["gpt", "mnv3-b32"])
def test_jax_twins_match_lucid_eager(bench, name: str) -> None:
    pytest.importorskip("jax")
    from peers.jax_system import JaxJit

    for mode, rec in _rows(bench, JaxJit(), name).items():
        assert rec["status"] == "ok", (mode, rec)
        if mode == "train":  # the update itself is compared, so it must not be ~0
            assert rec["check"]["rel_to_update"] < 5e-2


@pytest.mark.slow
@pytest.mark.parametrize("name", ["gpt", "mnv3-b32"])
def test_torch_twins_and_onnx_export_match_lucid_eager(bench, name: str) -> None:
    pytest.importorskip("torch")
    from peers.torch_systems import TorchEager

    for mode, rec in _rows(bench, TorchEager(1), name).items():
        assert rec["status"] == "ok", (mode, rec)
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from peers.onnxrt import OnnxRuntime

    rows = _rows(bench, OnnxRuntime(1), name)
    assert rows["forward"]["status"] == "ok", rows["forward"]
    if "train" in rows:
        assert rows["train"]["status"].startswith("not available: forward only")


@pytest.mark.slow
def test_a_wrong_peer_is_a_mismatch(bench) -> None:
    pytest.importorskip("jax")
    from peers import jax_models
    from peers.jax_system import JaxJit

    real = jax_models.gpt_forward

    def no_positions(p, idx, n_layer, n_head):
        """A plausible bug: the position embedding left out (its gradient is then zero)."""
        wpe = "transformer.wpe.weight"
        return real({**p, wpe: p[wpe] * 0}, idx, n_layer, n_head)

    try:
        jax_models.gpt_forward = no_positions
        rows = _rows(bench, JaxJit(), "gpt")
    finally:
        jax_models.gpt_forward = real
    assert rows["forward"]["status"] == "MISMATCH" and rows["train"]["status"] == "MISMATCH"
