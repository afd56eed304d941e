"""Print docs/errors.md's table of bad inputs: what each public entry point does with each.

Runs every case of ``scripts/bad_input_cases.py`` (the list ``tests/test_bad_inputs.py``
checks) and prints a Markdown table: entry point | input | what it gets, where "what
it gets" is the exception's type and the first line of its actual message, or what
the call accepted (and whether the kernels read the input in place or a converted
copy).  Rows of one input with the same outcome are merged.  Cases whose behaviour is
a known issue say so, with what should happen instead.

    python scripts/bad_inputs_table.py > /tmp/table.md

Tiny problems (24 rows, 2 epochs): a few seconds once the kernels are compiled.
The script runs itself with PYTHONHASHSEED=0: scikit-learn's messages list the
allowed values of a parameter as a set, whose order depends on the hash seed.
"""

import os
import sys

if __name__ == "__main__" and os.environ.get("PYTHONHASHSEED") != "0":
    os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, "PYTHONHASHSEED": "0"})

import bad_input_cases as cases  # noqa: E402 (beside this script)


def cell(text):
    """text for a Markdown table cell: pipes escaped, no line breaks."""
    return " ".join(str(text).split()).replace("|", "\\|")


def code(text):
    ticks = "``" if "`" in text else "`"
    return f"{ticks}{cell(text)}{ticks}"


def outcome_text(case, outcome):
    text = outcome.describe(case.varies)
    if outcome.error is not None:
        kind, _, message = text.partition(": ")
        text = f"{kind}: {code(message)}" if message else kind
    else:
        text = cell(text)
    if case.known_issue:
        expect = case.expect
        wanted = (f"{expect.type.__name__}" if isinstance(expect, cases.Raises) else "accepted")
        text += f" **(known issue: {cell(case.known_issue)}; should be {wanted})**"
    return text


def main():
    rows = {}  # (input, outcome) -> entry points, in the order of the case list
    for case in cases.CASES:
        text = outcome_text(case, cases.run(case))
        rows.setdefault((case.input, text), []).append(case.entry)
    known = sum(1 for case in cases.CASES if case.known_issue)
    print("| entry point | input | what it gets |")
    print("| --- | --- | --- |")
    for (name, text), entries in rows.items():
        print(f"| {cell(', '.join(entries))} | {cell(name)} | {text} |")
    print()
    print(f"{len(cases.CASES)} cases over {len({c.entry for c in cases.CASES})} entry points; "
          f"{known} known issues.")


if __name__ == "__main__":
    main()
