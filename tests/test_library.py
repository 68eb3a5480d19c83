"""The library entry points scripts use: generate() and agenerate()."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

import reelgen
from reelgen.errors import BudgetExceeded, InvalidRequest


def test_generate_offline_returns_saved_result(make_image, tmp_path: Path) -> None:
    """generate(image=..., prompt=...) saves the clip and returns where it is."""
    out = tmp_path / "lib.mp4"
    result = reelgen.generate(
        image=str(make_image(640, 480)), prompt="pan left", duration=1, output=out
    )
    assert result.provider == "local"
    assert result.path == str(out)
    assert out.stat().st_size > 1000
    assert result.videos[0].sha256 is not None


def test_agenerate_refuses_bad_input_with_typed_errors(make_image, tmp_path: Path) -> None:
    """Library callers get typed errors (InvalidRequest, BudgetExceeded), not tracebacks."""
    with pytest.raises(InvalidRequest, match="image not found"):
        asyncio.run(reelgen.agenerate(image="missing.jpg", prompt="x"))
    with pytest.raises(BudgetExceeded):
        asyncio.run(
            reelgen.agenerate(image=str(make_image()), prompt="x", provider="kling", max_cost=0.1)
        )


def test_a_misspelt_field_is_a_reelgen_error_naming_it() -> None:
    """`generate(promt=...)` raises InvalidRequest naming `promt`, not pydantic's error."""
    import reelgen

    with pytest.raises(reelgen.InvalidRequest, match="`promt`: not a field of VideoRequest"):
        reelgen.generate(image="a.jpg", promt="waves")


def test_the_public_names_are_a_literal_all() -> None:
    """`__all__` is a literal list (what strict type checkers read to allow `from reelgen
    import generate`) and matches the lazily exported names."""
    import ast
    from pathlib import Path

    import reelgen

    tree = ast.parse(Path(reelgen.__file__).read_text())
    (listed,) = [
        ast.literal_eval(node.value)
        for node in tree.body
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "__all__"
    ]
    assert listed == sorted([*reelgen._EXPORTS, "__version__"])
