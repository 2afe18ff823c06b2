"""Where a physical line of Python leaves a string, a bracket or a ``\\``
continuation: what decides whether the next line starts a statement (so a
``!command`` or ``%pip`` line inside a string or a call is left alone).

No imports: the host reads this file too (``codeexec/_shared.py``), so the two
sides split a cell the same way.
"""

from __future__ import annotations


def scan_line(line: str, state: list) -> None:
    """Advance [quote, depth, continued] over one physical line of Python."""
    quote, depth = state[0], state[1]
    i, n = 0, len(line)
    while i < n:
        ch = line[i]
        if quote:
            if ch == "\\":
                i += 2
                continue
            if line.startswith(quote, i):
                i += len(quote)
                quote = None
                continue
        elif ch == "#":
            break
        elif ch in "\"'":
            quote = ch * 3 if line.startswith(ch * 3, i) else ch
            i += len(quote)
            continue
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth = max(depth - 1, 0)
        i += 1
    body = line.rstrip("\r\n")
    state[2] = body.endswith("\\") and not body.endswith("\\\\")
    if quote and len(quote) == 1 and not state[2]:
        quote = None  # an unterminated one-line string: Python reports it
    state[0], state[1] = quote, depth
