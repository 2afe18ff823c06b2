"""The host's package-index, proxy and TLS settings, carried into image builds.

Builds honour them so that they work behind proxies and private indexes; only
what is safe to copy goes into an image (remote index URLs, certificate blocks).
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .errors import InvalidOption

_PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy")
_PEM_CERT = re.compile(
    rb"-----BEGIN CERTIFICATE-----\r?\n[A-Za-z0-9+/=\r\n]+?-----END CERTIFICATE-----"
)
_CA_CANDIDATES = (
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
)


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


def certificate_blocks(bundle: Path) -> bytes:
    """Only the PEM certificate blocks of ``bundle``: what of it goes into an image.

    A variable such as ``SSL_CERT_FILE`` may point at any file; nothing but the
    ``BEGIN/END CERTIFICATE`` blocks in it is copied into session images.

    Raises:
        InvalidOption: the file cannot be read or holds no certificate.
    """
    try:
        data = bundle.read_bytes()
    except OSError as exc:
        raise InvalidOption(f"cannot read the CA bundle {bundle}: {exc.strerror}") from None
    blocks = _PEM_CERT.findall(data)
    if not blocks:
        raise InvalidOption(
            f"the CA bundle {bundle} holds no PEM certificate (-----BEGIN CERTIFICATE-----): "
            "point CODEEXEC_CA_BUNDLE at your CA bundle"
        )
    return b"\n".join(block.replace(b"\r\n", b"\n") for block in blocks) + b"\n"


def proxy_lines() -> str:
    """The host's proxy variables as ``NAME=value`` lines, for the install's stdin."""
    return "".join(f"{k}={v}\n" for k in _PROXY_VARS if (v := os.environ.get(k)) and "\n" not in v)
