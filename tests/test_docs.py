"""Every code block of README.md and docs/*.md runs, so the documentation cannot rot.

* ``python`` blocks run in order, those of one file in one namespace, in a fresh
  working directory (files they write stay there);
* ``console`` blocks run each ``$ python -m fastnn.train ...`` line as users do and
  require exit status 0 (the output shown holds timings, so it is not compared);
* ``sh`` blocks and indented blocks are install and tool commands: ``pip install``
  lines must name extras that pyproject.toml defines, ``python -m fastnn.train``
  runs, and any other command must name a tool or script that exists (the test
  suite is not started from inside itself, nor are benchmarks);
* ``text`` blocks are output listings, not code; in indented blocks, lines that do
  not start with a known program (formulas, listings) are not commands either.

The generated table of docs/errors.md must also be what its script prints today.
"""

import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)


#: Programs whose command lines the indented blocks may hold.
PROGRAMS = ("pip", "python", "env", "asv", "fastnn-train")


def blocks(page):
    """[(language, code)] of a Markdown page: fenced blocks, and indented ones as "indented"."""
    text = page.read_text()
    found = [(m.group(1) or "text", m.group(2)) for m in FENCE.finditer(text)]
    outside = FENCE.sub("", text)
    for m in re.finditer(r"(?:^|\n\n)((?:    \S.*\n)(?:    .*\S.*\n)*)", outside):
        found.append(("indented", "\n".join(line[4:] for line in m.group(1).splitlines())))
    return found


def command_lines(code):
    """The lines of a shell block, continuation lines (ending in a backslash) joined."""
    return [line for line in code.replace("\\\n", " ").splitlines() if line.strip()]


def run_command(words, cwd):
    """Run one fastnn.train command line (as given after `python -m`) in cwd."""
    result = subprocess.run([sys.executable, *words], cwd=cwd, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, (words, result.stderr[-2000:])


def check_shell_line(line, cwd):
    line = line.split("#")[0].strip()
    for command in filter(None, (part.strip() for part in line.split("&&"))):
        words = shlex.split(command)
        while words[0] == "env":  # env -u NAME ... program: check the program
            words = words[3:] if words[1] == "-u" else words[1:]
            while words[0] == "-u":
                words = words[2:]
        while re.fullmatch(r"[A-Z_][A-Z0-9_]*=\S*", words[0]):  # NAME=value program
            words = words[1:]
        if words[:2] == ["pip", "install"]:
            extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
                "optional-dependencies"]
            for spec in words[2:]:
                wanted = re.findall(r"\[([\w,]+)\]", spec)
                for name in (wanted[0].split(",") if wanted else []):
                    assert name in extras, (line, name)
        elif words[:3] == ["python", "-m", "fastnn.train"]:
            run_command(words[1:], cwd)
        elif words[0] == "python" and words[1:3] == ["-m", "pytest"]:
            assert (ROOT / "tests").is_dir()
        elif words[0] == "python":
            assert (ROOT / words[1]).is_file(), line
        elif words[0] == "asv":
            assert (ROOT / "asv.conf.json").is_file()
        else:
            raise AssertionError(f"no rule to check the command {command!r}")


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_code_blocks_run(page, tmp_path, monkeypatch):
    found = blocks(page)
    if page.name == "dask.md" and any(lang == "python" for lang, _ in found):
        pytest.importorskip("distributed")
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": f"docs_{page.stem}"}
    for language, code in found:
        if language == "python":
            exec(compile(code, f"{page.name} block", "exec"), namespace)
        elif language == "console":
            for line in code.splitlines():
                if line.startswith("$ "):
                    check_shell_line(line[2:], tmp_path)
        elif language == "sh":
            for line in command_lines(code):
                check_shell_line(line, tmp_path)
        elif language == "indented":
            for line in command_lines(code):
                if line.split()[0] in PROGRAMS:
                    check_shell_line(line, tmp_path)
        elif language != "text":
            raise AssertionError(f"{page.name}: a {language!r} block; mark code as python, "
                                 f"console or sh, output as text")


def test_the_bad_input_table_is_the_scripts_output():
    """docs/errors.md holds what scripts/bad_inputs_table.py prints, as it prints it today."""
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "bad_inputs_table.py")],
                            capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() in (ROOT / "docs" / "errors.md").read_text(), (
        "regenerate the table: python scripts/bad_inputs_table.py")
