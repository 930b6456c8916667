"""What a notebook shows for an IR graph and a compiled module (issue 19)."""

from __future__ import annotations

import shutil
from pathlib import Path
from xml.etree import ElementTree

import numpy as np
import pytest

import lucid
from lucid import nn
from lucid.ir import trace
from lucid.ir.parser import parse
from lucid.ir.passes import default_pipeline
from lucid.ir.passes.manager import run_passes

TEXT = """graph @g(%x: f32[N,3]) -> (f32[N,3]) {
  %0 = relu %x : f32[N,3]
  return %0
}
"""


def test_a_graph_shows_its_text_form_without_graphviz(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    bundle = parse(TEXT)._repr_mimebundle_()
    assert "image/svg+xml" not in bundle
    assert bundle["text/html"].startswith("<pre>graph @g(%x: f32[N,3])")
    assert bundle["text/plain"].startswith("<Graph @g")


def test_a_graph_is_drawn_by_dot_when_installed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stand-in `dot` that records its input (the DOT text) and answers with an SVG."""
    fake = tmp_path / "dot"
    fake.write_text(f'#!/bin/sh\n/bin/cat > {tmp_path}/in.dot\necho "<svg>drawn</svg>"\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    bundle = parse(TEXT)._repr_mimebundle_()
    assert bundle["image/svg+xml"].strip() == "<svg>drawn</svg>"
    assert "relu" in (tmp_path / "in.dot").read_text()


@pytest.mark.needs_cc
def test_a_compiled_module_shows_its_signatures_builds_and_where_the_c_is() -> None:
    compiled = lucid.compile(nn.Sequential(nn.Linear(3, 4), nn.HardSwish()))
    assert "nothing compiled yet" in compiled._repr_html_()
    compiled(np.ones((2, 3), np.float32)).sum().backward()
    page = compiled._repr_html_()
    assert page.count("<tr><td>") == 2  # forward and backward of one signature
    assert "(f32[2,3]) train grad(params)" in page and "backward" in page
    info = compiled.build_info
    assert info is not None and str(info.path.parent) in page


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's `dot` is not installed")
def test_graphviz_draws_a_fused_graph_as_well_formed_svg() -> None:
    """The real `dot`, on a graph after the default pipeline (a fused node with a body): the
    picture is an SVG document that labels the node and the ops of its body."""
    model = nn.Sequential(nn.Linear(3, 4), nn.HardSwish(), nn.Linear(4, 2))
    traced = trace(model, [np.ones((1, 3), np.float32)])
    graph = run_passes(traced, default_pipeline())
    assert [n.op for n in graph.nodes] == ["fused_gemm", "linear"]  # linear+hardswish fused
    svg = ElementTree.fromstring(graph._repr_mimebundle_()["image/svg+xml"])
    assert svg.tag == "{http://www.w3.org/2000/svg}svg"
    texts = " ".join(t.text or "" for t in svg.iter("{http://www.w3.org/2000/svg}text"))
    for op in ("fused_gemm", "linear", "hardswish"):
        assert op in texts, (op, texts)
