"""Recompiles are visible and bounded (issue 14): a warning and a log record say which part of
the signature changed, and past the entry limit a module runs eagerly (or raises)."""

from __future__ import annotations

import contextlib
import logging
import warnings

import numpy as np
import pytest

import lucid
from lucid import nn
from lucid.errors import FallbackWarning, RecompileError, RecompileWarning


def _model() -> nn.Module:
    lucid.random.seed(0)
    return nn.Sequential(nn.Linear(3, 2), nn.HardSwish())


def _x(batch: int) -> lucid.Tensor:
    return lucid.Tensor(np.random.default_rng(batch).standard_normal((batch, 3)).astype(np.float32))


def test_a_new_batch_size_recompiles_with_a_warning_and_a_log_record(
    caplog: pytest.LogCaptureFixture,
) -> None:
    compiled = lucid.compile(_model(), backend="interpreter")
    with lucid.no_grad(), caplog.at_level(logging.INFO, logger="lucid"):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # the first call and a repeat say nothing
            compiled(_x(2))
            compiled(_x(2))
        with pytest.warns(RecompileWarning) as record:
            compiled(_x(5))
    text = str(record[0].message)
    assert text == (
        "recompiling Sequential.forward: input 0 shape changed (2, 3) -> (5, 3) (entry 2 of 8)"
    )
    assert record[0].filename == __file__  # the warning points at the caller's line
    assert text in caplog.text


def test_the_reason_names_mode_and_dtype_changes() -> None:
    model = _model()
    compiled = lucid.compile(model, backend="interpreter")
    with lucid.no_grad():
        compiled(_x(2))
        model.eval()
        with pytest.warns(RecompileWarning, match="train/eval mode changed train -> eval"):
            compiled(_x(2))
        # float64 input into float32 weights may raise: the error is not what is tested
        with (
            pytest.warns(RecompileWarning, match="input 0 dtype changed float32 -> float64"),
            contextlib.suppress(lucid.errors.LucidError),
        ):
            compiled(lucid.Tensor(np.ones((2, 3))))


def test_past_the_limit_new_signatures_run_eagerly_once_warned() -> None:
    model = _model()
    compiled = lucid.compile(model, backend="interpreter", options={"max_entries": 2})
    with lucid.no_grad():
        compiled(_x(1))
        with pytest.warns(RecompileWarning):
            compiled(_x(2))
        with pytest.warns(FallbackWarning, match="2 compiled entries, the limit"):
            out = compiled(_x(3))
        np.testing.assert_array_equal(out.data, model(_x(3)).data)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # warned once; compiled signatures still run
            np.testing.assert_array_equal(compiled(_x(4)).data, model(_x(4)).data)
            compiled(_x(1))
    assert len(compiled.signatures) == 2


def test_fullgraph_raises_instead_of_falling_back() -> None:
    compiled = lucid.compile(
        _model(), backend="interpreter", options={"max_entries": 1, "fullgraph": True}
    )
    with lucid.no_grad():
        compiled(_x(1))
        with pytest.raises(RecompileError, match="fullgraph=True forbids running it eagerly"):
            compiled(_x(2))


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"max_entries": 0}, ValueError),
        ({"max_entries": True}, ValueError),
        ({"fullgraph": 1}, TypeError),
    ],
)
def test_bad_limits_are_refused(options: dict, error: type) -> None:
    with pytest.raises(error):
        lucid.compile(_model(), options=options)
