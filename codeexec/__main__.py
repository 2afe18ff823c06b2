"""`python -m codeexec` runs the CLI (its plain `exec` forms without Typer)."""

from ._cli_fast import main

main()
