"""What every ``retdm`` command shares at the edge: library errors as one line and exit status
1, and ``KEY=VALUE`` options parsed as YAML scalars."""

from __future__ import annotations

import sys

import click
import yaml

from retdm.errors import RetdmError


class RetdmGroup(click.Group):
    """Turns library errors into one line on stderr and exit status 1, with no traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except RetdmError as err:
            click.echo(f"error: {err}", err=True)
            sys.exit(1)


def parse_overrides(pairs: tuple[str, ...], option: str = "--set") -> dict:
    """``("loss.alpha=0.5", …)`` → ``{"loss.alpha": 0.5}``, values parsed as YAML scalars."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected KEY=VALUE (e.g. loss.alpha=0.5), got {pair!r}", param_hint=option)
        try:
            out[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as err:
            from retdm.config import yaml_problem

            raise click.BadParameter(f"{pair!r}: the value is not valid YAML ({yaml_problem(err)}); fix it, or quote "
                                     "it if it is a string", param_hint=option) from None
    return out
