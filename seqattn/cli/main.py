"""The root ``seqattn`` group and its error handling."""

from __future__ import annotations

import sys

import click
from rich.console import Console
from rich.markup import escape

from seqattn import __version__
from seqattn.errors import SeqattnError, TrainingInterrupted

console = Console(stderr=True)


class Group(click.Group):
    """A click group that turns user errors into one line and exit code 1 (no traceback)."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except SeqattnError as error:
            if ctx.find_root().params.get("debug"):
                raise
            console.print(f"[bold red]error:[/] {escape(str(error))}", highlight=False, soft_wrap=True)
            sys.exit(1)
        except click.UsageError as error:
            # Bad options and arguments: one line naming the option, like every other error.
            if ctx.find_root().params.get("debug"):
                raise
            hint = f" (see '{error.ctx.command_path} --help')" if error.ctx else ""
            console.print(
                f"[bold red]error:[/] {escape(error.format_message())}{escape(hint)}",
                highlight=False,
                soft_wrap=True,
            )
            sys.exit(error.exit_code)
        except TrainingInterrupted as stopped:  # training saved its state and stopped on a signal
            console.print(f"[bold red]{escape(str(stopped))}[/]", highlight=False, soft_wrap=True)
            sys.exit(stopped.exit_code)
        except KeyboardInterrupt:
            console.print("[bold red]interrupted[/]")
            sys.exit(130)


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", "-V", prog_name="seqattn")
@click.option("--debug", is_flag=True, help="Show full tracebacks for errors.")
def main(debug: bool) -> None:
    """seqattn: attention-based sequence-to-sequence models, classifiers and alignment plots."""


def _register() -> None:
    from seqattn.cli import alignments, data, infer, recipe, shortlist, tokenizer, train

    main.add_command(data.data)
    main.add_command(tokenizer.tokenizer)
    main.add_command(train.train)
    main.add_command(infer.translate)
    main.add_command(infer.classify)
    main.add_command(infer.evaluate)
    main.add_command(shortlist.shortlist)
    main.add_command(alignments.plot)
    main.add_command(alignments.align)
    main.add_command(alignments.aer)
    main.add_command(recipe.recipe)


_register()
