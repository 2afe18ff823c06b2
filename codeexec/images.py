"""Session images: dependency validation, the build context, and the content-hash cache.

A session's image is ``FROM <base>`` plus the executor and the requested
dependencies. Its tag is a hash of everything that goes into it, so asking again
for the same dependencies builds nothing.
"""

from __future__ import annotations

import os
import re
import secrets
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from . import _urls
from ._hostindex import (
    IndexSettings as IndexSettings,
    certificate_blocks as certificate_blocks,
    host_index_settings as host_index_settings,
    proxy_lines as proxy_lines,
)
from ._imagereuse import (
    Parent,
    closest_image,
    commit_message,
    env_labels,
    label_changes,
    reuse_enabled,
)
from ._shared import executor_source_dir as executor_source_dir
from .docker import (
    LABEL_BASE,
    LABEL_CACHE,
    LABEL_DEPS,
    LABEL_IMAGE,
    Docker,
    cache_volume_name,
    commit_changes,
    install_argv,
)
from .errors import InvalidDependency
from .models import Limits, check_image_ref

DEFAULT_BASE_IMAGE = "python:3.12-slim"
IMAGE_REPOSITORY = "codeexec-env"
BUILD_TIMEOUT = 1800.0
# Dependencies are installed by a confined `docker run` and `docker commit`.
# The requirements reach install.sh on its stdin, so an install can start from an
# existing env image (``_imagereuse``) whose requirements.txt names fewer.
BUILD_RECIPE = "confined-run-commit-2"

_TEMPLATE_NAMES = ("Dockerfile.template", "install.sh")
_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f`$|&\\]")


def default_base_image() -> str:
    return os.environ.get("CODEEXEC_BASE_IMAGE") or DEFAULT_BASE_IMAGE


def build_cache_enabled() -> bool:
    """Whether dependency installs share a package cache volume (``CODEEXEC_BUILD_CACHE=1``).

    Off by default: a package's build code can write the shared cache and so reach
    later images that never named it (docs/configuration.md, "The package cache").
    """
    return os.environ.get("CODEEXEC_BUILD_CACHE", "0").strip().lower() in ("1", "true", "yes")


# -- dependencies --------------------------------------------------------------------


def validate_dependency(spec: str, *, allow_urls: bool = False) -> str:
    """Return the normalised requirement, or raise ``InvalidDependency`` saying why.

    Only plain pip requirements are accepted (``name``, ``name[extra]>=1,<2``,
    ``name; python_version>"3.9"``): never options (``--index-url``, ``-e``), local
    paths, shell syntax or, unless ``allow_urls``, URLs (``git+https://…``).
    """
    if not isinstance(spec, str):
        raise InvalidDependency(f"a dependency must be a string, got {type(spec).__name__}")
    text = spec.strip(" \t")
    shown = spec if len(spec) <= 80 else spec[:77] + "..."
    if not text:
        raise InvalidDependency("an empty dependency string was given; remove it")
    if _FORBIDDEN.search(text):
        raise InvalidDependency(
            f"dependency {shown!r} contains a newline, control character or shell syntax; "
            "give one pip requirement per string, such as 'numpy==2.*'"
        )
    if text.startswith("-"):
        raise InvalidDependency(
            f"dependency {shown!r} is a pip option, not a requirement; options such as "
            "--index-url come from the host's pip settings (see "
            f"{_urls.doc('configuration', 'package-index-and-tls-proxies')})"
        )
    # Imported here: `codeexec exec` never validates requirements, and packaging
    # costs ~25 ms of every CLI call's start-up.
    from packaging.requirements import InvalidRequirement, Requirement

    try:
        req = Requirement(text)
    except InvalidRequirement as exc:
        raise InvalidDependency(
            f"dependency {shown!r} is not a valid pip requirement ({exc}); "
            "use the form 'name', 'name==1.2' or 'name[extra]>=1,<2'"
        ) from None
    if req.url and not allow_urls:
        raise InvalidDependency(
            f"dependency {shown!r} installs from a URL, which is refused by default; "
            "pass allow_urls=True (CLI: --allow-urls) if you trust that source"
        )
    return str(req)


def normalize_dependencies(specs: Iterable[str], *, allow_urls: bool = False) -> tuple[str, ...]:
    """Validate every requirement; return them de-duplicated and sorted."""
    if isinstance(specs, str):
        specs = [specs]
    return tuple(sorted({validate_dependency(s, allow_urls=allow_urls) for s in specs}))


def read_requirements_file(path: str | os.PathLike[str]) -> list[str]:
    """Requirement lines of a requirements file (comments and blanks dropped).

    Option lines (``-r``, ``--index-url`` …) are refused like any other option.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidDependency(f"cannot read requirements file {path}: {exc.strerror}") from None
    text = text.replace("\\\n", " ")
    specs = []
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        specs.append(line)
    return specs


# -- build context and tag -----------------------------------------------------------


@dataclass(frozen=True)
class BuildContext:
    """The files of one image build, and the content hash that names the image.

    ``stage`` hashes everything but the requirements (base image and its id, recipe,
    executor, install script, CA bundle, index settings): images of one stage differ
    only in their packages, so one can be installed on top of another.
    """

    files: dict[str, bytes]
    digest: str
    stage: str = ""

    @property
    def tag(self) -> str:
        return f"{IMAGE_REPOSITORY}:{self.digest[:16]}"

    def write(self, directory: Path) -> None:
        for rel, data in self.files.items():
            path = directory / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)


def make_context(
    base_image: str, dependencies: Sequence[str], settings: IndexSettings, base_image_id: str = ""
) -> BuildContext:
    """Every file of the build, in memory, plus the hash over all of them."""
    src = executor_source_dir()
    files: dict[str, bytes] = {}
    ca_env = []
    files["trust/.keep"] = b""
    if settings.ca_bundle is not None:
        files["trust/ca-bundle.crt"] = certificate_blocks(settings.ca_bundle)
        bundle = "/opt/codeexec/trust/ca-bundle.crt"
        ca_env.append(
            f"ENV SSL_CERT_FILE={bundle} PIP_CERT={bundle} "
            f"REQUESTS_CA_BUNDLE={bundle} UV_NATIVE_TLS=1"
        )
    files["trust/pip.conf"] = settings.pip_conf().encode()
    ca_env.append("ENV PIP_CONFIG_FILE=/opt/codeexec/trust/pip.conf")
    template = (src / "Dockerfile.template").read_text(encoding="utf-8")
    dockerfile = template.replace("@@BASE_IMAGE@@", base_image).replace(
        "@@CA_ENV@@", "\n".join(ca_env)
    )
    files["Dockerfile"] = dockerfile.encode()
    files["install.sh"] = (src / "install.sh").read_bytes()
    files["index.env"] = settings.uv_env().encode()
    files["requirements.txt"] = ("".join(f"{d}\n" for d in dependencies)).encode()
    exec_dir = src / "codeexec_executor"
    for path in sorted(exec_dir.rglob("*.py")):
        files[f"codeexec_executor/{path.relative_to(exec_dir).as_posix()}"] = path.read_bytes()
    import hashlib

    digest = hashlib.sha256()
    digest.update(f"{base_image}\0{base_image_id}\0".encode())
    # How the image is made is part of what goes into it (bump when that changes).
    digest.update(f"{BUILD_RECIPE}\0".encode())
    stage = digest.copy()
    for rel in sorted(files):
        entry = rel.encode() + b"\0" + hashlib.sha256(files[rel]).digest()
        digest.update(entry)
        if rel != "requirements.txt":
            stage.update(entry)
    return BuildContext(files=files, digest=digest.hexdigest(), stage=stage.hexdigest())


@dataclass(frozen=True)
class ImageLookup:
    """The build context for a dependency set, and whether its image already exists."""

    base: str
    dependencies: tuple[str, ...]
    context: BuildContext
    exists: bool
    base_id: str = ""

    @property
    def tag(self) -> str:
        return self.context.tag


def find_image(
    docker: Docker, *, base_image: str | None, dependencies: Sequence[str]
) -> ImageLookup:
    """Look the image for ``dependencies`` up; never builds.

    Two docker calls: the base image's id (it is part of the hash), then the tag.
    """
    base = check_image_ref(base_image or default_base_image())
    base_id = docker.image_id(base) or ""
    context = make_context(base, dependencies, host_index_settings(), base_id)
    exists = docker.image_exists(context.tag)
    return ImageLookup(base, tuple(dependencies), context, exists, base_id)


def ensure_image(
    docker: Docker,
    *,
    base_image: str | None,
    dependencies: Sequence[str],
    on_line: Callable[[str], None] | None = None,
    timeout: float = BUILD_TIMEOUT,
    limits: Limits | None = None,
    runtime: str | None = None,
) -> str:
    """Return the tag of the image for ``dependencies``, building it only if missing.

    Raises:
        ImageBuildError: the build failed (``log_tail`` holds the end of its log).
        DockerError: the base image is missing and cannot be pulled.
    """
    found = find_image(docker, base_image=base_image, dependencies=dependencies)
    if found.exists:
        return found.tag
    return build_image(
        docker, found, on_line=on_line, timeout=timeout, limits=limits, runtime=runtime
    )


def build_image(
    docker: Docker,
    found: ImageLookup,
    *,
    on_line: Callable[[str], None] | None = None,
    timeout: float = BUILD_TIMEOUT,
    limits: Limits | None = None,
    runtime: str | None = None,
) -> str:
    """Build the image ``find_image`` found missing; returns its tag.

    Two steps, so that no package code runs as root: ``docker build`` makes the
    trusted part (venv, users, trust store, executor) with no network; then, if there
    are dependencies, a ``docker run`` confined like a session (``limits``,
    ``runtime``; the build user, no capabilities) installs them and ``docker commit``
    tags the result. When an env image of the same stage holds a strict subset of the
    dependencies (``_imagereuse``; ``CODEEXEC_BUILD_REUSE=0`` turns this
    off), the install runs on that image instead of a new trusted part, and pip adds
    only the difference. The install container is removed in every case, and a
    failed build leaves no image behind.

    Raises:
        ImageBuildError: the build failed (``log_tail`` holds the end of its log).
    """
    context = found.context
    deadline = time.monotonic() + timeout
    parent = _closest_image(docker, found)
    if on_line is not None:
        on = f" on {parent.image_id[:19]} (holding {len(parent.dependencies)})" if parent else ""
        on_line(
            f"building image {context.tag} from {found.base} "
            f"with {len(found.dependencies)} dependencies{on}"
        )
    labels = env_labels(found.dependencies, found.base, found.base_id, context.stage)
    if parent is not None:
        stage = parent.image_id
    else:
        stage = _trusted_stage(docker, found, labels, timeout, on_line)
        if not found.dependencies:
            return context.tag
    container = f"codeexec-build-{context.digest[:12]}-{secrets.token_hex(3)}"
    committed = False
    try:
        cache = _cache_volume(docker, found)
        if on_line is not None:
            on_line(f"installing {len(found.dependencies)} dependencies in {container}")
        docker.stream(
            install_argv(
                stage,
                container,
                limits or Limits(),
                runtime=runtime,
                cache_volume=cache,
                flavour=docker.flavour,
            ),  # fmt: skip
            timeout=max(1.0, deadline - time.monotonic()),
            on_line=on_line,
            input=proxy_lines() + "".join(f"REQUIREMENT={d}\n" for d in found.dependencies),
            limits=limits or Limits(),
        )
        changes = commit_changes(docker.image_config(stage)) + label_changes(labels)
        # podman keeps no commit message in its default (OCI) format: no reuse there.
        message = commit_message(context.stage) if docker.flavour == "docker" else None
        docker.commit(container, context.tag, changes, message)
        committed = True
    finally:
        docker.rm(container)
        if not committed and parent is None:
            docker.rmi(stage, check=False)  # the trusted part alone is no session image
    return context.tag


def _trusted_stage(
    docker: Docker,
    found: ImageLookup,
    labels: dict[str, str],
    timeout: float,
    on_line: Callable[[str], None] | None,
) -> str:
    """``docker build`` of the trusted part; returns its id.

    With no dependencies it is the session image, tagged and labelled as one; else
    it stays untagged and without the stage labels, so a build running beside this
    one never takes it for an env image (``rank_parents``).
    """
    import shutil
    import tempfile

    final = None if found.dependencies else found.context.tag
    if final is None:
        labels = {k: labels[k] for k in (LABEL_IMAGE, LABEL_DEPS, LABEL_BASE)}
    tmp = Path(tempfile.mkdtemp(prefix="codeexec-build-"))
    try:
        found.context.write(tmp)
        return docker.build(str(tmp), final, labels=labels, timeout=timeout, on_line=on_line)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _closest_image(docker: Docker, found: ImageLookup) -> Parent | None:
    if not found.dependencies or not reuse_enabled() or docker.flavour != "docker":
        return None
    return closest_image(
        docker, found.dependencies, stage=found.context.stage, base_id=found.base_id
    )


def _cache_volume(docker: Docker, found: ImageLookup) -> str | None:
    """The package cache volume of ``found``'s base image, created if missing.

    One per base image id: a package's build code can write into the cache, and
    what it plants there reaches later builds on the same base (docs/configuration.md).
    """
    if not build_cache_enabled():
        return None
    name = cache_volume_name(found.base_id or found.base)
    docker.volume_create(name, {LABEL_CACHE: "1", LABEL_BASE: found.base})
    return name
