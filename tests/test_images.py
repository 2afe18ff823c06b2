"""images.py: dependency validation, host index settings, the build context hash."""

from __future__ import annotations

from pathlib import Path

import pytest

from codeexec.errors import InvalidDependency
from codeexec.images import (
    IndexSettings,
    host_index_settings,
    make_context,
    normalize_dependencies,
    read_requirements_file,
    validate_dependency,
)


@pytest.mark.parametrize(
    "spec",
    [
        "numpy",
        "numpy==2.*",
        "pandas>=2,<3",
        "requests[socks]>=2.31",
        'tomli; python_version < "3.11"',
        "  six  ",
    ],
)
def test_plain_requirements_are_accepted(spec: str) -> None:
    assert validate_dependency(spec)


@pytest.mark.parametrize(
    ("spec", "why"),
    [
        ("numpy; rm -rf /", "not a valid pip requirement"),
        ("--index-url http://evil.example/simple", "pip option"),
        ("-e .", "pip option"),
        ("numpy\nrequests", "newline"),
        ("numpy\r", "newline"),
        ("numpy && curl x", "shell syntax"),
        ("$(reboot)", "shell syntax"),
        ("`id`", "shell syntax"),
        ("git+https://example.com/repo.git", "not a valid pip requirement"),
        ("pkg @ https://example.com/pkg.whl", "URL"),
        (".", "not a valid pip requirement"),
        ("./local/dir", "not a valid pip requirement"),
        ("", "empty"),
    ],
)
def test_injection_attempts_are_refused(spec: str, why: str) -> None:
    with pytest.raises(InvalidDependency, match=why):
        validate_dependency(spec)


def test_urls_only_when_allowed() -> None:
    assert validate_dependency("pkg @ https://example.com/pkg.whl", allow_urls=True)


def test_normalize_sorts_and_dedupes() -> None:
    assert normalize_dependencies(["six", "numpy==2.*", "six"]) == ("numpy==2.*", "six")
    assert normalize_dependencies("six") == ("six",)


def test_requirements_file(tmp_path: Path) -> None:
    req = tmp_path / "requirements.txt"
    req.write_text("# comment\nnumpy==2.*  # inline\n\nsix\n--index-url http://x\n")
    specs = read_requirements_file(req)
    assert specs[:2] == ["numpy==2.*", "six"]
    with pytest.raises(InvalidDependency, match="pip option"):
        normalize_dependencies(specs)
    with pytest.raises(InvalidDependency, match="cannot read"):
        read_requirements_file(tmp_path / "missing.txt")


def test_index_settings_drop_local_indexes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    conf = tmp_path / "pip.conf"
    conf.write_text(
        "[global]\nindex-url = https://mirror.example/simple\n"
        "extra-index-url = file:///opt/pypi/simple https://extra.example/simple\n"
        "find-links = /opt/wheels\n"
    )
    bundle = tmp_path / "ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    for var in (
        "PIP_INDEX_URL",
        "PIP_EXTRA_INDEX_URL",
        "PIP_TRUSTED_HOST",
        "CODEEXEC_INDEX_URL",
        "SSL_CERT_FILE",
        "REQUESTS_CA_BUNDLE",
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("PIP_CONFIG_FILE", str(conf))
    monkeypatch.setenv("PIP_CERT", str(bundle))
    settings = host_index_settings()
    assert settings.index_url == "https://mirror.example/simple"
    assert settings.extra_index_urls == ("https://extra.example/simple",)
    assert settings.ca_bundle == bundle
    assert "file://" not in settings.pip_conf() and "/opt/wheels" not in settings.pip_conf()
    monkeypatch.setenv("CODEEXEC_CA_BUNDLE", str(conf))
    assert host_index_settings().ca_bundle == conf


def test_context_hash_follows_every_input(tmp_path: Path) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_text("A")
    s = IndexSettings(ca_bundle=bundle)
    a = make_context("base:1", ("six",), s)
    assert make_context("base:1", ("six",), s).tag == a.tag
    assert make_context("base:2", ("six",), s).tag != a.tag
    assert make_context("base:1", ("six", "numpy"), s).tag != a.tag
    assert make_context("base:1", ("six",), s, base_image_id="sha256:1").tag != a.tag
    other_index = IndexSettings(index_url="https://x/simple")
    assert make_context("base:1", ("six",), other_index).tag != a.tag
    bundle.write_text("B")
    assert make_context("base:1", ("six",), s).tag != a.tag
    files = a.files
    assert "FROM base:1" in files["Dockerfile"].decode()
    assert files["requirements.txt"] == b"six\n"
    assert "codeexec_executor/__main__.py" in files
    assert "ENV SSL_CERT_FILE=/opt/codeexec/trust/ca-bundle.crt" in files["Dockerfile"].decode()
