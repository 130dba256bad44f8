"""Every option of the operator's commands says what it does (``accord CMD --help``)."""

from __future__ import annotations

import argparse

import pytest

from accord.cli.main import build_parser

OPERATOR_COMMANDS = ["init", "keys", "node", "devnet", "status", "query", "send", "gov"]


def _actions(parser: argparse.ArgumentParser) -> list[tuple[str, argparse.Action]]:
    out: list[tuple[str, argparse.Action]] = []
    for a in parser._actions:
        if isinstance(a, argparse._SubParsersAction):
            for name, sub in a.choices.items():
                out += [(f"{name} {n}", x) for n, x in _actions(sub)]
        elif not isinstance(a, argparse._HelpAction):
            out.append(("/".join(a.option_strings) or a.dest, a))
    return out


@pytest.mark.parametrize("command", OPERATOR_COMMANDS)
def test_every_option_has_help(command: str) -> None:
    parser = build_parser([command])
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    missing = [name for name, a in _actions(sub.choices[command]) if not a.help]
    assert missing == [], f"accord {command}: options without help: {missing}"
