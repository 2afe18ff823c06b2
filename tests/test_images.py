"""images.py: dependency validation, host index settings, the build context hash."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from codeexec.docker import Docker, cache_volume_name
from codeexec.errors import ImageBuildError, InvalidDependency, InvalidOption
from codeexec.images import (
    ImageLookup,
    IndexSettings,
    build_cache_enabled,
    build_image,
    certificate_blocks,
    host_index_settings,
    make_context,
    normalize_dependencies,
    proxy_lines,
    read_requirements_file,
    validate_dependency,
)
from codeexec.models import Limits


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


def _pem(body: str) -> str:
    return f"-----BEGIN CERTIFICATE-----\n{body}\n-----END CERTIFICATE-----\n"


def test_context_hash_follows_every_input(tmp_path: Path) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_text(_pem("QUFB"))
    s = IndexSettings(ca_bundle=bundle)
    a = make_context("base:1", ("six",), s)
    assert make_context("base:1", ("six",), s).tag == a.tag
    assert make_context("base:2", ("six",), s).tag != a.tag
    assert make_context("base:1", ("six", "numpy"), s).tag != a.tag
    assert make_context("base:1", ("six",), s, base_image_id="sha256:1").tag != a.tag
    other_index = IndexSettings(index_url="https://x/simple")
    assert make_context("base:1", ("six",), other_index).tag != a.tag
    bundle.write_text(_pem("QkJC"))
    assert make_context("base:1", ("six",), s).tag != a.tag
    files = a.files
    assert "FROM base:1" in files["Dockerfile"].decode()
    assert files["requirements.txt"] == b"six\n"
    assert "codeexec_executor/__main__.py" in files
    assert "ENV SSL_CERT_FILE=/opt/codeexec/trust/ca-bundle.crt" in files["Dockerfile"].decode()


def test_only_certificate_blocks_of_the_bundle_reach_the_image(tmp_path: Path) -> None:
    bundle = tmp_path / "bundle.pem"
    bundle.write_text(
        "SECRET=hunter2\n# a comment\n"
        + _pem("QUFB").replace("\n", "\r\n")
        + "-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n-----END PRIVATE KEY-----\n"
        + "junk between\n"
        + _pem("QkJC\nQ0ND")
        + "trailing junk"
    )
    expected = (_pem("QUFB") + _pem("QkJC\nQ0ND")).encode()
    assert certificate_blocks(bundle) == expected
    files = make_context("base:1", (), IndexSettings(ca_bundle=bundle)).files
    assert files["trust/ca-bundle.crt"] == expected


def test_a_bundle_without_certificates_is_refused(tmp_path: Path) -> None:
    bundle = tmp_path / "notes.txt"
    bundle.write_text("password=hunter2\n")
    with pytest.raises(InvalidOption) as caught:
        make_context("base:1", (), IndexSettings(ca_bundle=bundle))
    assert caught.value.message == (
        f"the CA bundle {bundle} holds no PEM certificate (-----BEGIN CERTIFICATE-----): "
        "point CODEEXEC_CA_BUNDLE at your CA bundle"
    )


def test_proxy_lines_carry_only_proxy_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("HTTP_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", "http://user:secret@proxy:3128/")
    monkeypatch.setenv("no_proxy", "localhost\nEVIL=1")  # a newline would forge a line
    monkeypatch.setenv("CODEEXEC_TOKEN", "not-a-proxy")
    assert proxy_lines() == "HTTPS_PROXY=http://user:secret@proxy:3128/\n"


FAKE = str(Path(__file__).with_name("fake_docker.py"))
_STAGE = "sha256:" + "5" * 64


@pytest.fixture
def fake_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """tests/fake_docker.py as the docker CLI, recording argv and stdin; a proxy with a secret."""
    log = tmp_path / "argv.log"
    monkeypatch.setenv("FAKE_DOCKER_LOG", str(log))
    monkeypatch.setenv("FAKE_DOCKER_STDIN", "1")
    monkeypatch.setenv("FAKE_DOCKER_IIDFILE", _STAGE)
    config = {"User": "10001:10001", "WorkingDir": "/workspace", "Cmd": ["python", "-m", "x"]}
    monkeypatch.setenv("FAKE_DOCKER_STDOUT_IMAGE", json.dumps([{"Config": config}]))
    monkeypatch.setenv("HTTPS_PROXY", "http://user:secret@127.0.0.1:9/")
    monkeypatch.setenv("CODEEXEC_BUILD_CACHE", "1")  # opt-in; each test says which it needs
    return log


def _lookup(deps: tuple[str, ...]) -> ImageLookup:
    context = make_context("base:1", deps, IndexSettings())
    return ImageLookup("base:1", deps, context, exists=False)


def _argvs(log: Path) -> list[list[str]]:
    return [json.loads(line)["argv"] for line in log.read_text().splitlines()]


def test_dependencies_install_in_a_confined_run_then_commit(fake_build: Path) -> None:
    found = _lookup(("six",))
    lines: list[str] = []
    tag = build_image(Docker(FAKE), found, on_line=lines.append, limits=Limits(memory="300m"))
    assert tag == found.tag
    calls = [json.loads(line) for line in fake_build.read_text().splitlines()]
    verbs = [c["argv"][0] for c in calls]
    assert verbs == ["build", "volume", "run", "image", "commit", "rm"]
    build, volume, run, _, commit, rm = (c["argv"] for c in calls)
    cache = cache_volume_name("base:1")
    assert volume == [
        "volume", "create", "--label", "codeexec.base=base:1", "--label", "codeexec.cache=1", cache
    ]  # fmt: skip
    assert run[run.index("--mount") + 1] == (
        f"type=volume,source={cache},target=/opt/codeexec/cache"
    )
    assert "--tag" not in build  # the trusted stage alone is never tagged
    container = run[run.index("--name") + 1]
    assert container.startswith(f"codeexec-build-{found.context.digest[:12]}-")
    assert run[run.index("--user") + 1] == "10002:10002"
    assert run[run.index("--memory") + 1] == "300m"
    assert run[-3:] == [_STAGE, "sh", "/opt/codeexec/build/install.sh"]
    assert commit[-2:] == [container, found.tag]
    assert rm == ["rm", "--force", container]
    # The proxy credentials travel on the install's stdin only, with the requirements.
    assert calls[2]["stdin"] == "HTTPS_PROXY=http://user:secret@127.0.0.1:9/\nREQUIREMENT=six\n"
    assert not any("secret" in arg for argv in _argvs(fake_build) for arg in argv)
    assert any(line.startswith("installing 1 dependencies in codeexec-build-") for line in lines)


def test_a_failed_install_leaves_no_container_no_image_and_no_tag(
    fake_build: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_DOCKER_FAIL", "run")
    monkeypatch.setenv("FAKE_DOCKER_STDERR", "ERROR: No matching distribution found for nope\n")
    with pytest.raises(ImageBuildError) as caught:
        build_image(Docker(FAKE), _lookup(("nope",)))
    assert "No matching distribution found for nope" in caught.value.log_tail
    argvs = _argvs(fake_build)[1:]  # after the build: volume create, run, rm, rmi
    assert [a[0] for a in argvs] == ["volume", "run", "rm", "rmi"]
    assert argvs[2] == ["rm", "--force", argvs[1][argvs[1].index("--name") + 1]]
    assert argvs[3] == ["rmi", _STAGE]


def test_the_package_cache_can_be_turned_off(
    fake_build: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CODEEXEC_BUILD_CACHE", "0")
    build_image(Docker(FAKE), _lookup(("six",)))
    argvs = _argvs(fake_build)
    assert [a[0] for a in argvs] == ["build", "run", "image", "commit", "rm"]
    assert "--mount" not in argvs[1]


def test_the_package_cache_is_off_unless_asked_for(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CODEEXEC_BUILD_CACHE", raising=False)
    assert not build_cache_enabled()
    monkeypatch.setenv("CODEEXEC_BUILD_CACHE", "1")
    assert build_cache_enabled()


def test_each_base_image_has_its_own_package_cache() -> None:
    assert cache_volume_name("sha256:aa") != cache_volume_name("sha256:bb")
    assert cache_volume_name("sha256:aa") == cache_volume_name("sha256:aa")
    assert cache_volume_name("sha256:aa").startswith("codeexec-cache-")


def test_no_dependencies_build_only_and_tag_directly(fake_build: Path) -> None:
    found = _lookup(())
    assert build_image(Docker(FAKE), found) == found.tag
    (build,) = _argvs(fake_build)
    assert build[build.index("--tag") + 1] == found.tag
