#!/usr/bin/env python3
"""BENCHMARKS.md from one full run: the run's generated sections (bench.py's
report_sections) with the hand-written narrative of bench/notes/ at fixed
places. Edit the notes, never the generated file: the next full run rewrites it.
"""

import os

NOTES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "notes")

# ("note", file under bench/notes/) or ("run", a section key of report_sections).
LAYOUT = [
    ("note", "intro.md"),
    ("run", "header"),
    ("run", "goals"),
    ("note", "profiles.md"),
    ("run", "throughput"),
    ("run", "pacing"),
    ("note", "pacing.md"),
    ("run", "curves"),
    ("note", "curves.md"),
    ("run", "budget"),
    ("note", "budget.md"),
    ("run", "memory"),
    ("run", "metrics-scaling"),
    ("run", "sse"),
    ("run", "event"),
    ("note", "event.md"),
    ("run", "compare"),
    ("run", "criterion-acquire"),
    ("note", "size-steps.md"),
    ("note", "size.md"),
    ("note", "history.md"),
    ("run", "criterion"),
    ("run", "command"),
]

BANNER = ("<!-- Written by bench/run.sh (a full run): the tables from that run, the prose "
          "from bench/notes/. Edit the notes, not this file. -->")


def render(sections, notes_dir=NOTES):
    """sections: {key: [Markdown lines]}; returns the whole file's text."""
    parts = []
    for kind, name in LAYOUT:
        if kind == "note":
            path = os.path.join(notes_dir, name)
            if os.path.exists(path):
                with open(path) as f:
                    parts.append(f.read().strip("\n"))
        else:
            text = "\n".join(sections.get(name, [])).strip("\n")
            if text:
                parts.append(text)
    # The banner goes after the title so the file still opens with its heading.
    first, _, rest = parts[0].partition("\n")
    parts[0] = f"{first}\n\n{BANNER}\n{rest}" if first.startswith("# ") else f"{BANNER}\n\n{parts[0]}"
    return "\n\n".join(parts) + "\n"


def write(path, sections, notes_dir=NOTES):
    text = render(sections, notes_dir)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)
