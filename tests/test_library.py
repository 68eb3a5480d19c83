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


def test_estimate_route_and_progress_from_the_library(
    make_image, tmp_path: Path, isolated: Path
) -> None:
    """`estimate()` prices each candidate of a route without sending anything; `generate`
    takes `route=` and calls `on_status` with the provider's answers; one shared engine
    serves several calls."""
    import asyncio

    import reelgen

    (isolated / "config.toml").write_text(
        'route = "previews"\n[routes.previews]\nproviders = ["local"]\n'
        "[providers.local]\nheight = 144\n"
    )
    image = make_image(320, 180)
    (first,) = reelgen.estimate(image=str(image), prompt="zoom", duration=1, route="previews")
    assert (first.provider, first.duration, first.amount) == ("local", 1.0, 0.0)
    seen: list[str] = []
    result = reelgen.generate(
        image=str(image),
        prompt="zoom",
        duration=1,
        route="previews",
        output=tmp_path / "a.mp4",
        on_status=lambda job, status, elapsed: seen.append(status.state),
    )
    assert result.videos[0].path == str(tmp_path / "a.mp4")
    assert seen and seen[-1] == "succeeded"

    async def two_on_one_engine() -> list[reelgen.VideoResult]:
        engine = reelgen.Engine()
        try:
            return [
                await reelgen.agenerate(
                    image=str(image),
                    prompt="zoom",
                    duration=1,
                    engine=engine,
                    output=tmp_path / f"{n}.mp4",
                )
                for n in range(2)
            ]
        finally:
            await engine.aclose()
            engine.close()

    names = [Path(r.videos[0].path or "").name for r in asyncio.run(two_on_one_engine())]
    assert names == ["0.mp4", "1.mp4"]


def test_the_readme_library_example_passes_mypy_strict(tmp_path: Path) -> None:
    """The README's library example type-checks with `mypy --strict` against the package as
    installed (its py.typed and explicit exports), not only at run time."""
    import re
    import subprocess
    import sys

    root = Path(__file__).parents[1]
    readme = (root / "README.md").read_text()
    section = readme.split("## Use it as a library", 1)[1]
    example = re.search(r"```python\n(.*?)```", section, flags=re.S)
    assert example is not None
    script = tmp_path / "example.py"
    script.write_text(example.group(1))
    checked = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-incremental",
            "--follow-imports=silent",
            str(script),
        ],  # errors inside reelgen itself are .ci/run's mypy; here only the use
        capture_output=True,
        text=True,
        env={"MYPYPATH": str(root / "core"), "PATH": "/usr/bin:/bin"},
        cwd=tmp_path,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
