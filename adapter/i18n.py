"""The CLI's language: gettext catalogues shipped inside the package, English by default.

The catalogue is chosen as gettext chooses it, from LANGUAGE, LC_ALL, LC_MESSAGES and LANG
(`LANG=vi_VN.UTF-8` gives Vietnamese); a language without a catalogue, or `C`, gives the
English the messages are written in. Only what a person reads is translated: command and
option names, state names, JSON output, exit codes and configuration keys never are, and
neither are the logs (journald and ELK search them in one language).

`main()` installs the translation for the duration of one command (`installed()`), so the
only state is the translation installed now; `_()` and `ngettext()` read it at call time,
which is why module-level constants are marked with `N_()` and translated where used.

Tooling (`python -m adapter.i18n extract | update | compile | check`): the messages are
extracted from the source with `ast` (calls of `_`, `N_` and `ngettext` with literal
strings), merged into each language's .po, and compiled into the .mo that ships with the
package (the compiled file is committed; `check` says when it is stale).
"""

from __future__ import annotations

import argparse
import ast
import gettext
import re
import struct
import sys
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

DOMAIN = "thads-adapter"
LOCALE_DIR = Path(__file__).resolve().with_name("locale")
PACKAGE_DIR = Path(__file__).resolve().parent
#: where the CLI's messages are written (relative to the package); `extract` reads these
SOURCES = ("i18n.py", "cli/*.py")

_translation: gettext.NullTranslations = gettext.NullTranslations()


def _(message: str) -> str:
    """The message in the installed language (English when there is no catalogue)."""
    return _translation.gettext(message)


def ngettext(singular: str, plural: str, n: int) -> str:
    """The singular or plural message for `n`, in the installed language."""
    return _translation.ngettext(singular, plural, n)


def pgettext(context: str, message: str) -> str:
    """`_()` for a word that means different things in different places (`subject` of a
    certificate, `subject` of a document): the context tells the translator which."""
    return _translation.pgettext(context, message)


def N_(message: str) -> str:
    """Marks a message for extraction without translating it yet (module constants)."""
    return message


def translation_for_environment(languages: list[str] | None = None
                                ) -> gettext.NullTranslations:
    """The catalogue LANGUAGE/LC_ALL/LC_MESSAGES/LANG (or `languages`) ask for, or none."""
    return gettext.translation(DOMAIN, LOCALE_DIR, languages=languages, fallback=True)


@contextmanager
def installed(languages: list[str] | None = None) -> Iterator[gettext.NullTranslations]:
    """Speak the environment's language inside the block, argparse's own messages included
    ("usage:", "options", "the following arguments are required"); restore on the way out,
    so a command leaves nothing behind for the next one (tests run many in one process)."""
    global _translation
    before = _translation
    argparse_before = {name: getattr(argparse, name) for name in ("_", "ngettext")}
    _translation = translation_for_environment(languages)
    # argparse calls the gettext functions it imported at module level, with no hook to
    # give it a catalogue: ours carries its messages (ARGPARSE_MESSAGES) and is handed over.
    ours = {"_": _translation.gettext, "ngettext": _translation.ngettext}
    for name, function in ours.items():
        setattr(argparse, name, function)
    try:
        yield _translation
    finally:
        _translation = before
        for name, function in argparse_before.items():
            setattr(argparse, name, function)


#: argparse's messages the CLI can show (Python 3.11-3.13 wording), extracted like ours
ARGPARSE_MESSAGES = (
    N_("usage: "),
    N_("options"),
    N_("positional arguments"),
    N_("show this help message and exit"),
    N_("%(prog)s: error: %(message)s\n"),
    N_("the following arguments are required: %s"),
    N_("unrecognized arguments: %s"),
    N_("argument %(argument_name)s: %(message)s"),
    N_("invalid choice: %(value)r (choose from %(choices)s)"),
    N_("invalid %(type)s value: %(value)r"),
    N_("expected one argument"),
    N_("expected at least one argument"),
    N_("expected at most one argument"),
    N_("not allowed with argument %s"),
    N_("one of the arguments %s is required"),
    N_("ambiguous option: %(option)s could match %(matches)s"),
    N_("ignored explicit argument %r"),
    N_("unknown parser %(parser_name)r (choices: %(choices)s)"),
)


# --- catalogue tooling -------------------------------------------------------------------

@dataclass
class Message:
    """One catalogue entry: msgid (and msgid_plural) with its translations and references."""

    msgid: str
    plural: str | None = None
    context: str | None = None
    strs: list[str] = field(default_factory=lambda: [""])
    refs: list[str] = field(default_factory=list)
    fuzzy: bool = False

    @property
    def translated(self) -> bool:
        return not self.fuzzy and all(self.strs) and bool(self.strs)


#: (msgid, msgid_plural, msgctxt): what identifies a message in a catalogue
Key = tuple[str, str | None, str | None]


@dataclass
class Extracted:
    messages: dict[Key, Message]
    problems: list[str]


MARKERS = {"_": 1, "N_": 1, "ngettext": 2, "pgettext": 2}


def extract(package_dir: Path = PACKAGE_DIR, sources: tuple[str, ...] = SOURCES) -> Extracted:
    """Every `_("…")`, `N_("…")` and `ngettext("…", "…", n)` in the sources, in source order.
    A marker called with an f-string, a concatenation or a formatted string is a problem:
    its text could never be in the catalogue. `_(NAME)` translates a constant marked with
    `N_()`, which is where its text is extracted."""
    found: dict[Key, Message] = {}
    problems: list[str] = []
    files = sorted({p for pattern in sources for p in package_dir.glob(pattern)})
    for path in files:
        rel = path.relative_to(package_dir.parent).as_posix()
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=rel)
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                    and node.func.id in MARKERS):
                continue
            n = MARKERS[node.func.id]
            args = node.args[:n]
            if len(args) < n or any(isinstance(a, ast.JoinedStr | ast.BinOp | ast.Call)
                                    for a in args):
                problems.append(f"{rel}:{node.lineno}: {node.func.id}() needs string literals "
                                "(use .format() after the call, never an f-string)")
                continue
            if not all(isinstance(a, ast.Constant) and isinstance(a.value, str) for a in args):
                continue  # `_(NAME)`: a message marked with N_() where it is written
            texts = [str(a.value) for a in args if isinstance(a, ast.Constant)]
            if node.func.id == "pgettext":
                key: Key = (texts[1], None, texts[0])
            else:
                key = (texts[0], texts[1] if n == 2 else None, None)
            msg = found.setdefault(key, Message(key[0], key[1], key[2],
                                                ["", ""] if key[1] is not None else [""]))
            msg.refs.append(f"{rel}:{node.lineno}")
    for msg in found.values():  # ast.walk is breadth-first: give references in line order
        msg.refs.sort(key=lambda r: (r.rsplit(":", 1)[0], int(r.rsplit(":", 1)[1])))
    ordered = sorted(found.items(), key=lambda kv: _ref_key(kv[1].refs[0]))
    return Extracted(dict(ordered), problems)


def _ref_key(ref: str) -> tuple[str, int]:
    file, line = ref.rsplit(":", 1)
    return file, int(line)


def _unquote(text: str) -> str:
    value = ast.literal_eval(text)
    if not isinstance(value, str):
        raise ValueError(f"not a string: {text}")
    return value


def read_po(path: Path) -> tuple[str, dict[Key, Message]]:
    """(header msgstr, entries) of a .po file: the subset of the format this project writes
    (no obsolete entries kept)."""
    entries: dict[Key, Message] = {}
    header = ""
    current: Message | None = None
    target: tuple[str, int] | None = None  # ("ctxt"|"id"|"plural"|"str", index)
    fuzzy = False
    refs: list[str] = []
    context: str | None = None

    def finish() -> None:
        nonlocal current, header
        if current is None:
            return
        if current.msgid == "" and current.context is None:
            header = current.strs[0]
        else:
            entries[(current.msgid, current.plural, current.context)] = current
        current = None

    for lineno, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        try:
            if not line:
                continue
            if line.startswith("#"):
                if target is not None and target[0] == "str":
                    finish()
                    target = None
                if line.startswith("#,") and "fuzzy" in line:
                    fuzzy = True
                elif line.startswith("#:"):
                    refs += line[2:].split()
                continue
            if line.startswith("msgid_plural "):
                assert current is not None
                current.plural, target = _unquote(line[13:]), ("plural", 0)
                current.strs = ["", ""]
            elif line.startswith("msgctxt "):
                finish()
                context, target = _unquote(line[8:]), ("ctxt", 0)
            elif line.startswith("msgid "):
                if target is None or target[0] != "ctxt":
                    finish()
                current = Message(_unquote(line[6:]), context=context, refs=refs, fuzzy=fuzzy)
                refs, fuzzy, target, context = [], False, ("id", 0), None
            elif line.startswith("msgstr["):
                assert current is not None
                index = int(line[7:line.index("]")])
                while len(current.strs) <= index:
                    current.strs.append("")
                current.strs[index] = _unquote(line[line.index("]") + 1:].strip())
                target = ("str", index)
            elif line.startswith("msgstr "):
                assert current is not None
                current.strs = [_unquote(line[7:])]
                target = ("str", 0)
            elif line.startswith('"'):
                assert target is not None
                more = _unquote(line)
                if target[0] == "ctxt":
                    context = (context or "") + more
                    continue
                assert current is not None
                if target[0] == "id":
                    current.msgid += more
                elif target[0] == "plural":
                    current.plural = (current.plural or "") + more
                else:
                    current.strs[target[1]] += more
            else:
                raise ValueError("unexpected line")
        except (AssertionError, ValueError, SyntaxError) as exc:
            raise ValueError(f"{path}:{lineno}: cannot read this line ({exc}): {raw}") from None
    finish()
    return header, entries


def _quote(text: str) -> str:
    """A .po string: one line, or gettext's layout of one line per "\\n" for long ones."""
    def q(s: str) -> str:
        return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\t", "\\t") \
            .replace("\n", "\\n") + '"'
    parts = [p for p in re.split(r"(?<=\n)", text) if p]
    if len(parts) <= 1:
        return q(text)
    return '""\n' + "\n".join(q(p) for p in parts)


def format_po(header: str, entries: dict[Key, Message]) -> str:
    lines = ['msgid ""', f"msgstr {_quote(header)}", ""]
    for msg in entries.values():
        if msg.refs:
            lines.append("#: " + " ".join(msg.refs))
        if msg.fuzzy:
            lines.append("#, fuzzy")
        flags = _format_flag(msg.msgid)
        if flags:
            lines.append(f"#, {flags}")
        if msg.context is not None:
            lines.append(f"msgctxt {_quote(msg.context)}")
        lines.append(f"msgid {_quote(msg.msgid)}")
        if msg.plural is None:
            lines.append(f"msgstr {_quote(msg.strs[0])}")
        else:
            lines.append(f"msgid_plural {_quote(msg.plural)}")
            lines += [f"msgstr[{i}] {_quote(s)}" for i, s in enumerate(msg.strs)]
        lines.append("")
    return "\n".join(lines)


def _format_flag(msgid: str) -> str:
    """gettext's flag for the placeholder style, so `msgfmt --check` checks it too."""
    if PERCENT.search(msgid):
        return "python-format"
    if BRACE.search(msgid):
        return "python-brace-format"
    return ""


PERCENT = re.compile(r"%(?:\([A-Za-z_]+\))?[-#0 +]*\d*(?:\.\d+)?[sdrif%]")
BRACE = re.compile(r"\{[A-Za-z_0-9]*(?:![rsa])?(?::[^{}]*)?\}")


def placeholders(text: str) -> list[str]:
    """`{name}` and `%(name)s`/`%s` placeholders, sorted (order may change in a
    translation for named ones; `%%` is not one)."""
    return sorted(m for m in PERCENT.findall(text) + BRACE.findall(text) if m != "%%")


def merge(template: dict[Key, Message], catalogue: dict[Key, Message]) -> dict[Key, Message]:
    """The template's messages in its order, each with the catalogue's translation when it
    has one; messages the source no longer has are dropped."""
    merged = {}
    for key, msg in template.items():
        old = catalogue.get(key)
        strs = old.strs if old else list(msg.strs)
        merged[key] = Message(msg.msgid, msg.plural, msg.context, list(strs), list(msg.refs),
                              old.fuzzy if old else False)
    return merged


def compile_mo(header: str, entries: dict[Key, Message]) -> bytes:
    """The GNU .mo of the translated entries (fuzzy and empty ones are left out, as msgfmt
    does); deterministic, so the committed file can be compared with the .po."""
    pairs: dict[bytes, bytes] = {b"": header.encode("utf-8")}
    for msg in entries.values():
        if not msg.translated:
            continue
        key = msg.msgid if msg.plural is None else msg.msgid + "\0" + msg.plural
        if msg.context is not None:  # gettext's layout: context EOT msgid
            key = msg.context + "\x04" + key
        pairs[key.encode("utf-8")] = "\0".join(msg.strs).encode("utf-8")
    keys = sorted(pairs)
    ids = strs = b""
    offsets = []
    for k in keys:
        offsets.append((len(ids), len(k), len(strs), len(pairs[k])))
        ids += k + b"\0"
        strs += pairs[k] + b"\0"
    n = len(keys)
    key_start = 7 * 4 + 16 * n
    value_start = key_start + len(ids)
    koffsets: list[int] = []
    voffsets: list[int] = []
    for o1, l1, o2, l2 in offsets:
        koffsets += [l1, o1 + key_start]
        voffsets += [l2, o2 + value_start]
    out = struct.pack("Iiiiiii", 0x950412DE, 0, n, 7 * 4, 7 * 4 + n * 8, 0, 0)
    out += struct.pack(f"{2 * n}i", *koffsets) + struct.pack(f"{2 * n}i", *voffsets)
    return out + ids + strs


def languages() -> list[str]:
    return sorted(p.name for p in LOCALE_DIR.iterdir() if (p / "LC_MESSAGES").is_dir())


def po_path(language: str) -> Path:
    return LOCALE_DIR / language / "LC_MESSAGES" / f"{DOMAIN}.po"


def check(language: str) -> list[str]:
    """What is wrong with a language's catalogue: messages missing or not translated,
    placeholders that differ, text not in NFC, a .mo that is not the compiled .po."""
    problems = list(extract().problems)
    header, entries = read_po(po_path(language))
    template = extract().messages
    for key in template.keys() - entries.keys():
        problems.append(f"not in the catalogue: {key[0]!r} (run `python -m adapter.i18n "
                        "update`, then translate)")
    for key in entries.keys() - template.keys():
        problems.append(f"no longer in the source: {key[0]!r} (run `python -m adapter.i18n "
                        "update`)")
    for msg in entries.values():
        if not msg.translated:
            problems.append(f"not translated{' (fuzzy)' if msg.fuzzy else ''}: {msg.msgid!r}")
            continue
        for text in msg.strs:
            if placeholders(text) != placeholders(msg.msgid):
                problems.append(f"placeholders differ: {msg.msgid!r} has "
                                f"{placeholders(msg.msgid)}, {text!r} has {placeholders(text)}")
            if not unicodedata.is_normalized("NFC", text):
                problems.append(f"not NFC: {text!r}")
    mo = po_path(language).with_suffix(".mo")
    if not mo.exists() or mo.read_bytes() != compile_mo(header, entries):
        problems.append(f"{mo} is not the compiled .po (run `python -m adapter.i18n compile`)")
    return problems


def main(argv: list[str] | None = None) -> int:
    """`python -m adapter.i18n extract|update|compile|check`: the translator's workflow."""
    parser = argparse.ArgumentParser(prog="python -m adapter.i18n",
                                     description="the CLI's message catalogues")
    parser.add_argument("action", choices=["extract", "update", "compile", "check"],
                        help="extract: print the template (.pot); update: merge the source's "
                             "messages into every .po; compile: write every .mo; check: "
                             "what is missing or wrong (exit 1)")
    action = parser.parse_args(argv).action
    if action == "extract":
        ex = extract()
        sys.stdout.write(format_po("Content-Type: text/plain; charset=UTF-8\n", ex.messages))
        for p in ex.problems:
            print(p, file=sys.stderr)
        return 1 if ex.problems else 0
    bad = 0
    for lang in languages():
        path = po_path(lang)
        if action == "update":
            header, entries = read_po(path)
            path.write_text(format_po(header, merge(extract().messages, entries)),
                            encoding="utf-8")
            print(f"{path}: updated")
        elif action == "compile":
            header, entries = read_po(path)
            path.with_suffix(".mo").write_bytes(compile_mo(header, entries))
            print(f"{path.with_suffix('.mo')}: written")
        else:
            problems = check(lang)
            bad += len(problems)
            for p in problems:
                print(f"{lang}: {p}")
            print(f"{lang}: {'complete' if not problems else f'{len(problems)} problems'}")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
