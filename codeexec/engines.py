"""Several Docker engines at once: which ones, where a new session goes, where one lives.

The engines are named in ``CODEEXEC_ENGINES`` (``name=spec`` entries separated by
commas or whitespace) or, when that is unset, in the file ``CODEEXEC_ENGINES_FILE``
(default ``$XDG_CONFIG_HOME/codeexec/engines``; one ``name = spec`` a line, ``#``
comments). A spec with ``://`` is a ``DOCKER_HOST`` value (``unix://…``, ``ssh://…``,
``tcp://…``); any other spec is a docker context (``default`` is the CLI's own).
With neither, there is one engine: the environment's (``DOCKER_HOST``,
``DOCKER_CONTEXT``, the current context), called ``default``, as before.

Every engine is asked in parallel and each answer is bounded
(``CODEEXEC_ENGINE_TIMEOUT`` seconds, default 10): an engine that does not answer
is reported, never waited for past that, and never hides the others' sessions.
A session name is unique across the engines: ``start`` looks for the name on all
of them before it places a new session on one.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Sequence
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Generic, TypeVar

from . import _addrcache, _urls
from ._background import in_background
from ._checks import size_bytes
from .docker import LABEL_MANAGED, Docker
from .errors import CodeexecError, DockerError, InvalidOption, NoSuchSession
from .models import SessionInfo, SessionRef

_T = TypeVar("_T")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
DEFAULT_TIMEOUT = 10.0


@dataclass(frozen=True)
class Answer(Generic[_T]):
    """One engine's answer: ``value``, or ``problem`` (why it did not answer)."""

    engine: Docker
    value: _T | None = None
    problem: str = ""


def configured() -> list[Docker]:
    """The engines named in the configuration (one ``Docker`` each), in order."""
    text = os.environ.get("CODEEXEC_ENGINES")
    where = "CODEEXEC_ENGINES"
    if text is None:
        path = _config_file()
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return [Docker()]
        except OSError as exc:
            raise InvalidOption(f"cannot read the engines file {path}: {exc}") from exc
        where = str(path)
    engines = parse(text, where)
    return engines or [Docker()]


def parse(text: str, where: str = "CODEEXEC_ENGINES") -> list[Docker]:
    """``name=spec`` entries (commas, spaces or lines between them) as ``Docker``s."""
    engines: list[Docker] = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].replace(" = ", "=").replace(",", " ")
        for entry in line.split():
            name, eq, spec = entry.partition("=")
            if not eq or not _NAME.fullmatch(name) or not spec:
                raise InvalidOption(
                    f"engine entry {entry!r} in {where} is not name=spec; write e.g. "
                    "'local=default,big=ssh://me@big-host' (a spec with :// is a "
                    "DOCKER_HOST value, any other a docker context)"
                )
            if any(e.name == name for e in engines):
                raise InvalidOption(f"engine {name!r} is named twice in {where}")
            if "://" in spec:
                engines.append(Docker(host=spec, name=name))
            else:
                engines.append(Docker(context=spec, name=name))
    return engines


def _config_file() -> Path:
    explicit = os.environ.get("CODEEXEC_ENGINES_FILE")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(Path.home(), ".config")
    return Path(base) / "codeexec" / "engines"


def named(name: str, engines: Sequence[Docker] | None = None) -> Docker:
    """The configured engine called ``name`` (``InvalidOption`` naming the others)."""
    engines = configured() if engines is None else engines
    for engine in engines:
        if engine.name == name:
            return engine
    raise InvalidOption(
        f"no engine named {name!r}; the configured ones are "
        f"{', '.join(e.name for e in engines)} (CODEEXEC_ENGINES, "
        f"{_urls.doc('configuration', 'several-engines')})"
    )


def by_key(key: str, engines: Sequence[Docker]) -> Docker | None:
    """The configured engine whose ``Docker.engine`` is ``key`` (a cached ref's)."""
    return next((e for e in engines if e.engine == key), None)


def ask(
    engines: Sequence[Docker], question: Callable[[Docker], _T], timeout: float | None = None
) -> list[Answer[_T]]:
    """``question`` put to every engine at once; each answer bounded by ``timeout``."""
    if len(engines) == 1:  # one engine: its own errors, as before engines existed
        return [Answer(engines[0], question(engines[0]))]
    if timeout is None:
        timeout = float(os.environ.get("CODEEXEC_ENGINE_TIMEOUT") or DEFAULT_TIMEOUT)
    futures = [in_background(partial(question, e), "codeexec-engine") for e in engines]
    deadline = time.monotonic() + timeout
    answers: list[Answer[_T]] = []
    for engine, future in zip(engines, futures, strict=True):
        try:
            answers.append(Answer(engine, future.result(max(0.0, deadline - time.monotonic()))))
        except FutureTimeout:
            answers.append(Answer(engine, problem=f"did not answer within {timeout:g} s"))
        except CodeexecError as exc:
            answers.append(Answer(engine, problem=" ".join(exc.message.split())[:300]))
    return answers


def sessions_on(docker: Docker) -> list[SessionInfo]:
    """Every codeexec session on one engine, each marked with the engine's name."""
    found = (s for s in docker.ps({LABEL_MANAGED: "1"}) if s.name)
    return sorted((replace(s, engine=docker.name) for s in found), key=lambda s: s.name)


def locate(name: str, engines: Sequence[Docker], *, all: bool = False) -> list[SessionRef]:
    """The containers of session ``name`` on whichever engines answer (running first)."""
    found: list[SessionRef] = []
    for answer in ask(engines, lambda e: e.find_session(name, all=all)):
        found.extend(answer.value or [])
    return sorted(found, key=lambda ref: not ref.running)


def home(name: str, engines: Sequence[Docker], *, all: bool = False) -> Docker | None:
    """The engine that runs (or, with ``all``, holds) session ``name``, if any answers so."""
    found = locate(name, engines, all=all)
    return by_key(found[0].engine, engines) if found else None


def for_session(name: str, *, hint: bool = True) -> Docker:
    """The engine that runs session ``name``: the only one, the one the address cache
    remembers (``hint``), or the one that answers that it runs it.

    Raises:
        NoSuchSession: no engine that answered runs it (the others are named).
    """
    everywhere = configured()
    if len(everywhere) == 1:
        return everywhere[0]
    cached = _addrcache.recall(name) if hint else None
    remembered = by_key(cached.engine, everywhere) if cached is not None else None
    if remembered is not None:
        return remembered
    answers = ask(everywhere, lambda e: e.find_session(name))
    for answer in answers:
        if any(ref.running for ref in answer.value or []):
            return answer.engine
    silent = unreachable(answers)
    raise NoSuchSession(
        f"no running session named {name!r} on any engine: start one with "
        f"`codeexec start {name}`; `codeexec ls` lists the running ones"
        + (f" (not answering: {'; '.join(silent)})" if silent else "")
    )


def place(name: str, engines: Sequence[Docker], pinned: str | None = None) -> Docker:
    """The engine for session ``name``: where it runs already, ``pinned``, or the least
    loaded one that answers (fewest running sessions, then most memory left)."""
    existing = home(name, engines)
    if pinned is not None:
        chosen = named(pinned, engines)
        if existing is not None and existing is not chosen:
            raise InvalidOption(
                f"session {name!r} already runs on engine {existing.name!r}, not "
                f"{pinned!r}: a name is unique across engines; stop it there first "
                f"(`codeexec stop {name}`) or choose another name"
            )
        return chosen
    if existing is not None:
        return existing
    loads = [a for a in ask(engines, _load) if a.value is not None]
    if not loads:
        raise DockerError(
            "none of the configured engines answers "
            f"({', '.join(e.name for e in engines)}); `codeexec doctor` checks each"
        )
    return min(loads, key=lambda a: a.value or (0, 0)).engine


def _load(docker: Docker) -> tuple[int, int]:
    running = docker.ps_inspect({LABEL_MANAGED: "1"}, all=False)
    reserved = sum(size_bytes((r.settings.get("limits") or {}).get("memory")) for r in running)
    return len(running), -(docker.mem_total() - reserved)


def unreachable(answers: Sequence[Answer[_T]]) -> list[str]:
    """``name: why`` of each engine that did not answer."""
    return [f"{a.engine.name}: {a.problem}" for a in answers if a.problem]
