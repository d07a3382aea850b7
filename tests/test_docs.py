"""Execute the code examples in ``README.md`` and ``docs/**/*.md``.

Conventions for documentation authors:

* A fenced block whose info string is exactly ``python`` is executed.
* A fenced block whose info string is exactly ``pycon`` is run as a doctest
  (``>>>`` prompts with expected output; ``ELLIPSIS`` and
  ``NORMALIZE_WHITESPACE`` are enabled).
* Any other info string is not executed: ``python skip``, ``py``, ``console``,
  ``toml``, ``python title="x.py"``... Use ``python skip`` for code that must
  not run (pseudo-code, fragments, examples needing the network).
* A ``python`` or ``pycon`` block whose first line is ``# doctest: skip``
  (for ``pycon``, ``>>> # doctest: skip``) is not executed either.
* All blocks of one file run in order in one shared namespace, so a later
  block may use names defined by an earlier one. Each file starts fresh.
* Each file runs with a fresh temporary directory as the working directory,
  so examples may write files freely.
* Blocks indented under a list item or an admonition are found too.
* A page that needs something the machine may lack (a data set) names the
  pytest fixtures it needs in an HTML comment, ``<!-- requires: olist_dir -->``
  (several: ``<!-- requires: a, b -->``). The fixtures are requested before
  the page runs, so a fixture that skips (``olist_dir`` when the data set is
  absent) skips the page; the page itself finds its data on its own.

Files with no runnable block are not collected. A failing block is reported
with its file, the line of its opening fence, and the exception.
"""

from __future__ import annotations

import doctest
import io
import re
import sys
import traceback
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

PYTHON_INFO = "python"
PYCON_INFO = "pycon"
DOCTEST_FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE

_FENCE_OPEN = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
_SKIP_LINE = re.compile(r"^(>>>\s*)?#\s*doctest:\s*skip\s*$", re.IGNORECASE)
_REQUIRES = re.compile(r"<!--\s*requires:\s*(?P<names>[\w\s,]*?)\s*-->")


@dataclass(frozen=True)
class CodeBlock:
    """One fenced code block of a Markdown file.

    Attributes:
        line: 1-based line number of the opening fence.
        info: the fence's info string, stripped (e.g. ``"python"``).
        source: the block's content, de-indented to the fence's indentation.
    """

    line: int
    info: str
    source: str

    @property
    def runnable(self) -> bool:
        """Whether the test suite executes this block."""
        if self.info not in (PYTHON_INFO, PYCON_INFO):
            return False
        first = next((ln.strip() for ln in self.source.splitlines() if ln.strip()), "")
        return not _SKIP_LINE.match(first)


def extract_blocks(text: str) -> list[CodeBlock]:
    """Return every fenced code block of a Markdown document, in order.

    Follows CommonMark's fence rules closely enough for documentation: a block
    opens with three or more backticks or tildes, and closes with a line of the
    same character at least as long. An unclosed block runs to the end.
    """
    blocks: list[CodeBlock] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        match = _FENCE_OPEN.match(lines[i])
        if match is None or (match["fence"][0] == "`" and "`" in match["info"]):
            i += 1
            continue
        indent = len(match["indent"])
        fence = match["fence"]
        closing = re.compile(rf"^[ \t]*{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$")
        start = i + 1  # 1-based line of the opening fence
        body: list[str] = []
        i += 1
        while i < len(lines) and not closing.match(lines[i]):
            body.append(_dedent_line(lines[i], indent))
            i += 1
        blocks.append(CodeBlock(line=start, info=match["info"].strip(), source="\n".join(body)))
        i += 1  # skip the closing fence
    return blocks


def _dedent_line(line: str, indent: int) -> str:
    """Remove up to ``indent`` leading whitespace characters from ``line``."""
    stripped = 0
    while stripped < indent and stripped < len(line) and line[stripped] in " \t":
        stripped += 1
    return line[stripped:]


def runnable_blocks(path: Path) -> list[CodeBlock]:
    """Return the blocks of ``path`` that the test suite executes."""
    return [b for b in extract_blocks(path.read_text(encoding="utf-8")) if b.runnable]


def required_fixtures(text: str) -> list[str]:
    """The fixtures a Markdown document names in ``<!-- requires: ... -->`` comments, in order."""
    names = (name for m in _REQUIRES.finditer(text) for name in re.split(r"[\s,]+", m["names"]))
    return list(dict.fromkeys(name for name in names if name))


def request_required_fixtures(path: Path, request: pytest.FixtureRequest) -> None:
    """Request the fixtures the document at *path* requires; one that skips skips the caller."""
    for name in required_fixtures(path.read_text(encoding="utf-8")):
        request.getfixturevalue(name)


def _format_exception(exc: BaseException) -> str:
    """Format ``exc`` with its traceback, leaving out this harness's frames."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(exc), exc, tb))


def _run_python(block: CodeBlock, path: Path, namespace: dict[str, Any]) -> str | None:
    """Execute a ``python`` block; return a failure report, or None on success."""
    # Pad with newlines so tracebacks show the Markdown file's own line numbers.
    padded = "\n" * block.line + block.source
    try:
        code = compile(padded, str(path), "exec")
        exec(code, namespace)
    except Exception as exc:
        return _format_exception(exc)
    return None


def _run_pycon(block: CodeBlock, path: Path, namespace: dict[str, Any]) -> str | None:
    """Run a ``pycon`` block as a doctest; return a failure report, or None."""
    test = doctest.DocTestParser().get_doctest(
        block.source,
        namespace,
        name=f"{path.name}:{block.line}",
        filename=str(path),
        lineno=block.line,
    )
    out = io.StringIO()
    runner = doctest.DocTestRunner(optionflags=DOCTEST_FLAGS)
    result = runner.run(test, out=out.write, clear_globs=False)
    return out.getvalue() if result.failed else None


def run_markdown_file(path: Path, display_name: str) -> None:
    """Run the runnable blocks of ``path`` in order in one fresh namespace.

    The namespace is a real module registered in ``sys.modules`` for the run,
    so classes defined by examples pickle, and ``dataclasses``, ``attrs`` and
    ``typing.get_type_hints`` can resolve them.

    Raises:
        pytest.fail.Exception: naming the file, the line of the failing block's
            opening fence, and the exception or doctest report.
    """
    module_name = "_docs_example_" + re.sub(r"\W", "_", display_name)
    module = types.ModuleType(module_name)
    module.__file__ = str(path)
    sys.modules[module_name] = module
    try:
        for block in runnable_blocks(path):
            runner = _run_pycon if block.info == PYCON_INFO else _run_python
            report = runner(block, path, module.__dict__)
            if report is not None:
                pytest.fail(
                    f"{display_name}: {block.info} block starting at line {block.line} failed:\n\n"
                    f"{report}",
                    pytrace=False,
                )
    finally:
        del sys.modules[module_name]


def _doc_files() -> list[Path]:
    """README.md and every Markdown file under docs/, in a stable order."""
    files = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").rglob("*.md"))]
    return [f for f in files if f.is_file()]


DOC_FILES = [f for f in _doc_files() if runnable_blocks(f)]


@pytest.mark.parametrize(
    "doc", DOC_FILES, ids=[f.relative_to(REPO_ROOT).as_posix() for f in DOC_FILES]
)
def test_doc_examples(
    doc: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    """Every runnable example in ``doc`` runs (skipped when a fixture it requires skips)."""
    request_required_fixtures(doc, request)
    monkeypatch.chdir(tmp_path)
    run_markdown_file(doc, doc.relative_to(REPO_ROOT).as_posix())


# ---------------------------------------------------------------- the harness itself

SAMPLE = """\
# Title

```python
x = 1
```

```python skip
this is not python
```

```python
# doctest: skip
raise RuntimeError("never runs")
```

- a list item:

    ```python
    y = x + 1
    ```

!!! note
    ~~~pycon
    >>> y * 10
    20
    ~~~

````markdown
```python
nested = "inside a four-backtick fence: not a block of its own"
```
````

```toml
[tool]
```
"""


def test_extract_blocks_finds_fences_and_lines() -> None:
    blocks = extract_blocks(SAMPLE)
    assert [(b.line, b.info) for b in blocks] == [
        (3, "python"),
        (7, "python skip"),
        (11, "python"),
        (18, "python"),
        (23, "pycon"),
        (28, "markdown"),
        (34, "toml"),
    ]
    assert blocks[3].source == "y = x + 1"
    assert blocks[4].source == ">>> y * 10\n20"
    assert [b.line for b in blocks if b.runnable] == [3, 18, 23]


def test_blocks_share_one_namespace(tmp_path: Path) -> None:
    doc = tmp_path / "sample.md"
    doc.write_text(SAMPLE, encoding="utf-8")
    run_markdown_file(doc, "sample.md")


def test_failing_python_block_names_file_line_and_exception(tmp_path: Path) -> None:
    doc = tmp_path / "broken.md"
    doc.write_text("Intro.\n\n```python\nok = 1\n```\n\n```python\n1 / 0\n```\n", encoding="utf-8")
    with pytest.raises(pytest.fail.Exception) as info:
        run_markdown_file(doc, "docs/broken.md")
    message = str(info.value)
    assert "docs/broken.md: python block starting at line 7 failed" in message
    assert "ZeroDivisionError" in message
    assert "line 8" in message  # the traceback points into the Markdown file


def test_failing_pycon_block_shows_doctest_report(tmp_path: Path) -> None:
    doc = tmp_path / "broken.md"
    doc.write_text("```pycon\n>>> 1 + 1\n3\n```\n", encoding="utf-8")
    with pytest.raises(pytest.fail.Exception) as info:
        run_markdown_file(doc, "broken.md")
    message = str(info.value)
    assert "broken.md: pycon block starting at line 1 failed" in message
    assert "Expected:\n    3\nGot:\n    2" in message


def test_required_fixtures_are_read_from_comments() -> None:
    text = "# T\n<!-- requires: olist_dir -->\n\ntext <!--requires:a, b  c-->\n<!-- other -->\n"
    assert required_fixtures(text) == ["olist_dir", "a", "b", "c"]
    assert required_fixtures("<!-- requires: a -->\n<!-- requires: a -->") == ["a"]
    assert required_fixtures(SAMPLE) == []


@pytest.fixture
def absent_data() -> None:
    """A fixture that skips, as ``olist_dir`` does when the data set is absent."""
    pytest.skip("the data is absent")


def test_a_page_requiring_a_skipping_fixture_is_skipped(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    page = tmp_path / "page.md"
    page.write_text("<!-- requires: absent_data -->\n```python\nraise RuntimeError\n```\n")
    with pytest.raises(pytest.skip.Exception, match="the data is absent"):
        request_required_fixtures(page, request)
    present = tmp_path / "present.md"
    present.write_text("<!-- requires: tmp_path_factory -->\n```python\nok = 1\n```\n")
    request_required_fixtures(present, request)  # a fixture that does not skip: nothing happens
    run_markdown_file(present, "present.md")
