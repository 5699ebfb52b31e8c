"""Solution regions: the marked parts of the project's source that the student copy blanks.

A region is a run of lines inside a function between two comment lines at the same indentation: first
`# BEGIN SOLUTION <name>: <hint>`, last `# END SOLUTION <name>`, where <name> is the assignment's and <hint>
what the student's stub will say. `find_regions` lists them (an unmatched or nested marker is an error
naming the file and line); `blank` replaces each by a comment and `raise NotImplementedError` with the hint,
so the module still imports and only what calls the blanked code fails. The assignment's name is the statement's file name without its number
(classroom/assignments/03_advantages.md -> advantages).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

BEGIN = re.compile(r"^(?P<indent>[ \t]*)# BEGIN SOLUTION (?P<name>[a-z0-9-]+): (?P<hint>\S.*)$")
MARKER = re.compile(r"^[ \t]*# (BEGIN|END) SOLUTION\b")


@dataclass(frozen=True)
class Region:
    path: str  # the file it is in
    name: str  # the assignment it belongs to
    hint: str  # what the stub tells the student
    start: int  # 0-based line of its BEGIN marker
    end: int  # 0-based line of its END marker
    indent: str
    body: tuple[str, ...]  # the solution's lines

    def stub(self) -> list[str]:
        """What the student copy holds in place of the region."""
        message = f"{self.name}: {self.hint} (see classroom/assignments/)"
        return [f"{self.indent}# YOUR CODE HERE ({self.name})", f"{self.indent}raise NotImplementedError({message!r})"]


def find_regions(text: str, path: str = "<text>") -> list[Region]:
    """Every solution region of a source text, in order. ValueError 'path:line: ...' on a malformed marker."""
    lines, out, i = text.split("\n"), [], 0
    while i < len(lines):
        begin = BEGIN.match(lines[i])
        if not begin:
            if MARKER.match(lines[i]):
                raise ValueError(f"{path}:{i + 1}: {lines[i].strip()!r} is not inside a region, or malformed "
                                 "(want '# BEGIN SOLUTION name: hint' ... '# END SOLUTION name')")
            i += 1
            continue
        end_marker = f"{begin['indent']}# END SOLUTION {begin['name']}"
        end = next((k for k in range(i + 1, len(lines)) if lines[k].rstrip() == end_marker), None)
        if end is None:
            raise ValueError(f"{path}:{i + 1}: no '{end_marker.strip()}' at the same indentation after it")
        inner = [k for k in range(i + 1, end) if MARKER.match(lines[k])]
        if inner:
            raise ValueError(f"{path}:{inner[0] + 1}: a marker inside the region that starts at line {i + 1}")
        body = tuple(lines[i + 1:end])
        if not any(line.strip() for line in body):
            raise ValueError(f"{path}:{i + 1}: the region {begin['name']} is empty")
        out.append(Region(path, begin["name"], begin["hint"], i, end, begin["indent"], body))
        i = end + 1
    return out


def blank(text: str, path: str = "<text>", names: set[str] | None = None) -> str:
    """The text with every region (of the assignments in `names`; None: all) replaced by its stub."""
    lines = text.split("\n")
    for region in reversed(find_regions(text, path)):
        if names is None or region.name in names:
            lines[region.start:region.end + 1] = region.stub()
    return "\n".join(lines)
