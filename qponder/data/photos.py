"""Real reference photographs for the offline KADID-style benchmark, from Debian packages and scikit-image.

Sources (see shared/research/offline-assets.md, section 2):

- ``gcompris-qt-data``: lossy WebP photos inside Qt resource bundles (``/usr/share/gcompris-qt/rcc/*.rcc``),
  read with the small ``.rcc`` reader below; licences come from the ``README`` next to the photos in the bundle.
- ``mate-backgrounds``: ``/usr/share/backgrounds/mate/nature/*.jpg``.
- ``plasma-workspace-wallpapers``: ``/usr/share/wallpapers/<D>/contents/images/2560x1600.jpg``.
- ``scikit-image``: the bundled colour photos (no download).

The Debian packages are used from ``/`` when installed, otherwise fetched without root
(``apt-get download`` + ``dpkg-deb -x``) into ``$QPONDER_CACHE`` (default ``~/.cache/qponder``) under ``debian/``.

Only natural colour photographs are listed: cut-outs on flat white backdrops, grayscale pictures, scans with a
frame, a visibly degraded picture and low-resolution duplicates are excluded (``EXCLUDED`` says which and why).
The exclusions were decided by looking at every photo of gcompris-qt-data 3.1-2 (Debian bookworm); another
version of the package may add photos nobody has looked at.

Photos are references for synthetic distortions, so ``prepare`` downscales them (hiding the sources' own
compression) and ``eligible`` rejects photos that would need more than a slight upscale.
"""

from __future__ import annotations

import functools
import io
import os
import re
import shutil
import struct
import subprocess
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps

from qponder.errors import QPonderError

DEBIAN_PACKAGES = ("gcompris-qt-data", "mate-backgrounds", "plasma-workspace-wallpapers")
_SIZE_MB = 185  # bookworm's .debs

_SYSTEM_ROOT = Path("/")  # where installed packages live; tests point it elsewhere

# One file per package whose presence means "this package's photos are here".
_MARKERS = {
    "gcompris-qt-data": "usr/share/gcompris-qt/rcc/erase.rcc",
    "mate-backgrounds": "usr/share/backgrounds/mate/nature/Aqua.jpg",
    "plasma-workspace-wallpapers": "usr/share/wallpapers/Kite/contents/images/2560x1600.jpg",
}

_GCOMPRIS_RCC = "usr/share/gcompris-qt/rcc"
_GCOMPRIS_COPYRIGHT = "see /usr/share/doc/gcompris-qt-data/copyright"
# (bundle, resource folder under /gcompris/src/activities/, name prefix): the folders where the survey in
# offline-assets.md found photographs (255 of the 874 WebPs in all bundles).
_GCOMPRIS_SETS = (
    ("erase.rcc", "erase/resource", "erase"),
    ("explore_world_animals.rcc", "explore_world_animals/resource/animals", "world_animals"),
    ("explore_farm_animals.rcc", "explore_farm_animals/resource/animals", "farm_animals"),
    *((("explore_monuments.rcc", f"explore_monuments/resource/{c}", f"monuments-{c}")
       for c in ("egypt", "france", "germany", "india", "usa", "wonders"))),
    ("explore_world_music.rcc", "explore_world_music/resource/music", "world_music"),
    *((("categorization.rcc", f"categorization/resource/images/{c}", f"categorization-{c}")
       for c in ("fishes", "tools", "monuments", "renewable", "others"))),
)

# File names misspelt in the 3.1 READMEs: photo -> the name its README uses.
_README_TYPOS = {"screwDriver.webp": "screDriver.webp", "aulaPalatina.webp": "audaPalatina.webp"}

_MATE_DIR = "usr/share/backgrounds/mate/nature"
_PLASMA_DIRS = ("BytheWater", "ColdRipple", "ColorfulCups", "DarkestHour", "EveningGlow", "FallenLeaf", "Grey",
                "Kite", "OneStandsOut", "Path", "summer_1am")  # the other wallpaper folders hold renders
_SKIMAGE = {  # name -> (loader in skimage.data, licence as its docstring states it)
    "astronaut": ("astronaut", "public-domain"),
    "chelsea": ("chelsea", "CC0-1.0"),
    "coffee": ("coffee", "CC0-1.0"),
    "rocket": ("rocket", "public-domain"),
    "motorcycle": ("stereo_motorcycle", "Middlebury 2014 stereo (terms unstated)"),
}

_CUTOUT = "isolated object on a flat white backdrop (clip-art style)"
EXCLUDED: dict[str, str] = {
    # Found by the share of near-white border pixels (>= 85%, or a visible cut-out edge) and checked by eye.
    **{f"gcompris-categorization-tools-{n}": _CUTOUT for n in (
        "cuttingTool", "hammer2", "hammer5", "hammer8", "hammer9", "measuringTape1", "measuringTape2",
        "measuringTape3", "measuringTape4", "plier1", "plier2", "plier3", "scissors1", "scissors4",
        "screwDriver3", "spray", "tweezer1", "wrench")},
    "gcompris-categorization-others-volleyball": _CUTOUT,
    "gcompris-categorization-others-weighingMachine": _CUTOUT,
    "gcompris-categorization-others-blackslate": "cut-out with a drop shadow on white; mostly a flat board",
    "gcompris-categorization-fishes-fish25": "visibly degraded already (blurry upscale of a blocky scan)",
    "gcompris-monuments-usa-castleClinton": "grayscale photograph",
    "gcompris-monuments-usa-georgeWashingtonBirthplace": "slide scan with a black frame on two sides",
    # The same picture as the 1024 px one in explore_monuments, at 320 px.
    "gcompris-categorization-monuments-brandenburgGate": "duplicate of gcompris-monuments-germany-brandenburgGate",
    "gcompris-categorization-monuments-colosseum": "duplicate of gcompris-monuments-wonders-colosseum",
    "gcompris-categorization-monuments-greatPyramid": "duplicate of gcompris-monuments-egypt-greatPyramidOfGiza",
    "plasma-Grey": "grayscale photograph (an 8-bit gray JPEG)",
    "plasma-ColdRipple": "grayscale photograph (stored as RGB, all three channels equal)",
}

# Up to 5% upscaling is invisible after Lanczos; more softens the reference, which would then read as blurred.
MAX_UPSCALE = 1.05


@dataclass(frozen=True)
class Photo:
    """One reference photograph. ``path``/``member`` say where its pixels are (picklable, for worker processes)."""

    name: str  # stable unique id, filesystem-safe
    source: str  # "gcompris-qt-data" | "mate-backgrounds" | "plasma-workspace-wallpapers" | "scikit-image"
    license: str
    path: str = ""  # image file, or the .rcc bundle holding it; "" for scikit-image
    member: str = ""  # resource path inside the .rcc bundle, or the scikit-image loader name

    def load(self) -> Image.Image:
        """The photo as an RGB image."""
        if self.source == "scikit-image":
            import skimage.data

            arr = getattr(skimage.data, self.member)()
            img = Image.fromarray(arr[0] if isinstance(arr, tuple) else arr)  # stereo pair: the left image
        elif self.member:
            img = Image.open(io.BytesIO(rcc_read(self.path, self.member)))
            img.load()  # decode now, so a bad file fails here and not in whoever uses the image
        else:
            try:
                with Image.open(self.path) as f:
                    img = ImageOps.exif_transpose(f)
                    img.load()
            except OSError as e:
                raise QPonderError(f"cannot read photo {self.name} from {self.path}: {e}") from None
        return img if img.mode == "RGB" else img.convert("RGB")


# ---------------------------------------------------------------------------------------------- Qt .rcc


def rcc_entries(path: str | os.PathLike) -> dict[str, tuple[int, int, int]]:
    """Files in a Qt binary resource bundle: resource path -> (offset of the stored bytes, their length, flags).

    Format (Qt's rcc, versions 1-3): ``qres``, version, then big-endian offsets of the node tree, the data and
    the names. Tree nodes are 14 bytes (22 from version 2, which adds a timestamp): name offset, flags
    (2 = directory, 1 = zlib, 4 = zstd), then child count + first child index, or locale + data offset.
    A name is a length, a hash and UTF-16BE text; a data blob is a length and the bytes.
    """
    return dict(_rcc_index(*_key(path)))


def _key(path: str | os.PathLike) -> tuple[str, int, int]:
    # the file's identity joins the path in the cache key, so a rewritten bundle is read again
    try:
        st = os.stat(path)
    except OSError as e:
        raise QPonderError(f"cannot read Qt resource file {path}: {e}") from None
    return str(path), st.st_mtime_ns, st.st_size


@functools.lru_cache(maxsize=32)
def _rcc_index(path: str, mtime_ns: int, size: int) -> tuple[tuple[str, tuple[int, int, int]], ...]:
    try:
        b = Path(path).read_bytes()
    except OSError as e:
        raise QPonderError(f"cannot read Qt resource file {path}: {e}") from None
    if b[:4] != b"qres":
        raise QPonderError(f"{path} is not a Qt resource (.rcc) file")
    try:
        version, tree, data, names = struct.unpack_from(">4I", b, 4)
        node_size = 14 if version == 1 else 22

        def name(off: int) -> str:
            n = struct.unpack_from(">H", b, names + off)[0]
            return b[names + off + 6: names + off + 6 + 2 * n].decode("utf-16-be")

        out: list[tuple[str, tuple[int, int, int]]] = []
        todo, seen = [(0, "")], set()
        while todo:
            i, prefix = todo.pop()
            if i in seen:  # a corrupt tree could loop
                continue
            seen.add(i)
            p = tree + i * node_size
            name_off, flags = struct.unpack_from(">IH", b, p)
            full = prefix + (name(name_off) if i else "")
            if flags & 2:
                count, first = struct.unpack_from(">II", b, p + 6)
                todo += [(first + k, full + "/") for k in range(count)]
            else:
                q = data + struct.unpack_from(">I", b, p + 10)[0]
                size = struct.unpack_from(">I", b, q)[0]
                if q + 4 + size > len(b):
                    raise struct.error("data runs past the end of the file")
                out.append((full, (q + 4, size, flags)))
    except (struct.error, UnicodeDecodeError) as e:
        raise QPonderError(f"{path} is a damaged Qt resource file ({e})") from None
    return tuple(sorted(out))


def rcc_read(path: str | os.PathLike, member: str) -> bytes:
    """The bytes of one file in a Qt resource bundle, decompressed."""
    entry = rcc_entries(path).get(member)
    if entry is None:
        raise QPonderError(f"{member} is not in the Qt resource file {path}")
    offset, size, flags = entry
    with open(path, "rb") as f:
        f.seek(offset)
        blob = f.read(size)
    if flags & 4:
        raise QPonderError(f"{member} in {path} is zstd-compressed, which this reader does not support")
    if flags & 1:
        return zlib.decompress(blob[4:])  # qCompress: a 4-byte length, then a zlib stream
    return blob


# ------------------------------------------------------------------------------------ Debian packages


def _cache_dir(cache: Path | None) -> Path:
    if cache is not None:
        return Path(cache)
    return Path(os.environ.get("QPONDER_CACHE") or Path.home() / ".cache" / "qponder")


def _has(root: Path, pkg: str) -> bool:
    return (root / _MARKERS[pkg]).is_file()


def _stamp(debian: Path, pkg: str) -> Path:
    return debian / ".stamps" / pkg


def _package_root(pkg: str, cache: Path | None) -> Path | None:
    """Where ``pkg``'s files are already unpacked (``/`` wins over the cache), or None."""
    if _has(_SYSTEM_ROOT, pkg):
        return _SYSTEM_ROOT
    debian = _cache_dir(cache) / "debian"
    return debian if _stamp(debian, pkg).is_file() and _has(debian, pkg) else None


def fetch_debian_packages(cache: Path | None = None, quiet: bool = False) -> Path:
    """Make the three Debian packages' files available; return the root under which ``usr/share/...`` lives.

    That is ``/`` when all three are installed system-wide; otherwise ``<cache>/debian``, into which those
    not unpacked there yet (even if installed system-wide, so that one root holds all three) are downloaded
    with ``apt-get download`` and unpacked with ``dpkg-deb -x`` (no root needed). A stamp file per package
    makes a second call a no-op. Unless ``quiet``, says on stderr when it downloads.
    """
    if all(_has(_SYSTEM_ROOT, p) for p in DEBIAN_PACKAGES):
        return _SYSTEM_ROOT
    debian = _cache_dir(cache) / "debian"
    todo = [p for p in DEBIAN_PACKAGES if not (_stamp(debian, p).is_file() and _has(debian, p))]
    if not todo:
        return debian
    debs = _cache_dir(cache) / "debs"
    by_hand = (f"run by hand: mkdir -p {debs} && cd {debs} && apt-get download {' '.join(todo)} && "
               f"for f in *.deb; do dpkg-deb -x $f {debian}; done (or: sudo apt-get install {' '.join(todo)})")
    for tool in ("apt-get", "dpkg-deb"):
        if shutil.which(tool) is None:
            raise QPonderError(f"{tool} not found, so the photo packages cannot be fetched; on a Debian/Ubuntu "
                               f"machine {by_hand}")
    import fcntl  # here, not at the top: the module must import on systems without it

    debs.mkdir(parents=True, exist_ok=True)
    (debian / ".stamps").mkdir(parents=True, exist_ok=True)
    # Two processes unpacking into one tree at once could each see the other's half-written files.
    with open(debian / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        todo = [p for p in todo if not (_stamp(debian, p).is_file() and _has(debian, p))]
        if todo:
            _download_and_unpack(todo, debs, debian, quiet, by_hand)
    return debian


def _download_and_unpack(pkgs: list[str], debs: Path, debian: Path, quiet: bool, by_hand: str) -> None:
    if not quiet:
        print(f"qponder: fetching {', '.join(pkgs)} ({_SIZE_MB} MB for all three) with apt-get download into {debs}",
              file=sys.stderr, flush=True)
    r = _run(["apt-get", "download", *pkgs], debs)
    if r.returncode != 0:
        hint = " (run `apt-get update` first)" if "Unable to locate" in r.stderr else ""
        raise QPonderError(f"apt-get download failed: {_last_line(r)}{hint}; {by_hand}")
    for pkg in pkgs:
        found = sorted(debs.glob(f"{pkg}_*.deb"), key=lambda f: f.stat().st_mtime)
        if not found:
            raise QPonderError(f"apt-get download left no {pkg}_*.deb in {debs}; {by_hand}")
        r = _run(["dpkg-deb", "-x", str(found[-1]), str(debian)], debs)
        if r.returncode != 0 or not _has(debian, pkg):
            raise QPonderError(f"dpkg-deb -x {found[-1].name} failed: {_last_line(r)}; {by_hand}")
        _stamp(debian, pkg).write_text(found[-1].name + "\n")
        for f in found:  # the unpacked tree is what is used; keeping the .deb would double the disk use
            f.unlink()


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=1800)
    except (OSError, subprocess.TimeoutExpired) as e:
        return subprocess.CompletedProcess(cmd, 1, "", str(e))


def _last_line(r: subprocess.CompletedProcess) -> str:
    lines = [ln.strip() for ln in (r.stderr or r.stdout or "").splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("E:")]  # apt prints warnings (W:) after the error
    return (errors or lines or [f"exit status {r.returncode}"])[-1]


# ---------------------------------------------------------------------------------------------- listing


def _safe(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", s)


def _readme_licences(text: str) -> dict[str, str]:
    """``File -> licence`` from a GCompris resource README (blocks of ``Copyright/Source/License/Files``)."""
    out: dict[str, str] = {}
    for block in re.split(r"\n\s*\n", text):
        lic, files, in_files = None, [], False
        for line in block.splitlines():
            m = re.match(r"(Copyright|Source|License|Files|Comments?):\s*(.*)$", line)
            if m:
                in_files = m.group(1) == "Files"
                if m.group(1) == "License":
                    lic = m.group(2).strip()
                elif in_files and m.group(2).strip():
                    files.append(m.group(2).strip())
            elif in_files and line.strip():
                files.append(line.strip())
        if lic:
            lic = re.sub(r"\s+", "-", lic)
            lic = {"public-domain": "public-domain", "gplv2+": "GPL-2+"}.get(lic.lower(), lic)
            out.update((f, lic) for f in files)
    return out


@functools.lru_cache(maxsize=64)
def _readme(rcc: str, member: str) -> dict[str, str]:
    return _readme_licences(rcc_read(rcc, member).decode("utf-8", "replace"))


def _gcompris_licence(rcc: str, member: str, members: dict) -> str:
    # READMEs sit in the photo's folder or a parent, naming files relative to themselves.
    folder, rel = member.rsplit("/", 1)
    name = rel
    while "/resource" in folder:
        readme = folder + "/README"
        if readme in members:
            known = _readme(rcc, readme)
            lic = known.get(rel) or known.get(rel[: rel.rfind("/") + 1] + _README_TYPOS.get(name, name))
            if lic:
                return lic
        folder, up = folder.rsplit("/", 1)
        rel = f"{up}/{rel}"
    return _GCOMPRIS_COPYRIGHT


def _gcompris(root: Path) -> list[Photo]:
    photos = []
    for bundle, folder, prefix in _GCOMPRIS_SETS:
        rcc = root / _GCOMPRIS_RCC / bundle
        if not rcc.is_file():
            continue
        members = rcc_entries(rcc)
        base = f"/gcompris/src/activities/{folder}/"
        for m in members:
            rel = m[len(base):]
            if m.startswith(base) and "/" not in rel and rel.endswith(".webp"):
                photos.append(Photo(f"gcompris-{prefix}-{_safe(rel[:-5])}", "gcompris-qt-data",
                                    _gcompris_licence(str(rcc), m, members), str(rcc), m))
    return photos


def _mate(root: Path) -> list[Photo]:
    return [Photo(f"mate-{_safe(f.stem)}", "mate-backgrounds", "GPL-2+", str(f))
            for f in sorted((root / _MATE_DIR).glob("*.jpg"))]


def _plasma(root: Path) -> list[Photo]:
    files = ((d, root / "usr/share/wallpapers" / d / "contents/images/2560x1600.jpg") for d in _PLASMA_DIRS)
    return [Photo(f"plasma-{_safe(d)}", "plasma-workspace-wallpapers", "GPL-2+", str(f))
            for d, f in files if f.is_file()]


def _skimage() -> list[Photo]:
    import importlib.util

    if importlib.util.find_spec("skimage") is None:
        return []
    return [Photo(f"skimage-{n}", "scikit-image", lic, "", fn) for n, (fn, lic) in _SKIMAGE.items()]


def list_photos(cache: Path | None = None, fetch: bool = True) -> list[Photo]:
    """All natural reference photos, sorted by name; ``EXCLUDED`` ones left out.

    With ``fetch`` the Debian packages are downloaded when missing (see ``fetch_debian_packages``); without
    it, only what is already unpacked (system-wide or in the cache) is listed.
    """
    if fetch:
        root = fetch_debian_packages(cache)
        roots = {p: root for p in DEBIAN_PACKAGES}
    else:
        roots = {p: _package_root(p, cache) for p in DEBIAN_PACKAGES}
    photos = _skimage()
    for pkg, lister in (("gcompris-qt-data", _gcompris), ("mate-backgrounds", _mate),
                        ("plasma-workspace-wallpapers", _plasma)):
        if roots[pkg] is not None:
            photos += lister(roots[pkg])
    return sorted((p for p in photos if p.name not in EXCLUDED), key=lambda p: p.name)


# ------------------------------------------------------------------------------------------ preparation


def _scale(src: tuple[int, int], size: tuple[int, int]) -> float:
    # output pixels per source pixel when the centred crop of aspect `size` is as large as the photo allows
    return max(size[0] / src[0], size[1] / src[1])


def prepare(img: Image.Image, size: tuple[int, int] = (320, 240)) -> Image.Image:
    """Centre-crop ``img`` to the aspect of ``size`` = (w, h) and resize it to exactly that (RGB).

    Portrait photos are cropped, never rotated, so the output has the orientation of ``size`` (landscape by
    default). Downscaling by 2-4x averages away the sources' own compression artefacts; photos that would
    need upscaling are resized all the same (check ``eligible`` first).
    """
    w, h = size
    if w <= 0 or h <= 0:
        raise QPonderError(f"prepare: size must be positive (w, h), got {size}")
    img = img if img.mode == "RGB" else img.convert("RGB")
    s = 1 / _scale(img.size, size)
    cw, ch = min(w * s, img.width), min(h * s, img.height)  # min(): float rounding must not leave the image
    left, top = (img.width - cw) / 2, (img.height - ch) / 2
    # reducing_gap: a box pre-reduction for large factors; 2x faster on the 2560 px wallpapers, > 55 dB PSNR
    # from plain Lanczos
    return img.resize((w, h), Image.Resampling.LANCZOS, box=(left, top, left + cw, top + ch), reducing_gap=3.0)


def eligible(photo_img: Image.Image | tuple[int, int], size: tuple[int, int]) -> bool:
    """Whether ``prepare(photo_img, size)`` upscales by at most ``MAX_UPSCALE`` (5%).

    The rule looks at the centred crop ``prepare`` takes: a 320x213 photo needs 240/213 = 1.13x for 320x240
    and is not eligible; a portrait 240x320 one needs 1.33x. Accepts an image or its (w, h).
    """
    src = photo_img if isinstance(photo_img, tuple) else photo_img.size
    return _scale(src, size) <= MAX_UPSCALE
