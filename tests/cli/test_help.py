"""`presence-svc --help` and every command's help, as printed: plain text a terminal shows,
no reStructuredText left in it."""

from __future__ import annotations

import contextlib
import io
import re
import subprocess

import pytest

from presence_svc import cli
from tests.cli.test_cli import CLI

_COMMANDS = re.compile(r"^positional arguments:\n  \{([a-z][a-z,-]*)\}", re.MULTILINE)
_MARKUP = re.compile(r"``|`[^`\n]+`|:[a-z]+:`")


def _helps(commands: list[tuple[str, ...]]) -> dict[tuple[str, ...], str]:
    """``--help`` of each command, run side by side (each start costs about a second)."""
    running = {
        command: subprocess.Popen(
            [CLI, *command, "--help"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for command in commands
    }
    found = {}
    for command, process in running.items():
        out, err = process.communicate(timeout=150)
        assert process.returncode == 0, (command, err)
        found[command] = out
    return found


def _printed_help(command: tuple[str, ...]) -> str:
    """``presence-svc <command> --help`` as the command prints it, in this process (each
    process start costs about a second; the parser is the one ``main`` uses, the entry
    point itself is covered by ``test_top_level_help...``)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exited:
        cli._parser().parse_args([*command, "--help"])
    assert exited.value.code == 0, command
    return out.getvalue()


def _every_help() -> dict[tuple[str, ...], str]:
    """Each command's help, found by following the ``{a,b}`` of its positional arguments."""
    found: dict[tuple[str, ...], str] = {}
    level: list[tuple[str, ...]] = [()]
    while level:
        helps = {command: _printed_help(command) for command in level}
        found.update(helps)
        level = [
            (*command, name)
            for command, text in helps.items()
            for choices in _COMMANDS.findall(text)
            for name in choices.split(",")
        ]
    return found


def test_help_shows_no_restructuredtext_markup(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")  # as wide as a pipe's: the width a subprocess gets
    helps = _every_help()
    assert {("serve",), ("token",), ("db", "status"), ("ledger", "import")} <= helps.keys()
    for command, text in helps.items():
        assert not _MARKUP.search(text), (command, _MARKUP.findall(text), text)


def test_top_level_help_names_the_commands_and_exit_statuses() -> None:
    text = _helps([()])[()]
    for command in ("serve", "worker", "token", "ledger", "users", "db", "bench"):
        assert command in text
    assert "exit status: 0 success; 2 bad usage" in text
