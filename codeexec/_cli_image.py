"""`codeexec base-image`: the offline base image, mapped onto ``baseimage.build_base_image``."""

from __future__ import annotations

from typing import Annotated

import typer

from . import _cli_output as out
from ._cli_options import JsonOpt


def base_image(
    tag: Annotated[
        str,
        typer.Argument(
            metavar="TAG", help="The image to make; then use it as CODEEXEC_BASE_IMAGE."
        ),
    ] = "codeexec-base:bookworm",
    suite: Annotated[
        str, typer.Option(metavar="SUITE", help="The Debian release to install.")
    ] = "bookworm",
    as_json: JsonOpt = False,
) -> None:
    """Make a Python base image from Debian packages.

    No registry is needed: for hosts that cannot pull python:3.12-slim. Needs root
    and debootstrap; the packages come from the host's apt mirror (or
    DEBIAN_MIRROR). Does nothing when TAG already exists. Then: export
    CODEEXEC_BASE_IMAGE=TAG.

    Example: sudo codeexec base-image
    """
    from .baseimage import build_base_image

    with out.progress() as on_progress:
        result = build_base_image(tag, suite=suite, on_progress=on_progress)
    if as_json:
        out.print_json(result.to_dict())
        return
    print(result.tag)
    if result.built:
        out.note(f"built {result.tag} from Debian {result.suite}")
    else:
        out.note(f"{result.tag} is already there: nothing to do")
    out.note(f"use it: export CODEEXEC_BASE_IMAGE={result.tag}")
