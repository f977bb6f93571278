"""A busy core beside a measurement: the load the one-thread default guards against."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

MATMUL_LOOP = "import torch\ntorch.set_num_threads(1)\na = torch.rand(1024, 1024)\nwhile True:\n    a @ a\n"


@contextmanager
def busy_core() -> Iterator[None]:
    """Run the block while a one-thread float matmul loop (a separate process) keeps one core busy;
    the loop is given two seconds to start and is killed on the way out."""
    proc = subprocess.Popen([sys.executable, "-c", MATMUL_LOOP], env=dict(os.environ, OMP_NUM_THREADS="1"))
    try:
        time.sleep(2.0)
        yield
    finally:
        proc.kill()
        proc.wait()
