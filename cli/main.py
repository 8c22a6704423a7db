"""The `synthaug` command line: each command parses options and calls one public function of the library."""
from __future__ import annotations

import sys
import warnings

import click

from synthaug._version import __version__
from synthaug.errors import SynthaugError, TrainingStopped


class FriendlyGroup(click.Group):
    """Turns library errors into one-line messages and warnings into `warning: ...` lines."""

    def invoke(self, ctx: click.Context):
        warnings.showwarning = lambda message, *a, **k: click.echo(f"warning: {message}", err=True)
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            exc.ctx = None  # one line, "Error: ...", without the usage block
            raise
        except TrainingStopped as exc:
            click.echo(str(exc), err=True)
            sys.exit(130)
        except SynthaugError as exc:
            raise click.ClickException(str(exc)) from None
        except OSError as exc:  # a full disk, a file size limit, an unwritable folder: one line, nothing replaced
            where = f"{exc.filename}: " if exc.filename else ""
            raise click.ClickException(f"{where}{exc.strerror or str(exc).splitlines()[0]}") from None
        except KeyboardInterrupt:
            command = self.commands.get(ctx.invoked_subcommand or "")
            resumable = command is not None and any(p.name == "resume" for p in command.params)
            click.echo("interrupted; nothing complete was overwritten" +
                       (" (re-run with --resume to continue)" if resumable else ""), err=True)
            sys.exit(130)
        finally:
            from synthaug.distributed import shutdown

            shutdown()  # leave torchrun's process group, if a command joined one


@click.group(cls=FriendlyGroup)
@click.version_option(version=__version__, prog_name="synthaug")
def cli() -> None:
    """Fit class-conditional GANs on labelled image folders, export synthetic data, benchmark it."""


def _register() -> None:
    from synthaug_cli import commands  # noqa: F401 - importing attaches the commands


_register()
