"""Rich outputs, files and runtime installs against the real engine (issue #7)."""

from __future__ import annotations

import hashlib
import json
import os
import struct
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from codeexec import (
    CodeexecError,
    ContainerSession,
    Display,
    ExecResult,
    FileTransferError,
    InvalidDependency,
    StreamEvent,
)
from codeexec.session import MAX_FILE_BYTES
from tests.conftest import RUN_ID, unique_name

pytestmark = pytest.mark.docker

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(data: bytes | str) -> tuple[int, int]:
    """Check that ``data`` is a whole, valid PNG (CRCs, pixel data); return (width, height)."""
    assert isinstance(data, bytes) and data[:8] == PNG_SIGNATURE
    pos, kinds, idat, ihdr = 8, [], b"", b""
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert zlib.crc32(kind + body) == crc, f"bad CRC in {kind!r}"
        kinds.append(kind)
        if kind == b"IHDR":
            ihdr = body
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    assert kinds[0] == b"IHDR" and kinds[-1] == b"IEND", kinds
    width, height, depth, color = struct.unpack(">IIBB", ihdr[:10])
    channels = {0: 1, 2: 3, 4: 2, 6: 4}[color]  # grey, RGB, grey+alpha, RGBA
    assert depth == 8
    assert len(zlib.decompress(idat)) == height * (1 + width * channels)  # a filter byte a row
    return width, height


def pngs(result: ExecResult) -> list[bytes | str]:
    return [d.data["image/png"] for d in result.displays if "image/png" in d.data]


@pytest.fixture(scope="module")
def rich(docker_engine: None) -> Iterator[ContainerSession]:
    with ContainerSession.start(
        f"m{RUN_ID}-outputs", dependencies=["matplotlib", "pandas", "pillow"]
    ) as s:
        yield s


@pytest.fixture
def plain() -> Iterator[ContainerSession]:
    with ContainerSession.start(unique_name()) as s:
        yield s


# -- plots ---------------------------------------------------------------------------


def test_matplotlib_figure_without_show_is_a_640x480_png(rich: ContainerSession) -> None:
    r = rich.execute("import matplotlib.pyplot as plt\nplt.plot([1, 2, 3])")
    assert r.ok, r
    assert len(r.displays) == 1
    (display,) = r.displays
    assert display.data["text/plain"] == "<Figure size 640x480 with 1 Axes>"
    assert png_size(display.data["image/png"]) == (640, 480)
    assert r.value is not None and "Line2D" in r.value  # the value stays the REPL's
    # The figure was closed after it was sent: the next cell shows nothing.
    assert rich.execute("plt.get_fignums()").value == "[]"


def test_plt_show_neither_warns_nor_loses_the_figure(rich: ContainerSession) -> None:
    r = rich.execute(
        "import warnings\nimport matplotlib\nimport matplotlib.pyplot as plt\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        "    plt.plot([3, 1, 2])\n"
        "    plt.show()\n"
        "print(matplotlib.get_backend(), plt.get_fignums(), [str(w.message) for w in caught])"
    )
    assert r.ok, r
    # Agg: show() is a no-op (no display server, no warning) and the figure stays open.
    assert r.stdout.lower() == "agg [1] []\n", r.stdout
    assert r.stderr == ""
    assert [png_size(p) for p in pngs(r)] == [(640, 480)]


def test_two_figures_are_two_displays(rich: ContainerSession) -> None:
    r = rich.execute(
        "import matplotlib.pyplot as plt\n"
        "fig1 = plt.figure()\nplt.plot([1, 2])\n"
        "fig2 = plt.figure(figsize=(3, 2))\nplt.bar(['a', 'b'], [1, 2])\n"
        "plt.show()"
    )
    assert r.ok, r
    assert [png_size(p) for p in pngs(r)] == [(640, 480), (300, 200)]


def test_figure_of_a_failing_cell_is_still_returned(rich: ContainerSession) -> None:
    r = rich.execute("import matplotlib.pyplot as plt\nplt.plot([1, 2])\n1/0")
    assert r.status == "error" and r.error is not None
    assert [png_size(p) for p in pngs(r)] == [(640, 480)]


# -- objects with _repr_*_ -------------------------------------------------------------


def test_dataframe_html_and_text(rich: ContainerSession) -> None:
    r = rich.execute("import pandas as pd\npd.DataFrame({'a': [1, 2], 'b': ['x', 'y']})")
    assert r.ok, r
    (display,) = r.displays
    html = display.data["text/html"]
    assert isinstance(html, str) and "<table" in html and "<td>x</td>" in html
    assert display.data["text/plain"] == r.value
    assert r.value is not None and r.value.split() == ["a", "b", "0", "1", "x", "1", "2", "y"]


def test_pil_image_png(rich: ContainerSession) -> None:
    r = rich.execute("from PIL import Image\nImage.new('RGB', (30, 20), 'red')")
    assert r.ok, r
    (display,) = r.displays
    assert png_size(display.data["image/png"]) == (30, 20)
    assert str(display.data["text/plain"]).startswith("<PIL.Image.Image image mode=RGB size=30x20")


def test_display_of_several_objects_keeps_their_order(rich: ContainerSession) -> None:
    r = rich.execute(
        "import pandas as pd\nfrom PIL import Image\n"
        "print('before')\n"
        "display(pd.DataFrame({'n': [1]}), Image.new('L', (4, 3)), 'just text')\n"
        "print('after')"
    )
    assert r.ok, r
    assert r.stdout == "before\nafter\n"
    assert [d.mime_types for d in r.displays] == [
        ("text/html", "text/plain"),
        ("image/png", "image/jpeg", "text/plain"),
        ("text/plain",),
    ]
    assert png_size(r.displays[1].data["image/png"]) == (4, 3)
    assert r.displays[2].data["text/plain"] == "'just text'"
    assert r.value is None


def test_svg_markdown_json_reprs(rich: ContainerSession) -> None:
    r = rich.execute(
        "class Rich:\n"
        "    def _repr_svg_(self): return '<svg xmlns=\"http://www.w3.org/2000/svg\"/>'\n"
        "    def _repr_markdown_(self): return '**bold**'\n"
        "    def _repr_json_(self): return {'k': [1, 2]}\n"
        "    def __repr__(self): return 'Rich()'\n"
        "Rich()"
    )
    assert r.ok and r.value == "Rich()", r
    (display,) = r.displays
    assert display.data["image/svg+xml"] == '<svg xmlns="http://www.w3.org/2000/svg"/>'
    assert display.data["text/markdown"] == "**bold**"
    assert json.loads(display.data["application/json"]) == {"k": [1, 2]}
    assert display.data["text/plain"] == "Rich()"


def test_failing_repr_html_falls_back_to_text(rich: ContainerSession) -> None:
    rich.execute(
        "class Broken:\n"
        "    def _repr_html_(self): raise RuntimeError('no html today')\n"
        "    def __repr__(self): return 'Broken()'\n"
    )
    r = rich.execute("Broken()")
    assert r.ok and r.value == "Broken()" and r.displays == (), r  # nothing rich to show
    r = rich.execute("display(Broken())")
    assert r.ok and [d.data for d in r.displays] == [{"text/plain": "Broken()"}], r


def test_save_displays_and_to_dict(rich: ContainerSession, tmp_path: Path) -> None:
    r = rich.execute(
        "import matplotlib.pyplot as plt, pandas as pd\n"
        "plt.plot([1, 2, 3])\n"
        "display(pd.DataFrame({'a': [1]}))"
    )
    assert r.ok, r
    # display() runs during the cell; figures are collected when it ends.
    assert [d.mime_types for d in r.displays] == [
        ("text/html", "text/plain"),
        ("image/png", "text/plain"),
    ]
    paths = r.save_displays(tmp_path / "out")
    assert sorted(p.name for p in paths) == ["output-1.html", "output-2.png"]
    assert png_size((tmp_path / "out" / "output-2.png").read_bytes()) == (640, 480)
    assert "<table" in (tmp_path / "out" / "output-1.html").read_text(encoding="utf-8")
    data = json.loads(json.dumps(r.to_dict()))
    assert data["displays"][1]["image/png"].startswith("iVBORw0KGgo")  # base64 PNG


def test_execute_stream_yields_displays(rich: ContainerSession) -> None:
    events = list(
        rich.execute_stream("import matplotlib.pyplot as plt\nprint('plotting')\nplt.plot([1])")
    )
    # Output may arrive in several stream events; the figure comes after all of it.
    streams = [e for e in events if isinstance(e, StreamEvent)]
    assert "".join(e.text for e in streams) == "plotting\n"
    rest = events[len(streams) :]
    assert [type(e) for e in rest] == [Display, ExecResult], events
    assert isinstance(rest[0], Display) and "image/png" in rest[0].data


# -- files ---------------------------------------------------------------------------


def test_binary_round_trip_byte_for_byte(plain: ContainerSession, tmp_path: Path) -> None:
    payload = os.urandom(4 * 2**20 + 7)
    src = tmp_path / "blob.bin"
    src.write_bytes(payload)
    t0 = time.monotonic()
    assert plain.upload(src, "data/blob.bin") == len(payload)
    t1 = time.monotonic()
    # Relative paths land in /workspace, and the container sees the same bytes.
    r = plain.execute(
        "import hashlib\nhashlib.sha256(open('/workspace/data/blob.bin', 'rb').read()).hexdigest()"
    )
    assert r.value == repr(hashlib.sha256(payload).hexdigest()), r
    t2 = time.monotonic()
    back = plain.download("/workspace/data/blob.bin", tmp_path / "back.bin")
    t3 = time.monotonic()
    assert back == tmp_path / "back.bin" and back.read_bytes() == payload
    print(f"\n4 MiB upload {t1 - t0:.3f} s, download {t3 - t2:.3f} s")
    # Downloading into a directory keeps the file's name.
    (tmp_path / "dir").mkdir()
    assert plain.download("data/blob.bin", tmp_path / "dir").name == "blob.bin"


def test_write_read_text_and_modes(plain: ContainerSession) -> None:
    assert plain.write_file("run.sh", b"#!/bin/sh\necho hi\n", mode=0o755) == 18
    r = plain.execute(
        "import os, subprocess\n"
        "oct(os.stat('run.sh').st_mode & 0o777), "
        "subprocess.run(['./run.sh'], capture_output=True, text=True).stdout"
    )
    assert r.value == "('0o755', 'hi\\n')", r
    assert plain.write_file("/tmp/deep/er/file.txt", b"") == 0  # parents made, empty file
    assert plain.read_file("/tmp/deep/er/file.txt") == b""
    assert plain.execute("open('made.txt', 'w').write('from code')").ok
    assert plain.read_file("made.txt") == b"from code"


def test_file_errors_are_clear(plain: ContainerSession, tmp_path: Path) -> None:
    with pytest.raises(FileTransferError, match="no such file: missing.txt") as info:
        plain.read_file("missing.txt")
    assert info.value.code == "not_found"
    with pytest.raises(FileTransferError, match="Read-only file system") as info:
        plain.write_file("/usr/x", b"data")
    assert info.value.code == "io_error"
    plain.write_file("ten.bin", b"0123456789")
    with pytest.raises(FileTransferError, match="10 bytes, more than the limit of 5") as info:
        plain.read_file("ten.bin", max_bytes=5)
    assert info.value.code == "too_large"
    # No ceiling on writes any more (issue 15): tests/integration/test_files.py moves
    # 100 MiB; read_file's default cap guards memory, since it returns the bytes.
    with pytest.raises(FileTransferError, match="more than the limit of 33554432"):
        plain.execute(f"open('big.bin', 'wb').truncate({MAX_FILE_BYTES + 1})")
        plain.read_file("big.bin")
    with pytest.raises(FileTransferError, match="is a directory"):
        plain.read_file("/workspace")
    with pytest.raises(FileTransferError, match="cannot read"):
        plain.upload(tmp_path / "nope", "x")
    # The session is still usable after every refusal.
    assert plain.execute("1 + 1").value == "2"


def test_directory_paths(plain: ContainerSession, tmp_path: Path) -> None:
    src = tmp_path / "notes.txt"
    src.write_text("hello")
    plain.execute("import os; os.makedirs('inbox')")
    # A path ending with "/" is a directory: the file keeps its name, like cp.
    assert plain.upload(src, "inbox/") == 5
    assert plain.read_file("inbox/notes.txt") == b"hello"
    assert plain.upload(src, "") == 5
    assert plain.read_file("/workspace/notes.txt") == b"hello"
    # An existing directory is never replaced by a file, and write_file needs a name.
    with pytest.raises(FileTransferError, match="Is a directory"):
        plain.upload(src, "inbox")
    with pytest.raises(FileTransferError, match="names a directory"):
        plain.write_file("outbox/", b"x")
    assert (
        plain.execute("os.path.isdir('inbox'), os.path.exists('outbox')").value == "(True, False)"
    )


# -- packages at runtime ----------------------------------------------------------------


def test_install_imports_without_restart_and_survives_reset(plain: ContainerSession) -> None:
    plain.execute("marker = 41")
    r = plain.execute("import six")
    assert r.status == "error" and r.error is not None
    assert r.error.ename == "ModuleNotFoundError"
    seen: list[str] = []
    t0 = time.monotonic()
    r = plain.install(["six>=1.16"], on_output=lambda name, text: seen.append(text))
    print(f"\ninstall six: {time.monotonic() - t0:.2f} s")
    assert r.ok, r
    assert "Successfully installed six" in r.stdout and "".join(seen) == r.stdout + r.stderr
    r = plain.execute("import six\nsix.__file__, marker + 1")
    assert r.value == "('/tmp/.codeexec-site/six.py', 42)", r  # same namespace
    # It lives on the /tmp tmpfs (each worker appends it to sys.path), so a fresh
    # process still sees it.
    plain.reset()
    r = plain.execute("import six\n'marker' in dir(), six.__name__")
    assert r.value == "(False, 'six')", r


def test_failed_install_is_an_error_result(plain: ContainerSession) -> None:
    r = plain.install(["six==0.0.1"])  # no such version
    assert r.status == "error" and r.error is not None
    assert r.error.ename == "InstallError" and "pip exited with status" in r.error.evalue
    assert "No matching distribution" in r.stderr + r.stdout
    assert plain.execute("1").value == "1"


@pytest.mark.parametrize(
    "bad", [["six; import os"], ["--index-url=http://evil"], ["-r requirements.txt"], []]
)
def test_invalid_requirement_is_refused_before_anything_runs(
    plain: ContainerSession, bad: list[str]
) -> None:
    with pytest.raises(InvalidDependency):
        plain.install(bad)
    assert plain.execute("import os; os.path.exists('/tmp/.codeexec-site')").value == "False"


def test_install_without_network_says_why(tmp_path: Path) -> None:
    with ContainerSession.start(unique_name(), network="none") as s:
        with pytest.raises(CodeexecError, match="network 'none'"):
            s.install(["six"])
        # Files still travel (over the docker exec relay).
        payload = os.urandom(2**20)
        assert s.write_file("x.bin", payload) == len(payload)
        assert s.read_file("x.bin") == payload
