"""The CLI's error boundary: exit codes, one-line errors, interrupts, and each command's engine.

A :class:`~reelgen.errors.ReelgenError` ends in one line on stderr (what, why, how to fix) and
a non-zero exit code; ``--debug`` re-raises it so the traceback shows. Ctrl-C and SIGTERM say
what was left running and how to pick it up.
"""

from __future__ import annotations

import asyncio
import json
import sys
import traceback
from collections.abc import Awaitable, Callable, Coroutine
from functools import wraps
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from ..engine import Engine

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

EXIT_FAILED = 1  # the provider or the network failed the job
EXIT_USAGE = 2  # bad input, config, keys or budget: nothing was paid for
EXIT_TIMEOUT = 3  # still running when we stopped waiting: `reelgen wait JOB_ID`
EXIT_INTERRUPTED = 130


class State:
    debug = False


class Interrupted:
    """What a Ctrl-C leaves running, so the message can say how to pick it up."""

    engine: Engine | None = None
    hint: str | None = None


def _exit_code(err: BaseException) -> int:
    from ..errors import UsageError, WaitTimeout

    if isinstance(err, UsageError):
        return EXIT_USAGE
    if isinstance(err, WaitTimeout):
        return EXIT_TIMEOUT
    return EXIT_FAILED


def fail(err: BaseException, *, as_json: bool) -> None:
    """Print one line for ``err`` and exit."""
    from ..errors import ReelgenError

    message = str(err) if isinstance(err, ReelgenError) else f"{err.__class__.__name__}: {err}"
    message = as_flags(message)
    if as_json:
        payload: dict[str, Any] = {"error": message, "type": err.__class__.__name__}
        job_id = getattr(err, "job_id", None)
        if job_id:
            payload["job_id"] = job_id
        if isinstance(err, ReelgenError) and err.attempts:
            payload["attempts"] = err.attempts
        click.echo(json.dumps(payload))
    click.secho(f"error: {message}", err=True, fg="red")
    if not isinstance(err, ReelgenError):
        click.echo("(this is a bug in reelgen; rerun with --debug for the traceback)", err=True)
    sys.exit(_exit_code(err))


def as_flags(message: str) -> str:
    """The library names request fields (`cfg_scale`); at the command line, a field this
    command has a flag for is named by that flag (--cfg-scale). Others (a batch manifest's
    fields) keep their names."""
    ctx = click.get_current_context(silent=True)
    if ctx is None:
        return message
    for param in ctx.command.params:
        if isinstance(param, click.Option) and param.name:
            flag = next((o for o in param.opts if o.startswith("--")), None)
            if flag is not None:
                message = message.replace(f"`{param.name}`", flag)
    return message


def guarded(fn: F) -> F:
    """The CLI's error boundary: ReelgenError -> one line and an exit code."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        as_json = bool(kwargs.get("as_json"))
        Interrupted.engine = Interrupted.hint = None  # this command's, not an earlier one's
        try:
            return fn(*args, **kwargs)
        except (KeyboardInterrupt, click.Abort):
            click.echo(f"interrupted; {interrupted_message()}", err=True)
            sys.exit(EXIT_INTERRUPTED)
        except BrokenPipeError:  # `reelgen jobs | head`: the reader left, not an error
            sys.stderr.close()
            sys.exit(0)
        except Exception as err:
            if State.debug:  # the traceback, then the same line and exit code as without
                traceback.print_exc()
            fail(err, as_json=as_json)

    return wrapper  # type: ignore[return-value]


def interrupted_message() -> str:
    """What an interrupt left behind, read from the job log."""
    from ..job_actions import describe_interrupted

    if Interrupted.hint:
        return f"jobs in flight keep running: {Interrupted.hint}"
    said = describe_interrupted(Interrupted.engine) if Interrupted.engine is not None else ""
    return said or "nothing was submitted"


def make_engine() -> Engine:
    """The engine every command uses (tests replace this one function)."""
    from ..engine import Engine

    return Engine()


def open_engine() -> Engine:
    """The command's engine; its job log is closed when the command ends."""
    engine = make_engine()
    Interrupted.engine = engine
    ctx = click.get_current_context(silent=True)
    if ctx is not None:
        ctx.call_on_close(engine.close)
    return engine


def run_async(coro_fn: Callable[[], Coroutine[Any, Any, T]]) -> T:
    return asyncio.run(coro_fn())


async def closing(engine: Engine, work: Awaitable[T]) -> T:
    """Await ``work``, then close ``engine``'s provider clients (in the same event loop)."""
    try:
        return await work
    finally:
        await engine.aclose()
