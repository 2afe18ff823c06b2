"""Session images: dependency validation, the build context, and the content-hash cache.

A session's image is ``FROM <base>`` plus the executor and the requested
dependencies. Its tag is a hash of everything that goes into it, so asking again
for the same dependencies builds nothing.
"""

from __future__ import annotations

import json
import os
import re
import shlex
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .docker import LABEL_BASE, LABEL_DEPS, LABEL_IMAGE, Docker
from .errors import InvalidDependency

DEFAULT_BASE_IMAGE = "python:3.12-slim"
IMAGE_REPOSITORY = "codeexec-env"
BUILD_TIMEOUT = 1800.0

_TEMPLATE_NAMES = ("Dockerfile.template", "install.sh")
_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f`$|&\\]")
_CA_CANDIDATES = (
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
)


def executor_source_dir() -> Path:
    """Where the executor and the Dockerfile template live (wheel or checkout)."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "_executor_image", here.parent / "executor_image"):
        if (candidate / "codeexec_executor" / "__main__.py").is_file():
            return candidate
    raise FileNotFoundError(
        "codeexec's executor files are missing from this installation; reinstall codeexec"
    )


def default_base_image() -> str:
    return os.environ.get("CODEEXEC_BASE_IMAGE") or DEFAULT_BASE_IMAGE


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
            "--index-url come from the host's pip settings (see docs/configuration.md)"
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


# -- the host's package-index and TLS settings ---------------------------------------


@dataclass(frozen=True)
class IndexSettings:
    """Package-index settings carried into builds and runtime installs."""

    index_url: str | None = None
    extra_index_urls: tuple[str, ...] = ()
    trusted_hosts: tuple[str, ...] = ()
    ca_bundle: Path | None = None

    def pip_conf(self) -> str:
        lines = ["[global]"]
        if self.index_url:
            lines.append(f"index-url = {self.index_url}")
        if self.extra_index_urls:
            lines.append("extra-index-url = " + " ".join(self.extra_index_urls))
        if self.trusted_hosts:
            lines.append("trusted-host = " + " ".join(self.trusted_hosts))
        return "\n".join(lines) + "\n"

    def uv_env(self) -> str:
        lines = []
        if self.index_url:
            lines.append(f"export UV_INDEX_URL={shlex.quote(self.index_url)}")
        if self.extra_index_urls:
            lines.append(
                "export UV_EXTRA_INDEX_URL=" + shlex.quote(" ".join(self.extra_index_urls))
            )
        if self.trusted_hosts:
            lines.append("export UV_INSECURE_HOST=" + shlex.quote(" ".join(self.trusted_hosts)))
        return "\n".join(lines) + "\n"


def _remote(urls: Iterable[str]) -> tuple[str, ...]:
    # A file:// index or a local path exists on the host only, never in a build.
    return tuple(u for u in urls if u and re.match(r"^https?://", u))


def _pip_config_files() -> list[Path]:
    home = Path.home()
    xdg = os.environ.get("XDG_CONFIG_HOME") or str(home / ".config")
    files = [
        Path("/etc/xdg/pip/pip.conf"),
        Path("/etc/pip.conf"),
        home / ".pip" / "pip.conf",
        Path(xdg) / "pip" / "pip.conf",
    ]
    if os.environ.get("VIRTUAL_ENV"):
        files.append(Path(os.environ["VIRTUAL_ENV"]) / "pip.conf")
    if os.environ.get("PIP_CONFIG_FILE"):
        files.append(Path(os.environ["PIP_CONFIG_FILE"]))
    return files


def host_index_settings() -> IndexSettings:
    """The host's pip index settings and CA bundle (env over config files).

    ``CODEEXEC_CA_BUNDLE`` > ``PIP_CERT`` > ``SSL_CERT_FILE`` > ``REQUESTS_CA_BUNDLE`` >
    pip's ``cert`` setting > the system bundle. ``CODEEXEC_INDEX_URL`` overrides the index.
    """
    conf: dict[str, str] = {}
    import configparser  # here, not at the top: off the `codeexec exec` path

    parser = configparser.RawConfigParser()
    for path in _pip_config_files():
        try:
            parser.read(path, encoding="utf-8")
        except (configparser.Error, OSError):
            continue
    for section in ("global", "install"):
        if parser.has_section(section):
            conf.update({k: v for k, v in parser.items(section)})
    env = os.environ
    index_url = env.get("CODEEXEC_INDEX_URL") or env.get("PIP_INDEX_URL") or conf.get("index-url")
    extra = (env.get("PIP_EXTRA_INDEX_URL") or conf.get("extra-index-url") or "").split()
    trusted = (env.get("PIP_TRUSTED_HOST") or conf.get("trusted-host") or "").split()
    ca: Path | None = None
    for candidate in (
        env.get("CODEEXEC_CA_BUNDLE"),
        env.get("PIP_CERT"),
        env.get("SSL_CERT_FILE"),
        env.get("REQUESTS_CA_BUNDLE"),
        conf.get("cert"),
        *_CA_CANDIDATES,
    ):
        if candidate and Path(candidate).is_file():
            ca = Path(candidate)
            break
    remote_index = _remote([index_url] if index_url else [])
    return IndexSettings(
        index_url=remote_index[0] if remote_index else None,
        extra_index_urls=_remote(extra),
        trusted_hosts=tuple(trusted),
        ca_bundle=ca,
    )


# -- build context and tag -----------------------------------------------------------


@dataclass(frozen=True)
class BuildContext:
    """The files of one image build, and the content hash that names the image."""

    files: dict[str, bytes]
    digest: str

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
        files["trust/ca-bundle.crt"] = settings.ca_bundle.read_bytes()
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
    for rel in sorted(files):
        digest.update(rel.encode() + b"\0" + hashlib.sha256(files[rel]).digest())
    return BuildContext(files=files, digest=digest.hexdigest())


@dataclass(frozen=True)
class ImageLookup:
    """The build context for a dependency set, and whether its image already exists."""

    base: str
    dependencies: tuple[str, ...]
    context: BuildContext
    exists: bool

    @property
    def tag(self) -> str:
        return self.context.tag


def find_image(
    docker: Docker, *, base_image: str | None, dependencies: Sequence[str]
) -> ImageLookup:
    """Look the image for ``dependencies`` up; never builds.

    Two docker calls: the base image's id (it is part of the hash), then the tag.
    """
    base = base_image or default_base_image()
    base_id = docker.image_id(base) or ""
    context = make_context(base, dependencies, host_index_settings(), base_id)
    return ImageLookup(base, tuple(dependencies), context, docker.image_exists(context.tag))


def ensure_image(
    docker: Docker,
    *,
    base_image: str | None,
    dependencies: Sequence[str],
    on_line: Callable[[str], None] | None = None,
    timeout: float = BUILD_TIMEOUT,
) -> str:
    """Return the tag of the image for ``dependencies``, building it only if missing.

    Raises:
        ImageBuildError: the build failed (``log_tail`` holds the end of its log).
        DockerError: the base image is missing and cannot be pulled.
    """
    found = find_image(docker, base_image=base_image, dependencies=dependencies)
    if found.exists:
        return found.tag
    return build_image(docker, found, on_line=on_line, timeout=timeout)


def build_image(
    docker: Docker,
    found: ImageLookup,
    *,
    on_line: Callable[[str], None] | None = None,
    timeout: float = BUILD_TIMEOUT,
) -> str:
    """Build the image ``find_image`` found missing; returns its tag.

    Raises:
        ImageBuildError: the build failed (``log_tail`` holds the end of its log).
    """
    context = found.context
    if on_line is not None:
        on_line(
            f"building image {context.tag} from {found.base} "
            f"with {len(found.dependencies)} dependencies"
        )
    labels = {
        LABEL_IMAGE: "1",
        LABEL_DEPS: json.dumps(list(found.dependencies)),
        LABEL_BASE: found.base,
    }
    build_args = {
        k: os.environ[k]
        for k in ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy")
        if os.environ.get(k)
    }
    import shutil
    import tempfile

    tmp = Path(tempfile.mkdtemp(prefix="codeexec-build-"))
    try:
        context.write(tmp)
        docker.build(
            str(tmp),
            context.tag,
            labels=labels,
            build_args=build_args,
            timeout=timeout,
            on_line=on_line,
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return context.tag
