"""``reelgen --help`` start-up time, against a naive CLI that imports its stack up front."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

NAIVE_IMPORTS = "import httpx, jwt, pydantic, av, PIL, PIL.Image"


@dataclass
class ColdStart:
    reelgen: float
    baseline: float


def reelgen_script() -> Path:
    """The ``reelgen`` console script installed next to this interpreter."""
    script = Path(sys.executable).parent / "reelgen"
    if not script.exists():
        raise FileNotFoundError(f"{script} not found: pip install -e . into this environment")
    return script


def best_of(argv: list[str], runs: int, env: dict[str, str]) -> float:
    """Best real wall time of ``runs`` runs (after one unmeasured warm-up run)."""
    best = float("inf")
    for attempt in range(runs + 1):
        started = time.perf_counter()
        subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL)
        took = time.perf_counter() - started
        if attempt:
            best = min(best, took)
    return best


def measure(runs: int = 5) -> ColdStart:
    with tempfile.TemporaryDirectory(prefix="reelgen-bench-home-") as home:
        env = {**os.environ, "REELGEN_HOME": home}
        env.pop("REELGEN_CONFIG", None)
        return ColdStart(
            reelgen=best_of([str(reelgen_script()), "--help"], runs, env),
            baseline=best_of([sys.executable, "-c", NAIVE_IMPORTS], runs, env),
        )
