"""Settings resolved in one place: flags > environment > files > defaults, for one engine."""

from __future__ import annotations

from pathlib import Path

import pytest

from reelgen.engine import Engine
from reelgen.errors import ConfigError, InvalidRequest


def test_an_engines_environment_picks_its_config_file(tmp_path: Path) -> None:
    """Engine(environ=...) reads the config file that environment names (not the process's)."""
    config = tmp_path / "other.toml"
    config.write_text('[providers.kling]\nmodel = "kling-v2-1"\nmax_duration = 10\n')
    engine = Engine(environ={"REELGEN_CONFIG": str(config)})
    assert engine.config.path == config
    assert engine.provider("kling").settings.max_duration == 10


def test_route_and_budget_precedence(tmp_path: Path) -> None:
    """--route > REELGEN_PROVIDER (no route) > REELGEN_ROUTE > config; --max-cost >
    REELGEN_MAX_COST > the route's max_cost; bad values are one-line errors."""
    config = tmp_path / "c.toml"
    config.write_text(
        'route = "a"\n[routes.a]\nproviders = ["local"]\n[routes.b]\nproviders = ["local"]\n'
    )
    base = {"REELGEN_CONFIG": str(config)}
    assert Engine(environ=base).settings.route(flag=None) == "a"
    assert Engine(environ={**base, "REELGEN_ROUTE": "b"}).settings.route(flag=None) == "b"
    only = Engine(environ={**base, "REELGEN_PROVIDER": "local", "REELGEN_ROUTE": "b"})
    assert only.settings.route(flag=None) is None
    assert only.settings.route(flag="b") == "b"
    budget = Engine(environ={**base, "REELGEN_MAX_COST": "0.5"}).settings
    assert budget.max_cost(None, route_limit=2.0) == 0.5
    assert budget.max_cost(0.1, route_limit=2.0) == 0.1
    assert Engine(environ=base).settings.max_cost(None, route_limit=2.0) == 2.0
    with pytest.raises(ConfigError, match="REELGEN_MAX_COST"):
        Engine(environ={**base, "REELGEN_MAX_COST": "lots"}).settings.max_cost(None)
    with pytest.raises(InvalidRequest, match="`max_cost`"):
        budget.max_cost(float("inf"))


def test_an_engines_environment_picks_its_job_log(tmp_path: Path) -> None:
    """Engine(environ={"REELGEN_HOME": ...}) keeps its job log there, not in the process's
    home: two engines with two homes never share a log."""
    engine = Engine(environ={"REELGEN_HOME": str(tmp_path / "elsewhere")})
    try:
        assert engine.store.path == tmp_path / "elsewhere" / "jobs.sqlite3"
    finally:
        engine.close()
