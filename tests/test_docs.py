"""README.md and docs/*.md stay true: relative links and anchors resolve, every command shown exists with the flags
shown, and every ``python train.py`` override composes.

How the docs are read (extend here):

- Markdown is split into code and prose. Code is fenced blocks whose language is a shell one (or none;
  ``python``/``kotlin``/``swift``/``js`` blocks are not commands) and 4-space indented blocks; a line ending in ``\\``
  is joined with the next. From the prose, inline code spans are taken (they may run over a line break) and
  ``[text](path)`` / ``![alt](path)`` links and ``#`` headings are read.
- Each code line and each inline span is split into words with ``shlex`` (``# comments`` dropped) and into
  commands at ``&&``, ``||``, ``|`` and ``;``. Leading ``VAR=value`` words are skipped. Lines that are not commands
  (e.g. the example output of ``mobilestylegan-eval``) start with no known program and are ignored.
- A command is checked by its program: a console script ``mobilestylegan-*`` must be in ``[project.scripts]`` and
  each ``--flag``/``--flag=value``/``-x`` must be an option of its argparse parser (``build_parser()`` where the
  module has one, else the parser that ``parse_args``/``main`` builds, caught as it is about to parse);
  ``python -m MODULE`` likewise for the modules in ``PYTHON_MODULES`` (``pytest``/``pip`` are not checked);
  ``python train.py`` and ``torchrun ... train.py`` overrides are composed with Hydra; ``python OTHER.py`` and
  ``bash scripts/X.sh`` must exist and contain each flag given.
- Inline code made only of overrides (``trainer=ddp trainer.num_nodes=N``) is composed too, and a bare inline key
  under ``data.``/``loss.``/``optim.``/``trainer.``/``logger.`` must exist in the default config. Placeholder values
  (``...``, ``N``, ``PATH``, ``HOST:PORT``) are not composed; their keys must exist.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import inspect
import re
import shlex
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"
DOC_FILES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]

SHELL_LANGS = {"", "sh", "bash", "shell", "zsh"}
SEPARATORS = {"&&", "||", "|", ";"}
# ``python -m MODULE`` commands whose options are checked; their parser is read like a console script's.
PYTHON_MODULES = {"export.runtime", "export.web.ort_files"}
# ``python -m MODULE`` commands of other projects: their flags are theirs.
FOREIGN_MODULES = {"pytest", "pip", "venv"}
# Config groups whose bare inline keys (no ``=``) are config keys; ``teacher.``/``student.`` are also packages.
BARE_KEY_GROUPS = ("data", "loss", "optim", "trainer", "logger")

ENV_ASSIGN = re.compile(r"[A-Z_][A-Z0-9_]*=\S*")
LONG_FLAG = re.compile(r"--[A-Za-z][\w-]*(?:=.*)?")
SHORT_FLAGS = re.compile(r"-[A-Za-z]+")
OVERRIDE = re.compile(r"(?P<prefix>\+{0,2}|~)(?P<key>[a-z_][\w]*(?:[./][\w]+)*)=(?P<value>(?!=)\S*)")
BARE_KEY = re.compile(rf"(?:{'|'.join(BARE_KEY_GROUPS)})(?:\.[a-z_][a-z0-9_]*)+")
PLACEHOLDER = re.compile(r"\.\.\.|[A-Z][A-Z0-9_]*(?::[A-Z][A-Z0-9_]*)?")
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"#{1,6}\s+(.*?)\s*#*\s*")
INLINE_CODE = re.compile(r"(`+)((?:(?!\n\s*\n).)+?)\1", re.DOTALL)  # a span does not cross a blank line
FENCE = re.compile(r"\s*(```+|~~~+)\s*([\w+-]*).*")


# ---------------------------------------------------------------------------------------------------------------
# Reading markdown


@dataclass(frozen=True)
class Snippet:
    """One code line (continuations joined) or one inline code span, and where it is."""

    where: str
    text: str
    inline: bool


@dataclass(frozen=True)
class Markdown:
    prose: list[str]  # the file's lines with code lines blanked (line numbers kept)
    code: list[tuple[int, str, str]]  # (line number, block language, line)


def split_markdown(text: str) -> Markdown:
    lines = text.splitlines()
    prose: list[str] = []
    code: list[tuple[int, str, str]] = []
    fence: str | None = None
    lang = ""
    indented = False
    for n, line in enumerate(lines, 1):
        m = FENCE.fullmatch(line)
        if fence is None and m:
            fence, lang = m.group(1), m.group(2).lower()
            prose.append("")
            continue
        if fence is not None:
            if line.strip().startswith(fence) and not line.strip().strip(fence[0]):
                fence = None
            else:
                code.append((n, lang, line))
            prose.append("")
            continue
        is_indented = line.startswith(("    ", "\t"))
        if is_indented and (indented or not prose or not prose[-1].strip()):
            indented = True
            code.append((n, "", line.strip()))
            prose.append("")
            continue
        if indented and not line.strip():
            prose.append("")
            continue
        indented = False
        prose.append(line)
    return Markdown(prose, code)


def snippets(path: Path, text: str | None = None) -> list[Snippet]:
    """Shell code lines (with ``\\`` continuations joined) and inline code spans of a markdown file."""
    md = split_markdown(path.read_text() if text is None else text)
    name = _name(path)
    out: list[Snippet] = []
    pending: tuple[int, str] | None = None
    for n, lang, line in md.code:
        if lang not in SHELL_LANGS:
            continue
        start, joined = pending if pending else (n, "")
        joined = f"{joined} {line.strip()}".strip()
        if joined.endswith("\\"):
            pending = (start, joined[:-1].rstrip())
            continue
        pending = None
        out.append(Snippet(f"{name}:{start}", joined, inline=False))
    if pending:
        out.append(Snippet(f"{name}:{pending[0]}", pending[1], inline=False))
    prose = "\n".join(md.prose)
    for m in INLINE_CODE.finditer(prose):
        line = prose.count("\n", 0, m.start()) + 1
        out.append(Snippet(f"{name}:{line}", " ".join(m.group(2).split()), inline=True))
    return out


def _name(path: Path) -> str:
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def github_slug(heading: str) -> str:
    """GitHub's anchor for a heading: link text kept, lowercase, punctuation but '-' and '_' dropped, ' ' -> '-'."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(text: str) -> set[str]:
    """The anchors of a markdown text's headings, with GitHub's -1, -2 suffixes for repeated ones."""
    seen: dict[str, int] = {}
    out: set[str] = set()
    for line in split_markdown(text).prose:
        m = HEADING.fullmatch(line)
        if not m:
            continue
        slug = github_slug(m.group(1))
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        out.add(slug if count == 0 else f"{slug}-{count}")
    return out


# ---------------------------------------------------------------------------------------------------------------
# Links


def check_links(path: Path, text: str | None = None) -> list[str]:
    """Relative links that do not resolve to a file, and anchors that name no heading of a markdown target."""
    text = path.read_text() if text is None else text
    prose = "\n".join(split_markdown(text).prose)
    problems = []
    for m in LINK.finditer(prose):
        target = m.group(1)
        where = f"{_name(path)}:{prose.count(chr(10), 0, m.start()) + 1}"
        if re.match(r"[a-z][a-z0-9+.-]*:", target, re.IGNORECASE):  # http:, https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        if file_part and not dest.exists():
            problems.append(f"{where}: link to {target}: {file_part} does not exist")
            continue
        if anchor and dest.suffix == ".md":
            dest_text = text if dest == path else dest.read_text()
            if anchor not in anchors(dest_text):
                problems.append(f"{where}: link to {target}: no heading with anchor #{anchor} in {file_part or 'it'}")
    return problems


# ---------------------------------------------------------------------------------------------------------------
# Commands and their flags


class _Parsed(Exception):
    def __init__(self, parser: argparse.ArgumentParser) -> None:
        super().__init__(parser.prog)
        self.parser = parser


def _catch_parser(call: Callable[[], Any], monkeypatch: pytest.MonkeyPatch) -> argparse.ArgumentParser:
    """The parser that ``call`` builds, caught when it is about to parse (nothing after parsing runs)."""

    def parse_args(self: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> argparse.Namespace:
        raise _Parsed(self)

    with monkeypatch.context() as m:
        m.setattr(argparse.ArgumentParser, "parse_args", parse_args)
        m.setattr(argparse.ArgumentParser, "parse_known_args", parse_args)
        try:
            call()
        except _Parsed as caught:
            return caught.parser
    raise AssertionError(f"{call} returned without parsing arguments: cannot read its options")


@functools.cache
def module_options(module_name: str, func: str = "main") -> frozenset[str]:
    """The option strings of a command's argparse parser. A ``main()`` that takes no arguments has no options."""
    module = importlib.import_module(module_name)
    if hasattr(module, "build_parser"):
        parser = module.build_parser()
    else:
        entry = getattr(module, "parse_args", None) or getattr(module, func)
        if not inspect.signature(entry).parameters:
            return frozenset()
        parser = _catch_parser(lambda: entry([]), pytest.MonkeyPatch())
    return frozenset(parser._option_string_actions)


@functools.cache
def console_scripts() -> dict[str, str]:
    """``[project.scripts]`` of pyproject.toml: command -> ``module:function``."""
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]


def shell_words(text: str) -> list[str]:
    try:
        return shlex.split(text, comments=True)
    except ValueError:  # an unbalanced quote: words as they stand, up to a comment
        return re.split(r"\s#", text, maxsplit=1)[0].split()


def commands(text: str) -> Iterator[list[str]]:
    """The commands of one shell line: words split at ``&&``, ``||``, ``|``, ``;``, leading ``VAR=value`` dropped."""
    current: list[str] = []
    for word in [*shell_words(text), ";"]:
        if word in SEPARATORS:
            while current and ENV_ASSIGN.fullmatch(current[0]):
                current.pop(0)
            if current:
                yield current
            current = []
        else:
            current.append(word)


def flags(args: list[str]) -> list[str]:
    """``--flag`` (also from ``--flag=value``) and ``-x`` (``-xy`` is ``-x -y``) words; numbers like -2 are values."""
    out = []
    for word in args:
        if word == "--":
            break
        if LONG_FLAG.fullmatch(word):
            out.append(word.split("=", 1)[0])
        elif SHORT_FLAGS.fullmatch(word):
            out.extend(f"-{c}" for c in word[1:])
    return out


def _is_python(program: str) -> bool:
    return re.fullmatch(r"python(3(\.\d+)?)?", Path(program).name) is not None


def train_overrides(words: list[str]) -> list[str] | None:
    """The overrides of ``python train.py ...`` / ``torchrun ... train.py ...``; None for other commands."""
    program, args = words[0], words[1:]
    if not (_is_python(program) or Path(program).name == "torchrun") or "train.py" not in args:
        return None
    if _is_python(program) and args[0] != "train.py":
        return None
    return [a for a in args[args.index("train.py") + 1 :] if a != "..."]


def toolkit_command(words: list[str]) -> tuple[str, str, list[str]] | None:
    """(name, module:function, arguments) of a ``mobilestylegan-*`` or ``python -m MODULE`` command, else None.
    The module is empty for an unknown command (``pytest`` and ``pip`` are not ours: None)."""
    program, args = words[0], words[1:]
    if program.startswith("mobilestylegan-"):
        return program, console_scripts().get(program, ""), args
    if _is_python(program) and args[:1] == ["-m"] and len(args) > 1 and args[1] not in FOREIGN_MODULES:
        module = args[1] if args[1] in PYTHON_MODULES else ""
        return f"python -m {args[1]}", f"{module}:main" if module else "", args[2:]
    return None


def command_options(entry: str) -> frozenset[str]:
    module, _, func = entry.partition(":")
    return module_options(module, func)


def check_command(words: list[str]) -> list[str]:
    """Problems with one command (not ``train.py``'s overrides: see ``check_overrides``)."""
    program, args = words[0], words[1:]
    toolkit = toolkit_command(words)
    if toolkit is not None:
        name, entry, rest = toolkit
        if not entry and name.startswith("python -m"):
            return [f"{name}: not a known module (add it to PYTHON_MODULES in {_name(Path(__file__))})"]
        if not entry:
            return [f"{name}: not a console script in pyproject.toml [project.scripts]"]
        known = command_options(entry)
        return [f"{name}: unknown option {f}" for f in flags(rest) if f not in known]
    if _is_python(program) and args[:1] == ["-m"]:
        return []
    if train_overrides(words) is not None:
        return []
    python_script = _is_python(program) and args[:1] and args[0].endswith(".py")
    shell_script = Path(program).name == "bash" and args[:1] and args[0].endswith(".sh")
    if not (python_script or shell_script):
        return []
    script, rest = args[0], args[1:]
    path = REPO / script
    if not path.is_file():
        return [f"{script}: no such file"]
    source = path.read_text()
    return [
        f"{script}: {f} does not appear in it"
        for f in flags(rest)
        if not re.search(re.escape(f) + r"(?![\w-])", source)
    ]


def check_bare_flags(spans: list[Snippet], known: frozenset[str]) -> list[str]:
    """Inline spans that start with a flag (``--lr 0.1 --optimize-noise``): each flag must be an option of some
    command the same page shows (``known``, the union of their options)."""
    problems = []
    for span in spans:
        words = shell_words(span.text)
        if span.inline and words and LONG_FLAG.fullmatch(words[0]):
            problems += [
                f"{span.where}: {f} is an option of no command on this page   [{span.text}]"
                for f in flags(words)
                if f not in known
            ]
    return problems


def page_options(spans: list[Snippet]) -> frozenset[str]:
    """The options of every known toolkit command that the spans show."""
    entries = {t[1] for s in spans for words in commands(s.text) if (t := toolkit_command(words)) and t[1]}
    return frozenset().union(*(command_options(e) for e in entries))


def inline_overrides(text: str) -> list[str] | None:
    """An inline span made only of Hydra overrides (or one bare config key): its overrides, else None."""
    words = text.split()
    if words and all(OVERRIDE.fullmatch(w) for w in words):
        return words
    if len(words) == 1 and BARE_KEY.fullmatch(words[0]):
        return [f"{words[0]}=..."]  # a key named in prose: it must exist, its value is not composed
    return None


# ---------------------------------------------------------------------------------------------------------------
# Hydra overrides


@functools.cache
def compose(overrides: tuple[str, ...]) -> dict[str, Any]:
    """The composed config (hydra node included) as plain containers, interpolations unresolved."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from omegaconf import OmegaConf

    import train  # noqa: F401  (registers the structured configs, as the entry point does)

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = hydra_compose(config_name="config", overrides=list(overrides), return_hydra_config=True)
    return OmegaConf.to_container(cfg, resolve=False, throw_on_missing=False)


def _has_key(cfg: dict[str, Any], key: str) -> bool:
    node: Any = cfg
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def check_overrides(overrides: list[str]) -> list[str]:
    """Problems with ``python train.py OVERRIDES``: not an override, a group option with no file under conf/, a
    composition error, a key the composed config lacks. Placeholder values (``...``, ``N``, ``PATH``) are not
    composed; their keys must exist."""
    problems = []
    concrete: list[str] = []
    keys: list[str] = []
    for word in overrides:
        m = OVERRIDE.fullmatch(word)
        if not m:
            problems.append(f"{word}: not a Hydra override (key=value)")
            continue
        prefix, key, value = m.group("prefix"), m.group("key"), m.group("value")
        if "/" in key or ("." not in key and (CONF / key).is_dir()):  # a config group: the option is a file
            if not (CONF / key / f"{value}.yaml").is_file():
                problems.append(f"{word}: no option {value} in group {key} (conf/{key}/{value}.yaml)")
                continue
            concrete.append(word)
            continue
        if not PLACEHOLDER.fullmatch(value):
            concrete.append(word)
        if not prefix:  # '+' adds a key, '~' deletes one: the key need not exist
            keys.append(key)
    if problems:
        return problems
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        cfg = compose(tuple(concrete))
    except (HydraException, OmegaConfBaseException) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        return [f"{' '.join(overrides)}: does not compose: {first}"]
    return [f"{key}: no such config key" for key in keys if not _has_key(cfg, key)]


# ---------------------------------------------------------------------------------------------------------------
# The docs


def all_snippets() -> list[Snippet]:
    return [s for path in DOC_FILES for s in snippets(path)]


def test_docs_exist() -> None:
    assert (REPO / "README.md").is_file()
    assert len(DOC_FILES) > 1, "docs/*.md is missing"


def test_links_resolve() -> None:
    problems = [p for path in DOC_FILES for p in check_links(path)]
    assert not problems, "\n".join(problems)


def test_pages_link_to_each_other() -> None:
    readme = (REPO / "README.md").read_text()
    problems = []
    for page in DOC_FILES[1:]:
        if f"(docs/{page.name}" not in readme:
            problems.append(f"README.md does not link to docs/{page.name}")
        if "(../README.md" not in page.read_text():
            problems.append(f"docs/{page.name} does not link back to README.md")
    assert not problems, "\n".join(problems)


def test_commands_exist_with_their_flags() -> None:
    problems = []
    count = 0
    for snippet in all_snippets():
        for words in commands(snippet.text):
            count += words[0].startswith("mobilestylegan-")
            problems += [f"{snippet.where}: {p}   [{snippet.text}]" for p in check_command(words)]
    assert count > 20, f"only {count} mobilestylegan-* commands found: is the markdown reader broken?"
    assert not problems, "\n".join(problems)


def test_inline_flags_belong_to_a_command_of_their_page() -> None:
    problems = []
    for path in DOC_FILES:
        spans = snippets(path)
        problems += check_bare_flags(spans, page_options(spans))
    assert not problems, "\n".join(problems)


def test_train_overrides_compose() -> None:
    problems = []
    count = 0
    for snippet in all_snippets():
        found = [o for words in commands(snippet.text) if (o := train_overrides(words)) is not None]
        if snippet.inline and not found and (o := inline_overrides(snippet.text)) is not None:
            found = [o]
        for overrides in found:
            count += 1
            problems += [f"{snippet.where}: {p}   [{snippet.text}]" for p in check_overrides(overrides)]
    assert count > 10, f"only {count} train.py commands / overrides found: is the markdown reader broken?"
    assert not problems, "\n".join(problems)


# ---------------------------------------------------------------------------------------------------------------
# The checkers fail when they should


def test_markdown_reader_finds_code_and_inline_spans(tmp_path: Path) -> None:
    text = (
        "# T\n\nSee `mobilestylegan-bench x --runtimes\neager` here.\n\n    mobilestylegan-edit a \\\n"
        "        --bogus 1   # comment\n\n```python\nmobilestylegan-edit --also-bogus\n```\n\n```bash\n"
        "mobilestylegan-serve site/\n```\n"
    )
    found = {(s.text, s.inline) for s in snippets(tmp_path / "a.md", text)}
    assert ("mobilestylegan-bench x --runtimes eager", True) in found
    assert ("mobilestylegan-edit a --bogus 1   # comment", False) in found
    assert ("mobilestylegan-serve site/", False) in found
    assert not any("also-bogus" in t for t, _ in found)


def test_github_slugs() -> None:
    assert github_slug("Fresh machine: two commands") == "fresh-machine-two-commands"
    assert github_slug("ExecuTorch (Android, iOS, embedded Linux)") == "executorch-android-ios-embedded-linux"
    assert github_slug("The `upfirdn2d_ref` op") == "the-upfirdn2d_ref-op"
    assert anchors("# A\n\n## A\n\n    # not a heading\n") == {"a", "a-1"}


def test_broken_links_are_reported(tmp_path: Path) -> None:
    (tmp_path / "b.md").write_text("# Title here\n")
    (tmp_path / "img.png").write_bytes(b"")
    text = (
        "[ok](b.md) [ok](b.md#title-here) ![ok](img.png) [web](https://example.com/x#y) [mail](mailto:a@b)\n"
        "[gone](missing.md) ![gone](nothing.png) [bad anchor](b.md#nope) [self](#nowhere) [self ok](#top)\n\n"
        "# Top\n\n    [in code](not-checked.md)\n"
    )
    problems = check_links(tmp_path / "a.md", text)
    assert len(problems) == 4, problems
    for bad in ("missing.md", "nothing.png", "#nope", "#nowhere"):
        assert any(bad in p for p in problems), (bad, problems)


def test_unknown_commands_and_flags_are_reported() -> None:
    def problems(line: str) -> list[str]:
        return [p for words in commands(line) for p in check_command(words)]

    assert problems("mobilestylegan-generate ffhq-1024 --seeds 0-3 --trunc 0.7 --outdir out/") == []
    assert problems("mobilestylegan-edit a.npy --strength=-2:2:5 --direction ganspace:0 --out e/") == []
    assert problems("mobilestylegan-export x --format web --out s/ -q && mobilestylegan-serve s/") == []
    assert problems("GLIBC_TUNABLES=a=b .venv/bin/python -m export.runtime d --seeds 0-3 --trunc 0.7") == []
    assert problems(".venv/bin/python -m pytest -m slow --anything") == []
    assert problems("mobilestylegan-convert in.pkl out.pt --only generator") == []
    assert "--seedz" in " ".join(problems("mobilestylegan-generate ffhq-1024 --seedz 0-3"))
    assert "--outdir" in " ".join(problems("mobilestylegan-export x --format=onnx --outdir o/"))
    assert "-z" in " ".join(problems("mobilestylegan-export x -z"))
    assert "--bogus" in " ".join(problems("mobilestylegan-serve s/ && mobilestylegan-convert a b --bogus"))
    assert "not a console script" in " ".join(problems("mobilestylegan-nope x"))
    assert "--bogus" in " ".join(problems("python -m export.runtime d --bogus 1"))
    assert "--force" in " ".join(problems("python -m export.web.ort_files --force"))
    assert "not a known module" in " ".join(problems("python -m export.nothing"))
    assert "no such file" in " ".join(problems("bash scripts/nothing.sh"))
    assert "--no-such-flag" in " ".join(problems("bash scripts/setup.sh --faces --no-such-flag"))
    assert "--no-such-flag" in " ".join(problems(".venv/bin/python benchmarks/bench_ops.py --quick --no-such-flag"))


def test_inline_flags_are_checked_against_the_page(tmp_path: Path) -> None:
    text = (
        "Run `mobilestylegan-edit` or:\n\n    mobilestylegan-serve site/\n\n"
        "Use `--strength=-2:2:5`, `--port 8000`, `--layers a-b` and `--lr 0.1`; `-x` is not checked.\n"
    )
    spans = snippets(tmp_path / "a.md", text)
    problems = check_bare_flags(spans, page_options(spans))
    assert len(problems) == 1 and "--lr" in problems[0], problems


def test_unknown_config_keys_and_options_are_reported() -> None:
    assert check_overrides([]) == []
    assert check_overrides(["experiment=tiny", "trainer=ddp", "trainer.num_nodes=N", "hydra.run.dir=..."]) == []
    assert check_overrides(["teacher/discriminator=file", "teacher.discriminator.path=D.pkl"]) == []
    assert check_overrides(["+extra_key=1"]) == []
    assert "no such config key" in " ".join(check_overrides(["trainer.num_nodez=N"]))
    assert "does not compose" in " ".join(check_overrides(["experiment=tiny", "loss.perceptal=1.0"]))
    assert "does not compose" in " ".join(check_overrides(["data.batch_size=many"]))
    assert "no option nope in group experiment" in " ".join(check_overrides(["experiment=nope"]))
    assert "not a Hydra override" in " ".join(check_overrides(["--multirun"]))
    assert inline_overrides("trainer=ddp trainer.num_nodes=N") == ["trainer=ddp", "trainer.num_nodes=N"]
    assert inline_overrides("data.cache_size") == ["data.cache_size=..."]
    assert inline_overrides("teacher.load_generator") is None and inline_overrides("GLIBC_TUNABLES=x=y") is None
    assert train_overrides(shell_words("torchrun --nnodes N train.py experiment=tiny ...")) == ["experiment=tiny"]
