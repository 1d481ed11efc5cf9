"""Every command of `mturk-eval`, groups walked: read from the CLI itself, never a hand-kept list."""
from __future__ import annotations

import click


def all_commands(group: click.Group) -> list[tuple[list[str], click.Command]]:
    """``(path, command)`` for each leaf command under ``group`` (e.g. ``(["sandbox", "stop"], ...)``)."""
    ctx = click.Context(group)
    out: list[tuple[list[str], click.Command]] = []

    def walk(g: click.Group, path: list[str]) -> None:
        for name in g.list_commands(ctx):
            cmd = g.get_command(ctx, name)
            if isinstance(cmd, click.Group):
                walk(cmd, [*path, name])
            else:
                out.append(([*path, name], cmd))

    walk(group, [])
    return out
