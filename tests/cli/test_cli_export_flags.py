"""`lucid-ir export --print-flags`: a C program compiled in another directory with exactly the
printed flags links against the library and runs from a third directory."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import numpy as np
import pytest

import lucid
from lucid.cli import main, seed_model
from tests.conftest import c_compiler

pytestmark = pytest.mark.needs_cc

APP = r"""
#include <stdio.h>
#include "seed.h"

int main(void) {
    const float x[2][3] = {{0.5f, -1.2f, 3.3f}, {1.0f, 2.0f, -0.5f}};
    float y[2][2];
    const void *inputs[] = {x};
    void *outputs[] = {y};
    int err = seed_run(inputs, outputs, 2);
    if (err != seed_OK) {
        fprintf(stderr, "%s\n", seed_strerror(err));
        return 1;
    }
    for (int i = 0; i < 2; i++) printf("%.6f %.6f\n", y[i][0], y[i][1]);
    return 0;
}
"""


def test_printed_flags_build_and_run_a_c_consumer_from_elsewhere(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lib, app, elsewhere = (tmp_path / d for d in ("lib", "app", "elsewhere"))
    for d in (app, elsewhere):
        d.mkdir()
    assert main(["export", "seed", "--input", "Nx3", "-o", str(lib / "seed"), "--print-flags"]) == 0
    out, err = capsys.readouterr()
    flags = shlex.split(out)
    where = lib.resolve()
    assert flags == [f"-I{where}", f"-L{where}", "-l:seed.so", f"-Wl,-rpath,{where}"]
    assert f"{lib / 'seed'}.so" in err.splitlines()  # the paths written go to stderr

    (app / "app.c").write_text(APP)
    cc = shlex.split(str(c_compiler()))
    subprocess.run([*cc, "app.c", *flags, "-o", "app"], cwd=app, check=True)
    done = subprocess.run(
        [str(app / "app")], cwd=elsewhere, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr

    x = np.array([[0.5, -1.2, 3.3], [1.0, 2.0, -0.5]], np.float32)
    with lucid.no_grad():
        want = seed_model()(lucid.tensor(x)).data
    got = np.array([line.split() for line in done.stdout.splitlines()], np.float32)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
