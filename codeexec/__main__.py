"""`python -m codeexec` runs the CLI."""

from .cli import main

main()
