"""The ``reelgen`` command group, its commands, plugin commands and :func:`main`."""

from __future__ import annotations

import contextlib
import logging
import sys

import click

from . import admin, batch, generate, jobs, workers
from .boundary import EXIT_INTERRUPTED, State


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="reelgen")
@click.option("--debug", is_flag=True, help="Show tracebacks and HTTP traffic (keys redacted).")
def cli(debug: bool) -> None:
    """reelgen: turn still images into short videos with any provider.

    \b
    Try it offline (no keys):   reelgen generate photo.jpg -p "slow zoom in" -o clip.mp4
    With a cloud provider:      reelgen providers          (names, models, keys)
                                reelgen keys set NAME      (or export its keys)
                                reelgen generate photo.jpg -p "waves roll in" -P NAME
    """
    State.debug = debug
    if debug:
        logging.basicConfig(
            level=logging.DEBUG,
            format="%(asctime)s.%(msecs)03d %(name)s: %(message)s",
            datefmt="%H:%M:%S",
        )
        # reelgen.http logs each request once, keys redacted; httpx would log it again
        for chatty in ("httpcore", "httpx"):
            logging.getLogger(chatty).setLevel(logging.WARNING)


for _command in (
    generate.cli_generate,
    generate.cli_estimate,
    jobs.cli_status,
    jobs.cli_wait,
    jobs.cli_download,
    jobs.cli_jobs,
    jobs.cli_resume,
    jobs.cli_forget,
    jobs.cli_cancel,
    batch.cli_batch,
    admin.cli_providers,
    admin.cli_plugins,
    admin.cli_config,
    admin.cli_keys,
    workers.cli_worker,
    workers.cli_listen,
):
    cli.add_command(_command)


def register_plugin_commands() -> None:
    """Let plugins add commands (register_commands hook). Failures never break the CLI."""
    try:
        from ..plugins import get_plugin_manager

        get_plugin_manager().hook.register_commands(cli=cli)
    except Exception as exc:  # a broken plugin must not take the CLI down
        logging.getLogger("reelgen.plugins").warning("plugin commands not loaded: %s", exc)


def main(argv: list[str] | None = None) -> None:
    import signal

    # SIGTERM (a service manager, `kill`) is handled like Ctrl-C: the job log stays true and
    # the message says how to pick up what was in flight
    def on_term(*_: object) -> None:
        if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:  # started with `&` from a script
            raise KeyboardInterrupt
        signal.raise_signal(signal.SIGINT)

    with contextlib.suppress(ValueError):  # not the main thread: leave signals alone
        signal.signal(signal.SIGTERM, on_term)
    args = list(sys.argv[1:] if argv is None else argv)
    if "--debug" in args[1:]:  # `reelgen generate ... --debug` means what `--debug generate` does
        args.remove("--debug")
        args.insert(0, "--debug")
    try:
        register_plugin_commands()
        cli.main(args=args, prog_name="reelgen", standalone_mode=False)
    except click.exceptions.Exit as done:  # --help, --version
        sys.exit(done.exit_code)
    except click.ClickException as err:  # bad usage: one line, like every other error
        if type(err).__name__ == "NoArgsIsHelpError":  # `reelgen`, `reelgen keys`: the help
            click.echo(err.format_message())
            sys.exit(0)
        where = ""
        if isinstance(err, click.UsageError) and err.ctx is not None:
            where = f" (see `{err.ctx.command_path} --help`)"
        click.echo(f"error: {err.format_message()}{where}", err=True)
        sys.exit(err.exit_code)
    except (KeyboardInterrupt, click.Abort):  # before a command's own boundary took over
        click.echo("interrupted; nothing was submitted", err=True)
        sys.exit(EXIT_INTERRUPTED)
