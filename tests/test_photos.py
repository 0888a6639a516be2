"""Reference photos: the Qt .rcc reader, fetching, listing, and `prepare`/`eligible`.

`test_list_photos_real` fetches the three Debian packages (185 MB, a few seconds with apt) into the
normal cache, so later runs reuse them; it skips only where apt-get is missing and nothing is unpacked.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import stat
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from qponder.data import photos as P
from qponder.errors import QPonderError

# ------------------------------------------------------------------------------------ a tiny rcc writer


def write_rcc(path: Path, tree: dict, version: int = 2, compress: frozenset = frozenset()) -> None:
    """Write a Qt resource bundle. ``tree``: name -> bytes (a file) or dict (a folder); files named in
    ``compress`` are stored qCompress-ed (flag 1)."""
    names, data = bytearray(), bytearray()
    nodes: list[list] = [[0, 2, tree]]  # [name offset, flags, payload]; node 0 is the unnamed root

    def add_name(n: str) -> int:
        off = len(names)
        names.extend(struct.pack(">HI", len(n), 0) + n.encode("utf-16-be"))  # the hash is not checked
        return off

    # Breadth-first, so each folder's children are contiguous, as the format requires.
    i = 0
    while i < len(nodes):
        _, flags, payload = nodes[i]
        if flags & 2:
            first = len(nodes)
            for n, v in payload.items():
                if isinstance(v, dict):
                    nodes.append([add_name(n), 2, v])
                else:
                    blob = struct.pack(">I", len(v)) + zlib.compress(v) if n in compress else v
                    nodes.append([add_name(n), 1 if n in compress else 0, blob])
            nodes[i][2] = (len(payload), first)
        else:
            nodes[i][2] = len(data)
            data.extend(struct.pack(">I", len(payload)) + payload)
        i += 1

    tree_b = bytearray()
    for name_off, flags, payload in nodes:
        tree_b += struct.pack(">IH", name_off, flags)
        tree_b += struct.pack(">II", *payload) if flags & 2 else struct.pack(">HHI", 0, 0, payload)
        if version >= 2:
            tree_b += struct.pack(">Q", 0)
    head = 20 + (4 if version >= 3 else 0)
    tree_off, data_off = head, head + len(tree_b)
    names_off = data_off + len(data)
    header = b"qres" + struct.pack(">4I", version, tree_off, data_off, names_off)
    if version >= 3:
        header += struct.pack(">I", 0)
    path.write_bytes(header + tree_b + data + names)


def _webp(color=(200, 30, 40), size=(64, 48)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="WEBP", quality=90)
    return buf.getvalue()


README = b"""Copyright: Someone
Source: https://example.org/a.jpg
License: Public Domain
Files:
cat.webp

Copyright: Other
License: CC-BY-SA 4.0
Files: dog.webp
"""


@pytest.mark.parametrize("version", [1, 2, 3])
def test_rcc_roundtrip(tmp_path, version):
    pic = _webp()
    f = tmp_path / "x.rcc"
    write_rcc(f, {"gcompris": {"a": {"cat.webp": pic, "README": README, "hé.txt": b"x" * 1000}, "b.txt": b""}},
              version=version, compress=frozenset({"README", "hé.txt"}))
    entries = P.rcc_entries(f)
    assert sorted(entries) == ["/gcompris/a/README", "/gcompris/a/cat.webp", "/gcompris/a/hé.txt", "/gcompris/b.txt"]
    assert P.rcc_read(f, "/gcompris/a/cat.webp") == pic
    assert P.rcc_read(f, "/gcompris/a/README") == README
    assert P.rcc_read(f, "/gcompris/a/hé.txt") == b"x" * 1000
    assert P.rcc_read(f, "/gcompris/b.txt") == b""
    img = P.Photo("t", "gcompris-qt-data", "CC0-1.0", str(f), "/gcompris/a/cat.webp").load()
    assert img.mode == "RGB" and img.size == (64, 48)
    with pytest.raises(QPonderError, match="not in"):
        P.rcc_read(f, "/gcompris/nope")


def test_rcc_rejects_bad_files(tmp_path):
    bad = tmp_path / "bad.rcc"
    bad.write_bytes(b"PK\x03\x04 not a resource file")
    with pytest.raises(QPonderError, match="not a Qt resource"):
        P.rcc_entries(bad)
    good = tmp_path / "good.rcc"
    write_rcc(good, {"a": {"b": b"123"}})
    cut = tmp_path / "cut.rcc"
    cut.write_bytes(good.read_bytes()[:30])
    with pytest.raises(QPonderError, match="damaged"):
        P.rcc_entries(cut)


def test_gcompris_listing_names_and_licences(tmp_path):
    rcc_dir = tmp_path / P._GCOMPRIS_RCC
    rcc_dir.mkdir(parents=True)
    res = {"cat.webp": _webp(), "dog.webp": _webp((20, 90, 200)), "owl.webp": _webp(), "README": README,
           "icon.svg": b"<svg/>", "sub": {"deeper.webp": _webp()}}
    write_rcc(rcc_dir / "erase.rcc", {"gcompris": {"src": {"activities": {"erase": {"resource": res}}}}},
              version=3, compress=frozenset({"README"}))
    photos = {p.name: p for p in P._gcompris(tmp_path)}
    assert sorted(photos) == ["gcompris-erase-cat", "gcompris-erase-dog", "gcompris-erase-owl"]
    assert photos["gcompris-erase-cat"].license == "public-domain"
    assert photos["gcompris-erase-dog"].license == "CC-BY-SA-4.0"
    assert photos["gcompris-erase-owl"].license.startswith("see /usr/share/doc/gcompris-qt-data")
    assert photos["gcompris-erase-dog"].load().getpixel((10, 10))[2] > 150


# ----------------------------------------------------------------------------------- prepare, eligible


@pytest.mark.parametrize("src_size,mode", [((1920, 1080), "RGB"), ((600, 900), "RGB"), ((320, 213), "L"),
                                           ((100, 80), "RGBA"), ((2560, 1600), "P"), ((320, 240), "RGB")])
@pytest.mark.parametrize("size", [(320, 240), (512, 384), (97, 61)])
def test_prepare_size_and_mode(src_size, mode, size):
    img = Image.new(mode, src_size)
    out = P.prepare(img, size)
    assert out.size == size and out.mode == "RGB"


def test_prepare_crops_the_centre():
    a = np.zeros((300, 1200, 3), np.uint8)
    a[:, :400, 0] = 255  # red left, white centre (the 4:3 crop is x = 400..800), blue right
    a[:, 400:800] = 255
    a[:, 800:, 2] = 255
    out = np.asarray(P.prepare(Image.fromarray(a), (320, 240)), float)
    assert out[:, 3:-3].min() > 245  # only the antialiased edge columns see red or blue
    assert abs(out[:, :3, 2].mean() - out[:, -3:, 0].mean()) < 2  # and they see equally much: centred


def test_prepare_keeps_detail_of_same_size_input():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)
    assert np.abs(np.asarray(P.prepare(Image.fromarray(a))).astype(int) - a).max() <= 1


def test_eligible_rule():
    assert P.eligible(Image.new("RGB", (1920, 1080)), (512, 384))
    assert P.eligible((320, 240), (320, 240))
    assert P.eligible((305, 229), (320, 240))  # 1.049x: within MAX_UPSCALE
    assert not P.eligible((320, 213), (320, 240))  # 1.13x
    assert not P.eligible((240, 320), (320, 240))  # portrait: the 4:3 crop is 240x180, 1.33x
    assert not P.eligible((320, 240), (384, 288))


# ------------------------------------------------------------------------------------ fetching (fake apt)


FAKE_APT = r"""#!/bin/sh
echo "apt-get $*" >> "$FAKE_LOG"
[ "$1" = download ] || exit 1
shift
for p in "$@"; do
  [ -n "$FAKE_FAIL" ] && { echo "E: Unable to locate package $p" >&2; exit 100; }
  echo "$p" > "${p}_1.0_all.deb"
done
"""
# Unpacks the one marker file that says the package is there.
FAKE_DPKG = r"""#!/bin/sh
echo "dpkg-deb $*" >> "$FAKE_LOG"
pkg=$(basename "$2" | sed 's/_.*//')
case $pkg in
  gcompris-qt-data) f=usr/share/gcompris-qt/rcc/erase.rcc;;
  mate-backgrounds) f=usr/share/backgrounds/mate/nature/Aqua.jpg;;
  plasma-workspace-wallpapers) f=usr/share/wallpapers/Kite/contents/images/2560x1600.jpg;;
esac
mkdir -p "$3/$(dirname $f)" && echo x > "$3/$f"
"""


@pytest.fixture
def fake_apt(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("apt-get", FAKE_APT), ("dpkg-deb", FAKE_DPKG)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod((bin_dir / name).stat().st_mode | stat.S_IXUSR)
    log = tmp_path / "log"
    log.write_text("")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_LOG", str(log))
    monkeypatch.setattr(P, "_SYSTEM_ROOT", tmp_path / "empty-system")
    return log


def test_fetch_downloads_once_into_cache(tmp_path, fake_apt):
    cache = tmp_path / "cache"
    root = P.fetch_debian_packages(cache, quiet=True)
    assert root == cache / "debian"
    for pkg, marker in P._MARKERS.items():
        assert (root / marker).is_file() and (root / ".stamps" / pkg).is_file()
    calls = fake_apt.read_text().splitlines()
    assert calls[0] == "apt-get download " + " ".join(P.DEBIAN_PACKAGES) and len(calls) == 4
    assert not list((cache / "debs").glob("*.deb"))
    assert P.fetch_debian_packages(cache, quiet=True) == root
    assert fake_apt.read_text().splitlines() == calls  # the second call ran nothing


def test_fetch_uses_env_cache_and_refetches_only_what_is_missing(tmp_path, fake_apt, monkeypatch):
    monkeypatch.setenv("QPONDER_CACHE", str(tmp_path / "envcache"))
    root = P.fetch_debian_packages(quiet=True)
    assert root == tmp_path / "envcache" / "debian"
    (root / P._MARKERS["mate-backgrounds"]).unlink()
    fake_apt.write_text("")
    P.fetch_debian_packages(quiet=True)
    assert fake_apt.read_text().splitlines()[0] == "apt-get download mate-backgrounds"


def test_fetch_uses_installed_packages(tmp_path, monkeypatch):
    system = tmp_path / "system"
    for marker in P._MARKERS.values():
        (system / marker).parent.mkdir(parents=True, exist_ok=True)
        (system / marker).write_text("x")
    monkeypatch.setattr(P, "_SYSTEM_ROOT", system)
    monkeypatch.setattr(shutil, "which", lambda *_: pytest.fail("nothing should be run"))
    assert P.fetch_debian_packages(tmp_path / "cache") == system


def test_fetch_failures_say_what_to_run(tmp_path, fake_apt, monkeypatch):
    monkeypatch.setenv("FAKE_FAIL", "1")
    with pytest.raises(QPonderError, match=r"apt-get update.*run by hand: .*apt-get download") as e:
        P.fetch_debian_packages(tmp_path / "c1", quiet=True)
    assert "\n" not in str(e.value)
    monkeypatch.setattr(shutil, "which", lambda name: None if name == "apt-get" else "/usr/bin/" + name)
    with pytest.raises(QPonderError, match=r"apt-get not found.*run by hand") as e:
        P.fetch_debian_packages(tmp_path / "c2", quiet=True)
    assert "\n" not in str(e.value)


def test_list_photos_without_fetch_lists_what_is_there(tmp_path, monkeypatch):
    monkeypatch.setattr(P, "_SYSTEM_ROOT", tmp_path / "empty-system")
    photos = P.list_photos(tmp_path / "cache", fetch=False)
    assert {p.source for p in photos} == {"scikit-image"}
    assert [p.name for p in photos] == ["skimage-astronaut", "skimage-chelsea", "skimage-coffee",
                                        "skimage-motorcycle", "skimage-rocket"]


# ----------------------------------------------------------------------------------- the real photos


def _packages_reachable() -> bool:
    return shutil.which("apt-get") is not None or all(P._package_root(p, None) for p in P.DEBIAN_PACKAGES)


@pytest.mark.skipif(not _packages_reachable(), reason="no apt-get here and the Debian photo packages are not unpacked")
def test_list_photos_real():
    photos = P.list_photos()
    names = [p.name for p in photos]
    assert len(photos) >= 250
    assert names == sorted(names)
    assert len({n.lower() for n in names}) == len(names)  # unique even on case-insensitive filesystems
    assert all(re.fullmatch(r"[A-Za-z0-9_.-]+", n) for n in names)
    assert not set(names) & set(P.EXCLUDED)
    assert {p.source for p in photos} == {"gcompris-qt-data", "mate-backgrounds", "plasma-workspace-wallpapers",
                                          "scikit-image"}
    assert all(p.license for p in photos)
    for p in photos:
        img = p.load()
        assert img.mode == "RGB" and min(img.size) >= 100, p.name
        small = np.asarray(img.reduce(max(1, min(img.size) // 64)), np.int16)
        assert np.abs(small - small.mean(2, keepdims=True)).max() > 8, f"{p.name} looks grayscale"
