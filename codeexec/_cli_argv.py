"""The ``codeexec`` arguments as people type them, put where Click reads them.

Click reads a group's options only before the command's name and a command's
only after it; people (and codeexec's own hints, such as doctor's
``codeexec start --debug``) put them on either side.
"""

from __future__ import annotations

# Options of the group that people also type after the command, and the one of the
# commands they type before it; Click reads each only on its own side of the name.
_GROUP_FLAGS = ("--debug", "--version")


def normalize(args: list[str]) -> list[str]:
    """``args`` with ``--debug``/``--version`` moved before the command and ``--json`` after.

    Only tokens before a ``--`` move; everything else keeps its order.
    """
    end = args.index("--") if "--" in args else len(args)
    head, tail = args[:end], args[end:]
    group = [a for a in head if a in _GROUP_FLAGS]
    rest = [a for a in head if a not in _GROUP_FLAGS]
    command = next((i for i, a in enumerate(rest) if not a.startswith("-")), None)
    if command is not None and "--json" in rest[:command]:
        rest.remove("--json")
        rest.insert(command, "--json")  # the name moved one to the left
    return [*group, *rest, *tail]


def wants_json(args: list[str]) -> bool:
    """Whether ``--json`` was asked for (before any ``--``)."""
    return "--json" in (args[: args.index("--")] if "--" in args else args)
