"""`presence-svc --help` and every command's help, as printed: plain text a terminal shows,
no reStructuredText left in it."""

from __future__ import annotations

import re
import subprocess

import pytest

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


def _every_help() -> dict[tuple[str, ...], str]:
    """Each command's help, found by following the ``{a,b}`` of its positional arguments."""
    found: dict[tuple[str, ...], str] = {}
    level: list[tuple[str, ...]] = [()]
    while level:
        helps = _helps(level)
        found.update(helps)
        level = [
            (*command, name)
            for command, text in helps.items()
            for choices in _COMMANDS.findall(text)
            for name in choices.split(",")
        ]
    return found


@pytest.mark.timeout(180)
def test_help_shows_no_restructuredtext_markup() -> None:
    helps = _every_help()
    assert {("serve",), ("token",), ("db", "status"), ("ledger", "import")} <= helps.keys()
    for command, text in helps.items():
        assert not _MARKUP.search(text), (command, _MARKUP.findall(text), text)


def test_top_level_help_names_the_commands_and_exit_statuses() -> None:
    text = _helps([()])[()]
    for command in ("serve", "worker", "token", "ledger", "users", "db", "bench"):
        assert command in text
    assert "exit status: 0 success; 2 bad usage" in text
