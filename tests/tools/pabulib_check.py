#!/usr/bin/python3
"""An independent reader of Pabulib .pb files (https://pabulib.org/format), for the tests of
`tallyctl export --format pabulib`: standard library only, sharing no code with tallyctl.

For each FILE it checks the three sections (META, PROJECTS, VOTES, in this order, each
with its column header line; fields separated by ';' with CSV quoting), the required META
keys, that num_projects is the number of PROJECTS lines and num_votes the number of VOTES
lines, that voter ids are distinct, that each vote names exactly one listed project
(vote_type choose-1), and that each project's `votes` equals the VOTES lines naming it.

Prints `FILE: ok: P projects, V votes; ID=VOTES ...` per good file; the first problem of a
bad one as `FILE: ERROR: ...`. Exit 0 when every file is good, 1 otherwise, 2 on usage.
"""

import csv
import io
import sys

REQUIRED_META = ("description", "country", "unit", "instance", "num_projects", "num_votes",
                 "budget", "vote_type", "rule")
SECTIONS = ("META", "PROJECTS", "VOTES")


class Bad(Exception):
    pass


def sections(text):
    """{name: (header, rows)} from the file's text, in order."""
    rows = list(csv.reader(io.StringIO(text), delimiter=";", quotechar='"', strict=True))
    out = {}
    order = []
    current = None
    for n, row in enumerate(rows, 1):
        if not row:
            raise Bad("line %d is empty" % n)
        first = row[0].strip()
        if len(row) == 1 and first in SECTIONS:
            if first in out:
                raise Bad("line %d: section %s twice" % (n, first))
            current = first
            order.append(first)
            out[current] = [None, []]
            continue
        if current is None:
            raise Bad("line %d: data before the META section" % n)
        cells = [c.strip() for c in row]
        if out[current][0] is None:
            out[current][0] = cells
        else:
            if len(cells) != len(out[current][0]):
                raise Bad("line %d: %d fields, the %s header has %d"
                          % (n, len(cells), current, len(out[current][0])))
            out[current][1].append((n, cells))
    if tuple(order) != SECTIONS:
        raise Bad("sections %s, expected META, PROJECTS, VOTES" % ", ".join(order))
    for name in SECTIONS:
        if out[name][0] is None:
            raise Bad("section %s has no header line" % name)
    return out


def integer(text, what):
    try:
        v = int(text)
    except ValueError:
        raise Bad("%s: '%s' is not an integer" % (what, text))
    if v < 0:
        raise Bad("%s: %d is negative" % (what, v))
    return v


def check(path):
    with open(path, encoding="utf-8", newline="") as f:
        text = f.read()
    sec = sections(text)

    header, rows = sec["META"]
    if header != ["key", "value"]:
        raise Bad("META header is %s, not key;value" % ";".join(header))
    meta = {}
    for n, (key, value) in rows:
        if key in meta:
            raise Bad("line %d: META key %s twice" % (n, key))
        meta[key] = value
    for key in REQUIRED_META:
        if key not in meta:
            raise Bad("META lacks %s" % key)
    if meta["vote_type"] != "choose-1":
        raise Bad("vote_type is %s, not choose-1" % meta["vote_type"])
    integer(meta["budget"], "budget")

    header, rows = sec["PROJECTS"]
    for col in ("project_id", "cost", "votes"):
        if col not in header:
            raise Bad("PROJECTS header lacks %s" % col)
    pid, pcost, pvotes = (header.index(c) for c in ("project_id", "cost", "votes"))
    projects = {}
    for n, cells in rows:
        if cells[pid] in projects:
            raise Bad("line %d: project %s twice" % (n, cells[pid]))
        integer(cells[pcost], "line %d: cost" % n)
        projects[cells[pid]] = integer(cells[pvotes], "line %d: votes" % n)
    if integer(meta["num_projects"], "num_projects") != len(projects):
        raise Bad("num_projects is %s, PROJECTS lists %d" % (meta["num_projects"], len(projects)))

    header, rows = sec["VOTES"]
    if "voter_id" not in header or "vote" not in header:
        raise Bad("VOTES header lacks voter_id or vote")
    vid, vv = header.index("voter_id"), header.index("vote")
    seen = set()
    counted = {p: 0 for p in projects}
    for n, cells in rows:
        if cells[vid] in seen:
            raise Bad("line %d: voter %s twice" % (n, cells[vid]))
        seen.add(cells[vid])
        chosen = [c.strip() for c in cells[vv].split(",") if c.strip()]
        if len(chosen) != 1:
            raise Bad("line %d: a choose-1 vote names %d projects" % (n, len(chosen)))
        if chosen[0] not in projects:
            raise Bad("line %d: vote for project %s, not in PROJECTS" % (n, chosen[0]))
        counted[chosen[0]] += 1
    if integer(meta["num_votes"], "num_votes") != len(rows):
        raise Bad("num_votes is %s, VOTES has %d lines" % (meta["num_votes"], len(rows)))
    for p, votes in projects.items():
        if counted[p] != votes:
            raise Bad("project %s: PROJECTS says %d votes, VOTES has %d" % (p, votes, counted[p]))
    tally = " ".join("%s=%d" % (p, projects[p]) for p in projects)
    return "%d projects, %d votes; %s" % (len(projects), len(rows), tally)


def main(argv):
    if len(argv) < 2 or argv[1] in ("-h", "--help"):
        print("usage: pabulib_check.py FILE.pb...", file=sys.stderr)
        return 2
    rc = 0
    for path in argv[1:]:
        try:
            print("%s: ok: %s" % (path, check(path)))
        except (Bad, csv.Error, OSError, UnicodeDecodeError) as e:
            print("%s: ERROR: %s" % (path, e))
            rc = 1
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv))
