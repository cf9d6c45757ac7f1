/* tallyd dashboard: the overview of the states, one table row per state of /v1/states with
 * its circuits, circuits decided, tables reported, turnout and ballots exactly as the API
 * gives them (formatted for the language), sortable by each column with the buttons of the
 * header (aria-sort on the sorted column). Rows are kept and moved, not rebuilt, so a
 * focused link keeps its focus across updates. The national total is the footer row. */
(function () {
    'use strict';

    var i18n = window.Tally.i18n;
    var t = i18n.t;

    var COLUMNS = ['circuits', 'decided', 'reported', 'turnout', 'ballots'];

    function int(v) {
        var n = Number(v);
        return v === null || v === undefined || !isFinite(n) ? null : n;
    }

    /* A state's (or the nation's) figures: {circuits, decided, reported, tables, fraction,
     * turnout, ballots}; null where the API has no value (decided under embargo). */
    function figures(circuits, p) {
        p = p || {};
        var tables = int(p.tables), reported = int(p.tables_reported);
        return {
            circuits: int(circuits),
            decided: int(p.circuits_decided),
            reported: reported,
            tables: tables,
            fraction: tables ? (reported || 0) / tables : null,
            turnout: typeof p.turnout === 'number' ? p.turnout : null,
            ballots: int(p.ballots)
        };
    }

    function sortValue(f, col) {
        return col === 'reported' ? f.fraction : f[col];
    }

    function cell(tag, col, value, text) {
        var c = document.createElement(tag);
        c.dataset.col = col;
        c.dataset.value = value === null ? '' : String(value);
        c.textContent = text;
        if (col !== 'name') c.className = 'num';
        return c;
    }

    function fillCells(tr, f) {
        var dash = '—';
        var cells = [
            cell('td', 'circuits', f.circuits, f.circuits === null ? dash : i18n.num(f.circuits)),
            cell('td', 'decided', f.decided, f.decided === null ? dash : i18n.num(f.decided)),
            cell('td', 'reported', f.fraction, f.fraction === null ? dash :
                t('states.reportedCell', { reported: i18n.num(f.reported || 0), tables: i18n.num(f.tables) })),
            cell('td', 'turnout', f.turnout, f.turnout === null ? dash : i18n.pct(f.turnout, 2)),
            cell('td', 'ballots', f.ballots, f.ballots === null ? dash : i18n.num(f.ballots))
        ];
        var rep = cells[2];
        rep.dataset.reported = f.reported === null ? '' : String(f.reported);
        rep.dataset.tables = f.tables === null ? '' : String(f.tables);
        if (f.fraction !== null) {
            var share = document.createElement('span');
            share.className = 'share';
            share.textContent = i18n.pct(f.fraction, 1);
            rep.appendChild(share);
        }
        var first = tr.firstChild;
        while (first && first.nextSibling) tr.removeChild(first.nextSibling);
        cells.forEach(function (c) { tr.appendChild(c); });
    }

    function create(table, hrefOf) {
        var tbody = table.tBodies[0];
        var tfoot = table.tFoot || table.createTFoot();
        var rows = new Map(); /* name -> {tr, f} */
        var sort = { col: 'name', dir: 'ascending' };
        var last = null;

        function order() {
            var list = Array.from(rows.entries());
            var sign = sort.dir === 'ascending' ? 1 : -1;
            list.sort(function (a, b) {
                if (sort.col !== 'name') {
                    var x = sortValue(a[1].f, sort.col), y = sortValue(b[1].f, sort.col);
                    /* No value sorts last, whichever the direction. */
                    if (x === null && y !== null) return 1;
                    if (y === null && x !== null) return -1;
                    if (x !== null && x !== y) return sign * (x < y ? -1 : 1);
                    return i18n.collator.compare(a[0], b[0]);
                }
                return sign * i18n.collator.compare(a[0], b[0]);
            });
            list.forEach(function (e) { tbody.appendChild(e[1].tr); });
            table.querySelectorAll('thead th[data-col]').forEach(function (th) {
                var on = th.dataset.col === sort.col;
                if (on) th.setAttribute('aria-sort', sort.dir);
                else th.removeAttribute('aria-sort');
                var b = th.querySelector('button');
                if (b) b.dataset.dir = on ? sort.dir : '';
            });
        }

        table.querySelectorAll('thead button[data-sort]').forEach(function (b) {
            b.addEventListener('click', function () {
                var col = b.dataset.sort;
                if (col === sort.col) {
                    sort.dir = sort.dir === 'ascending' ? 'descending' : 'ascending';
                } else {
                    sort.col = col;
                    /* Figures: the largest first; names: A to Z. */
                    sort.dir = col === 'name' ? 'ascending' : 'descending';
                }
                order();
            });
        });

        /* states: /v1/states's [{name, circuits, progress}]; national: {circuits, progress}
         * from /v1/summary, or null. */
        function render(states, national, checkpoint) {
            var seen = new Set();
            states.forEach(function (s) {
                var name = String(s.name);
                seen.add(name);
                var r = rows.get(name);
                if (!r) {
                    var tr = document.createElement('tr');
                    tr.dataset.state = name;
                    var th = document.createElement('th');
                    th.scope = 'row';
                    th.dataset.col = 'name';
                    var a = document.createElement('a');
                    a.textContent = name;
                    th.appendChild(a);
                    tr.appendChild(th);
                    r = { tr: tr, f: null };
                    rows.set(name, r);
                }
                r.tr.querySelector('a').href = hrefOf(name);
                r.f = figures(s.circuits, s.progress);
                fillCells(r.tr, r.f);
            });
            rows.forEach(function (r, name) {
                if (!seen.has(name)) {
                    r.tr.remove();
                    rows.delete(name);
                }
            });
            if (!states.length) {
                var empty = document.createElement('tr');
                var td = document.createElement('td');
                td.colSpan = COLUMNS.length + 1;
                td.className = 'muted';
                td.textContent = t('states.empty');
                empty.appendChild(td);
                tbody.replaceChildren(empty);
            } else {
                tbody.querySelectorAll('tr:not([data-state])').forEach(function (tr) { tr.remove(); });
            }
            if (national) {
                var tr = document.createElement('tr');
                tr.dataset.total = 'national';
                var th = document.createElement('th');
                th.scope = 'row';
                th.dataset.col = 'name';
                th.textContent = t('states.total');
                tr.appendChild(th);
                fillCells(tr, figures(national.circuits, national.progress));
                tfoot.replaceChildren(tr);
            }
            if (checkpoint !== null && checkpoint !== undefined) table.dataset.checkpoint = String(checkpoint);
            last = states;
            order();
        }

        return { render: render, get states() { return last; } };
    }

    window.Tally.statesTable = { create: create, figures: figures };
})();
