"""Font discovery for the synthetic word renderer: Latin text faces from pip packages and system.

Sources, in priority order (each optional, skipped silently when absent):

    matplotlib       mpl-data/fonts/ttf: DejaVu, STIX, Computer Modern (cm*)
    pymupdf-fonts    Fira, Noto Sans, Ubuntu, Cascadia, Space Mono, ... (OFL); the package
                     stores them as compressed Python strings, so they are written once to
                     ``cache_dir()/fonts/pymupdf_fonts-VERSION/``
    rendercv-fonts   Lato, Roboto, Open Sans, EB Garamond, XCharter, ... (OFL and similar)
    reportlab        its fonts/ folder (Vera; Type 1 .pfb faces where FreeType reads them)
    fontpkg          every family installed as a ``fontpkg-*`` package (the ``fonts`` extra:
                     condensed, heavy display, script and slab faces of signs; OFL)
    system           /usr/share/fonts, /usr/local/share/fonts, ~/.fonts, ~/.local/share/fonts

A face is kept only if it renders every character of the charset (and both cases of its
letters) with a glyph of its own -- not blank, not the .notdef box, not shared with another
letter -- and looks like a Latin *text* face: a word space with an advance, x-height below
cap height, ascenders above and descenders below (math, symbol, icon and "Last Resort"
faces fail this). The same face (family and style) from two sources is kept once, from the
first source. Results are cached in memory, and on disk in ``cache_dir()`` keyed by the
candidate paths, their sizes and mtimes, the charset and the Pillow version.

``grcnn-synth --fonts`` lists what was found and why faces were dropped.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import os
import pathlib
import tempfile
from typing import Iterator, Sequence

import PIL
from PIL import ImageFont

from grcnn_jax.text.charset import DEFAULT_CHARS

FONT_SUFFIXES = (".ttf", ".otf", ".ttc", ".pfb")
SYSTEM_DIRS = ("/usr/share/fonts", "/usr/local/share/fonts", "~/.fonts", "~/.local/share/fonts")
PIP_PACKAGES = ("matplotlib", "pymupdf-fonts", "rendercv-fonts")
FONTPKG_WEIGHTS = (400, 700)  # the static weights taken of a fontpkg family
_CHECK_VERSION = 4  # bump when check_font's rules change: invalidates the disk caches
_PROBE_SIZE = 48    # px; the size glyphs are rendered at for the checks


class NoFontsError(RuntimeError):
    """No usable font face was found."""


def cache_dir() -> pathlib.Path:
    """``$GRCNN_JAX_CACHE``, else ``$XDG_CACHE_HOME/grcnn_jax``, else ``~/.cache/grcnn_jax``."""
    if os.environ.get("GRCNN_JAX_CACHE"):
        return pathlib.Path(os.environ["GRCNN_JAX_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return pathlib.Path(base) / "grcnn_jax"


def _writable_cache_dir(sub: str) -> pathlib.Path:
    """``cache_dir()/sub``, or a per-user temp folder when that cannot be created."""
    for root in (cache_dir(), pathlib.Path(tempfile.gettempdir()) / f"grcnn_jax-{os.getuid()}"):
        path = root / sub
        try:
            path.mkdir(parents=True, exist_ok=True)
            if os.access(path, os.W_OK):
                return path
        except OSError:
            continue
    raise NoFontsError(f"no writable cache folder for {sub!r} (tried {cache_dir()} and the "
                       "temp dir)")


def _write_atomic(path: pathlib.Path, data: bytes) -> None:
    # Several worker processes may do this at once: write aside, then rename.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _package_dir(name: str) -> pathlib.Path | None:
    """The folder of an installed package, found without importing it."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return pathlib.Path(list(spec.submodule_search_locations)[0])


def _font_files(folder: pathlib.Path | str) -> list[str]:
    folder = pathlib.Path(os.path.expanduser(folder))
    if not folder.is_dir():
        return []
    found = []
    for root, _, files in os.walk(folder):
        found += [os.path.join(root, f) for f in files if f.lower().endswith(FONT_SUFFIXES)]
    return sorted(found)


def _pymupdf_fonts() -> list[str]:
    """Writes the faces of ``pymupdf_fonts`` to the cache (once) and returns their paths."""
    if importlib.util.find_spec("pymupdf_fonts") is None:
        return []
    from importlib import metadata

    try:
        version = metadata.version("pymupdf-fonts")
    except metadata.PackageNotFoundError:
        version = "unknown"
    out = _writable_cache_dir(f"fonts/pymupdf_fonts-{version}")
    done = out / "COMPLETE"
    if not done.exists():
        import pymupdf_fonts

        for key in sorted(pymupdf_fonts.fontbuffers):
            name = pymupdf_fonts.fontdescriptors.get(key, {}).get("name", key).replace(" ", "-")
            data = pymupdf_fonts.myfont(key)
            suffix = ".otf" if data[:4] == b"OTTO" else ".ttf"
            _write_atomic(out / f"{name}{suffix}", data)
        _write_atomic(done, b"")
    return _font_files(out)


def _fontpkg_fonts() -> list[str]:
    """The files of the families installed as ``fontpkg-*`` packages (found through
    ``fontpkg``'s registry of entry points), or [] without ``fontpkg``.

    Of a family's static weights only the regular (400) and bold (700) ones are taken, so
    that a family shipped in nine weights is not drawn nine times as often as one in two.
    """
    if importlib.util.find_spec("fontpkg") is None:
        return []
    import fontpkg

    return sorted(str(f.path) for family in fontpkg.families().values() for f in family.files
                  if (f.variable or f.weight in FONTPKG_WEIGHTS)
                  and str(f.path).lower().endswith(FONT_SUFFIXES))


def font_candidates() -> list[tuple[str, str]]:
    """All font files found, as ``(source, path)`` in priority order (see module doc)."""
    out: list[tuple[str, str]] = []
    mpl = _package_dir("matplotlib")
    if mpl is not None:
        out += [("matplotlib", p) for p in _font_files(mpl / "mpl-data" / "fonts" / "ttf")]
    out += [("pymupdf-fonts", p) for p in _pymupdf_fonts()]
    for source, package, sub in (("rendercv-fonts", "rendercv_fonts", ""),
                                 ("reportlab", "reportlab", "fonts")):
        folder = _package_dir(package)
        if folder is not None:
            out += [(source, p) for p in _font_files(folder / sub)]
    out += [("fontpkg", p) for p in _fontpkg_fonts()]
    for folder in SYSTEM_DIRS:
        out += [("system", p) for p in _font_files(folder)]
    return out


def _glyph(font: ImageFont.FreeTypeFont, text: str) -> tuple[tuple[int, int], bytes]:
    mask = font.getmask(text, mode="L")
    return mask.size, bytes(mask)


def _probe_chars(chars: str) -> str:
    """The charset's characters plus both cases of its letters (single characters only)."""
    out = dict.fromkeys(chars)
    for c in chars:
        for v in (c.lower(), c.upper()):
            if len(v) == 1:
                out[v] = None
    return "".join(c for c in out if not c.isspace())


def check_font(path: str, chars: str = DEFAULT_CHARS) -> str | None:
    """Why the face at ``path`` cannot render ``chars`` as Latin text, or None if it can.

    Args:
      path: a font file FreeType reads (.ttf, .otf, .ttc: its first face, .pfb).
      chars: the charset; both cases of its letters are checked too.
    """
    return _inspect(path, chars)[0]


def _inspect(path: str, chars: str) -> tuple[str | None, tuple, str]:
    """(problem or None, (family, style), a fingerprint of the design: glyph metrics)."""
    try:
        font = ImageFont.truetype(path, _PROBE_SIZE)
    except (OSError, ValueError) as e:
        return f"cannot be loaded ({e})", (), ""
    problem = _glyph_problem(font, chars) or _text_face_problem(font)
    if problem:
        return problem, (), ""
    # Glyph boxes and advances at 1000 px (~ font units): equal for faces that embed one
    # design (Noto Sans in Noto Sans Math/Symbols, one Latin in the CJK Noto faces).
    big = ImageFont.truetype(path, 1000)
    metrics = [(big.getbbox(c, anchor="ls"), big.getlength(c)) for c in _probe_chars(chars)]
    return None, font.getname(), hashlib.sha256(repr(metrics).encode()).hexdigest()


def _glyph_problem(font: ImageFont.FreeTypeFont, chars: str) -> str | None:
    """A glyph that is blank, .notdef or shared by two letters (or digits); None if none."""
    notdef = _glyph(font, "\U0010fffd")  # a private-use code point no text face maps
    glyphs: dict[str, tuple] = {}
    for c in _probe_chars(chars):
        g = _glyph(font, c)
        if not any(g[1]):
            return f"renders {c!r} blank"
        if g == notdef:
            return f"has no glyph for {c!r} (renders .notdef)"
        glyphs[c] = g
    for group in (str.islower, str.isupper, str.isdigit):
        seen: dict[tuple, str] = {}
        for c, g in glyphs.items():
            if group(c):
                if g in seen:
                    return f"renders {seen[g]!r} and {c!r} with the same glyph"
                seen[g] = c
    return None


def _text_face_problem(font: ImageFont.FreeTypeFont) -> str | None:
    """Checks the proportions of a Latin text face; None if they look right."""
    size = _PROBE_SIZE
    if font.getlength(" ") < 0.1 * size or any(bytes(font.getmask(" "))):
        return "has no blank word space (a math, symbol or icon face)"

    def top(s: str) -> float:       # ink height above the baseline, px
        return -font.getbbox(s, anchor="ls")[1]

    def bottom(s: str) -> float:    # ink depth below the baseline, px
        return font.getbbox(s, anchor="ls")[3]

    x_height, cap, ascender = top("xzuvw"), top("HEZX"), top("bdhkl")
    if not 0.35 * cap <= x_height <= 0.85 * cap:
        return f"x-height {x_height} px vs cap height {cap} px is not a Latin text face's"
    if ascender < 1.1 * x_height:
        return "ascenders do not rise above the x-height"
    if bottom("xzuvw") > 0.15 * size or not 0.08 * size <= bottom("gpqy") <= 0.5 * size:
        return "baseline and descenders are not a Latin text face's"
    return None


def _cache_key(candidates: list[tuple[str, str]], chars: str) -> str:
    h = hashlib.sha256()
    h.update(json.dumps([_CHECK_VERSION, PIL.__version__, chars]).encode())
    for source, path in candidates:
        try:
            st = os.stat(path)
            h.update(json.dumps([source, path, st.st_size, st.st_mtime_ns]).encode())
        except OSError:
            h.update(json.dumps([source, path, None]).encode())
    return h.hexdigest()[:24]


def survey(chars: str = DEFAULT_CHARS, use_disk_cache: bool = True) -> dict:
    """Checks every candidate face.

    Returns:
      ``{"usable": [[source, path], ...] in priority order, "rejected": {path: reason}}``.
    """
    candidates = font_candidates()
    cache_file = None
    if use_disk_cache:
        try:
            key = _cache_key(candidates, chars)
            cache_file = _writable_cache_dir("font_checks") / f"{key}.json"
            return json.loads(cache_file.read_text())
        except (OSError, ValueError, NoFontsError):
            pass
    rejected: dict[str, str] = {}
    passed, real = [], set()
    for order, (source, path) in enumerate(candidates):
        rp = os.path.realpath(path)
        if rp in real:
            rejected[path] = "a link to a file listed already"
            continue
        real.add(rp)
        problem, name, fingerprint = _inspect(path, chars)
        if problem is None:
            passed.append((len(name[0] or ""), order, source, path, name, fingerprint))
        else:
            rejected[path] = problem
    # Keep one of each face (the same family and style from two sources) and of each design
    # (faces embedding another's glyphs, like Noto Sans Math): the shortest family name,
    # then the first source, wins.
    seen: dict = {}
    kept = []
    for _, order, source, path, name, fingerprint in sorted(passed):
        for key, what in ((name, "the same face as"), (fingerprint, "the same glyph design as")):
            if key in seen:
                rejected[path] = f"{what} {seen[key]}"
                break
        else:
            seen[name] = seen[fingerprint] = path
            kept.append((order, source, path))
    usable = [[source, path] for _, source, path in sorted(kept)]
    result = {"usable": usable, "rejected": rejected}
    if cache_file is not None:
        try:
            _write_atomic(cache_file, json.dumps(result, indent=0).encode())
        except OSError:
            pass
    return result


def _sort_key(path: str) -> tuple[str, str]:
    # By file name first, so that the order (and so which face an index draws) does not
    # depend on where the packages are installed.
    return os.path.basename(path).lower(), path


@functools.lru_cache(maxsize=8)
def usable_fonts(chars: str = DEFAULT_CHARS) -> tuple[str, ...]:
    """Paths of the usable font faces for ``chars``, sorted by file name (deterministic).

    Raises:
      NoFontsError: none found; the message names what was searched and what to install.
    """
    found = survey(chars)["usable"]
    if not found:
        searched = [f"the pip packages {', '.join(PIP_PACKAGES)}, reportlab",
                    *SYSTEM_DIRS]
        raise NoFontsError(
            "no usable font for the synthetic text generator (Latin text faces rendering "
            f"{chars!r}); searched {'; '.join(searched)}. Install some with "
            f"`pip install {' '.join(PIP_PACKAGES)}` (or `apt-get install fonts-dejavu-core`), "
            "or pass fonts=[...] explicitly.")
    return tuple(sorted((p for _, p in found), key=_sort_key))


def faces_by_source(paths: Sequence[str], chars: str = DEFAULT_CHARS) -> dict[str, int]:
    """How many of ``paths`` (font files, as a generator holds them) each source gives
    (``{"matplotlib": 21, ...}``); a file no source found for ``chars`` counts as 'given'."""
    source_of = {path: source for source, path in survey(chars)["usable"]}
    counts: dict[str, int] = {}
    for path in paths:
        source = source_of.get(path, "given")
        counts[source] = counts.get(source, 0) + 1
    return counts


def report(chars: str = DEFAULT_CHARS) -> Iterator[str]:
    """Lines saying which faces are usable for ``chars`` (by source) and why the others were
    left out (``grcnn-synth --fonts`` prints them)."""
    result = survey(chars)
    by_source: dict[str, list[str]] = {}
    for source, path in result["usable"]:
        by_source.setdefault(source, []).append(path)
    yield f"{len(result['usable'])} usable faces:"
    for source, paths in by_source.items():
        yield f"  {source}: {len(paths)}"
        yield from (f"    {os.path.basename(p)}" for p in sorted(paths, key=_sort_key))
    yield f"{len(result['rejected'])} rejected:"
    yield from (f"  {p}: {why}" for p, why in sorted(result["rejected"].items()))

