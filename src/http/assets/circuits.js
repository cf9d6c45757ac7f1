/* tallyd dashboard: the selected state's circuit cards (#circuits): each circuit's votes,
 * seats, winners or tie, reporting progress, decided and corrected marks, and its projects'
 * table (built when the card opens). A circuit whose votes changed is re-ranked here with
 * the server's rule (src/http/snapshot.c, the SQL view circuit_winners): the top `seats`
 * projects win, unless a seat is decided by equal votes, in which case the projects
 * sharing that count are tied and none wins. The data and the fetching are app.js's. */
(function () {
    'use strict';

    var T = window.Tally, i18n = T.i18n, t = i18n.t, tn = i18n.tn;
    var el = T.dom.el, numSpan = T.dom.numSpan, toInt = T.dom.toInt;

    var OPEN_ALL_UP_TO = 8; /* a state with this many circuits or fewer opens them all */

    function hhmm(iso) {
        var d = new Date(iso);
        return isNaN(d.getTime()) ? '' : i18n.hm(d);
    }

    /* "mesas reportadas X/Y · participación Z %", or '' when no table is loaded. */
    function progressText(p) {
        if (!p || !toInt(p.tables)) return '';
        var s = t('progress.tables', {
            reported: i18n.num(toInt(p.tables_reported) || 0), tables: i18n.num(toInt(p.tables))
        });
        if (typeof p.turnout === 'number') s += ' · ' + t('progress.turnout', { pct: i18n.pct(p.turnout, 1) });
        return s;
    }

    /* Competition ranking (1, 2, 2, 4) by votes, then the server's rule: a block of equal
     * votes wins its seats only when it fits whole inside them and has votes; a block
     * straddling the last seat is a tie and nobody in it wins. */
    function rank(c) {
        var ps = c.projects;
        ps.sort(function (a, b) { return b.votes - a.votes || a.id - b.id; });
        var total = 0;
        ps.forEach(function (p) { total += p.votes; });
        c.votes = total;
        for (var i = 0; i < ps.length;) {
            var j = i;
            while (j < ps.length && ps[j].votes === ps[i].votes) j++;
            for (var k = i; k < j; k++) {
                ps[k].rank = i + 1;
                ps[k].winner = j <= c.seats && ps[i].votes > 0;
                ps[k].tie = i < c.seats && j > c.seats;
            }
            i = j;
        }
        /* Before any vote every project "ties"; that is no news, so it is not shown. */
        c.tie = total > 0 && ps.some(function (p) { return p.tie; });
        /* The server's winners, when it sent them, carry what the votes alone do not
         * (min_votes): they arrive with the same checkpoint as the votes. */
        if (c.serverWinners) {
            var w = new Set(c.serverWinners);
            ps.forEach(function (p) { p.winner = w.has(p.id); });
            c.tie = total > 0 && !!c.serverTie;
        }
    }

    /* A circuit's fields from /v1/circuits or an SSE checkpoint's "circuits" entry. */
    function takeFields(c, src) {
        if (Array.isArray(src.winners)) c.serverWinners = src.winners.map(toInt);
        if ('tie' in src) c.serverTie = !!src.tie;
        if ('decided' in src) c.decided = !!src.decided;
        if ('progress' in src) c.progress = src.progress;
        if ('corrected_at' in src) c.correctedAt = src.corrected_at;
    }

    function create(model, box) {
        var target = { circuit: null, project: null }; /* highlighted by a search link */

        function node(c) {
            var d = document.createElement('details');
            d.className = 'circuit';
            d.dataset.id = String(c.id);
            d.appendChild(document.createElement('summary'));
            var table = el('table', 'projects');
            table.appendChild(el('caption', 'visually-hidden'));
            var thead = el('thead');
            var hr = el('tr');
            [['circuit.colRank', 'col-rank'], ['circuit.colProject', 'col-name'],
                ['circuit.colVotes', 'col-votes']].forEach(function (h) {
                var th = el('th', h[1], t(h[0]));
                th.scope = 'col';
                hr.appendChild(th);
            });
            thead.appendChild(hr);
            table.appendChild(thead);
            table.appendChild(el('tbody'));
            d.appendChild(table);
            c.node = d;
            fill(c);
            return d;
        }

        function fill(c) {
            var d = c.node;
            if (!d) return;
            var head = el('span', 'c-head');
            head.appendChild(el('span', 'c-name', c.name));
            head.appendChild(el('span', 'c-id', t('circuit.id', { id: c.id })));
            var meta = el('span', 'c-meta');
            meta.replaceChildren.apply(meta, i18n.parts('circuit.votes', {
                votes: numSpan(c.votes), seats: tn('circuit.seats', c.seats)
            }));
            /* Reporting progress on a line of its own, under the rest. */
            var tables = el('span', 'c-tables');
            var ptext = progressText(c.progress);
            if (ptext) {
                tables.appendChild(el('span', 'c-progress', ptext));
                tables.appendChild(document.createTextNode(' '));
                tables.appendChild(el('span', c.decided ? 'badge badge-decided' : 'badge badge-open',
                    t(c.decided ? 'circuit.decided' : 'circuit.open')));
            }
            if (c.correctedAt) {
                var corr = el('span', 'badge badge-corrected', t('circuit.corrected', { time: hhmm(c.correctedAt) }));
                corr.title = t('circuit.correctedTitle', { at: c.correctedAt });
                tables.appendChild(document.createTextNode(' '));
                tables.appendChild(corr);
            }
            var status = el('span', 'c-status');
            var winners = c.projects.filter(function (p) { return p.winner; });
            if (c.votes === 0) {
                status.appendChild(el('span', 'muted', t('circuit.noVotes')));
            } else {
                if (winners.length) {
                    status.appendChild(el('span', 'badge badge-win', tn('circuit.wins', winners.length)));
                    status.appendChild(document.createTextNode(winners.map(function (p) {
                        return p.name;
                    }).join(' · ') + ' '));
                }
                if (c.tie) {
                    status.appendChild(el('span', 'badge badge-tie', t('circuit.tie')));
                    status.appendChild(document.createTextNode(t(winners.length ? 'circuit.tieLast'
                        : c.seats === 1 ? 'circuit.tieSeat' : 'circuit.tieSeats')));
                }
            }
            var parts = [head, meta, status];
            if (tables.childNodes.length) parts.push(tables);
            var summary = d.querySelector('summary');
            summary.replaceChildren.apply(summary, parts);
            d.classList.toggle('has-tie', c.tie);
            d.classList.toggle('is-corrected', !!c.correctedAt);
            /* A closed circuit's table is built when it opens: a large state has hundreds. */
            c.tableStale = true;
            if (d.open) fillTable(c);
        }

        function fillTable(c) {
            var d = c.node;
            c.tableStale = false;
            d.querySelector('caption').textContent = t('circuit.caption', { name: c.name });
            var tbody = d.querySelector('tbody');
            var rows = c.projects.map(function (p) {
                var showTie = p.tie && c.tie;
                var tr = el('tr', p.winner ? 'is-winner' : showTie ? 'is-tie' : '');
                tr.dataset.id = String(p.id);
                if (target.circuit === c.id && target.project === p.id) tr.classList.add('is-target');
                tr.appendChild(el('td', 'col-rank', String(p.rank)));
                var name = el('th', 'col-name');
                name.scope = 'row';
                name.appendChild(el('span', 'p-name', p.name));
                if (p.winner) name.appendChild(el('span', 'badge badge-win', t('circuit.win')));
                if (showTie) name.appendChild(el('span', 'badge badge-tie', t('circuit.tie')));
                var share = c.votes ? p.votes / c.votes : 0;
                var bar = el('span', 'bar');
                bar.setAttribute('aria-hidden', 'true');
                var fillBar = el('span');
                fillBar.style.width = (share * 100).toFixed(1) + '%';
                bar.appendChild(fillBar);
                name.appendChild(bar);
                tr.appendChild(name);
                var v = el('td', 'col-votes');
                var num = numSpan(p.votes);
                if (p.shown !== undefined && p.shown !== p.votes) num.classList.add('bump');
                p.shown = p.votes;
                v.appendChild(num);
                v.appendChild(el('span', 'share', i18n.pct(share, 1)));
                tr.appendChild(v);
                return tr;
            });
            tbody.replaceChildren.apply(tbody, rows);
        }

        function sorted() {
            return Array.from(model.circuits.values()).sort(function (a, b) {
                return i18n.collator.compare(a.name, b.name) || a.id - b.id;
            });
        }

        function render(fresh) {
            var list = sorted();
            var open = new Set();
            if (!fresh) box.querySelectorAll('details[open]').forEach(function (d) { open.add(d.dataset.id); });
            var nodes = list.map(function (c) {
                rank(c);
                var d = node(c);
                if (fresh ? list.length <= OPEN_ALL_UP_TO : open.has(d.dataset.id)) {
                    d.open = true;
                    fillTable(c);
                }
                d.classList.toggle('is-target', target.circuit === c.id);
                return d;
            });
            if (!nodes.length) nodes.push(el('p', 'muted', t('results.noCircuits')));
            box.replaceChildren.apply(box, nodes);
            renderSummary();
            syncExpand();
        }

        function renderSummary() {
            var votes = 0, won = 0, ties = 0, none = 0, withTables = 0, decided = 0;
            model.circuits.forEach(function (c) {
                votes += c.votes || 0;
                if (!c.votes) none++;
                else if (c.tie) ties++;
                else won++;
                if (c.progress && toInt(c.progress.tables)) withTables++;
                if (c.decided) decided++;
            });
            var parts = [t('results.withWinner', { n: i18n.num(won) }), t('results.withTie', { n: i18n.num(ties) })];
            if (none) parts.push(t('results.noVotes', { n: i18n.num(none) }));
            if (withTables) parts.push(tn('results.decided', decided));
            var s = document.getElementById('state-summary');
            s.replaceChildren.apply(s, i18n.parts('results.summary', {
                state: model.state || '', circuits: tn('n.circuits', model.circuits.size),
                votes: numSpan(votes), parts: parts.join(' · ')
            }));
        }

        function syncExpand() {
            var all = box.querySelectorAll('details');
            var open = box.querySelectorAll('details[open]');
            var b = document.getElementById('expand-all');
            b.textContent = t(all.length && open.length === all.length ? 'results.collapse' : 'results.expand');
            b.disabled = all.length === 0;
        }

        /* Opens the circuit a link named (#estado=..&circuito=..&proyecto=..), marks it and
         * its project, scrolls to it and gives it the focus. False when it is not loaded. */
        function reveal(circuit, project) {
            var c = model.circuits.get(circuit);
            if (!c || !c.node) return false;
            box.querySelectorAll('.is-target').forEach(function (e) { e.classList.remove('is-target'); });
            target = { circuit: circuit, project: project };
            c.node.classList.add('is-target');
            c.node.open = true;
            fillTable(c);
            syncExpand();
            var row = project !== null ? c.node.querySelector('tr[data-id="' + project + '"]') : null;
            var summary = c.node.querySelector('summary');
            (row || c.node).scrollIntoView({ block: row ? 'center' : 'start' });
            summary.focus({ preventScroll: true });
            return true;
        }

        return {
            render: render, fill: fill, fillTable: fillTable, renderSummary: renderSummary,
            syncExpand: syncExpand, reveal: reveal
        };
    }

    window.Tally.circuits = {
        create: create, rank: rank, takeFields: takeFields, progressText: progressText
    };
})();
