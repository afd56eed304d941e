"""Numba's on-disk cache: fastnn falls back to in-memory compilation when nothing is writable."""

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import fastnn

SCRIPT = """
import warnings
warnings.simplefilter("always")
import numpy as np
from fastnn import config
from fastnn.kernels import add_l2
params, grads = np.ones(5), np.ones(5)
add_l2(params, grads, 0, 5, -0.5)
print("cache", config.CACHE, "params", params.tolist())
"""


def run_with_package(pythonpath, tmp_path, **env_changes):
    env = dict(os.environ, PYTHONPATH=str(pythonpath), **env_changes)
    env.pop("FASTNN_CACHE", None)
    return subprocess.run([sys.executable, "-c", SCRIPT], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)


def test_no_writable_cache_directory_falls_back_to_memory(tmp_path):
    # A zipped package has no __pycache__ to write to; every other candidate directory
    # lies under /dev/null, which cannot hold directories, whoever runs the test.
    package = Path(fastnn.__file__).parent
    archive = tmp_path / "fastnn.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in package.rglob("*.py"):
            zf.write(path, path.relative_to(package.parent))
    result = run_with_package(archive, tmp_path, NUMBA_CACHE_DIR="/dev/null/numba",
                              HOME="/dev/null/home", XDG_CACHE_HOME="/dev/null/cache")
    assert result.returncode == 0, result.stderr
    assert "cache False params [0.5, 0.5, 0.5, 0.5, 0.5]" in result.stdout
    assert "no writable cache directory" in result.stderr


def test_writable_cache_directory_is_used(tmp_path):
    result = run_with_package(Path(fastnn.__file__).parent.parent, tmp_path,
                              NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    assert result.returncode == 0, result.stderr
    assert "cache True" in result.stdout and "no writable cache directory" not in result.stderr
