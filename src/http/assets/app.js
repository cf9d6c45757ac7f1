/* tallyd dashboard: national totals, progress and results by state -> circuit, kept live
 * from the server's event stream. Plain JavaScript, no framework, no network but tallyd's
 * own API: GET /v1/summary, /v1/circuits?state=, /v1/results?state=, /v1/events (SSE).
 *
 * Numbers only ever come from the server's durable snapshots. A `checkpoint` event carries
 * new absolute totals and the absolute votes of the projects that changed. The page loads
 * only the selected state's circuits and projects, and fetches them again after a `reset`
 * event, a `snapshot` event that shows it is behind, or a gap in checkpoint ids. A circuit
 * whose votes changed is re-ranked here with the server's rule (src/http/snapshot.c, and
 * the SQL view circuit_winners): the top `seats` projects win, unless a seat is decided by
 * equal votes, in which case the projects sharing that count are tied and none wins. */
(function () {
    'use strict';

    var SUMMARY_REFRESH_MS = 5000; /* collectors' progress is not in the events */
    var RELOAD_DEBOUNCE_MS = 400;
    var RETRY_MAX_MS = 30000;
    var OPEN_ALL_UP_TO = 8; /* a state with this many circuits or fewer opens them all */

    var $ = function (id) { return document.getElementById(id); };

    var model = {
        checkpoint: -1,          /* newest checkpoint whose totals are shown */
        projectsCp: -1,          /* checkpoint the loaded projects' votes are at */
        circuitsCp: -1,          /* checkpoint the loaded circuits' fields are at */
        loading: null,           /* events held while the state's results are in flight */
        states: [],              /* [{name, circuits}] sorted by name */
        state: null,             /* the selected state's name */
        circuits: new Map(),     /* its circuits: id -> {id, name, seats, votes, tie, projects, node} */
        projects: new Map()      /* its projects: id -> {id, name, circuit_id, votes, rank, winner, tie} */
    };

    /* ---- formatting ------------------------------------------------------------------- */

    var pct = new Intl.NumberFormat('es', { style: 'percent', maximumFractionDigits: 1 });
    var timeFmt = new Intl.DateTimeFormat('es', {
        hour: '2-digit', minute: '2-digit', second: '2-digit'
    });
    var dateTimeFmt = new Intl.DateTimeFormat('es', {
        day: 'numeric', month: 'short', hour: '2-digit', minute: '2-digit', second: '2-digit'
    });
    var collator = new Intl.Collator('es', { numeric: true, sensitivity: 'base' });

    function toInt(v) {
        var n = Number(v);
        return Number.isFinite(n) ? Math.trunc(n) : null;
    }

    /* Writes n into el as plain digits, grouped by threes with CSS spacing only: the text
     * stays "1234567" for copy-paste, screen readers and scripts, and reads as 1 234 567. */
    function setNum(el, v) {
        var n = toInt(v);
        if (!el) return;
        if (n === null) {
            el.textContent = '—';
            delete el.dataset.value;
            return;
        }
        var s = String(n);
        if (el.dataset.value === s) return;
        var changed = el.dataset.value !== undefined;
        el.dataset.value = s;
        var neg = s[0] === '-' ? '-' : '';
        var digits = neg ? s.slice(1) : s;
        var head = digits.length % 3 || 3;
        var parts = [neg + digits.slice(0, head)];
        for (var i = head; i < digits.length; i += 3) {
            var g = document.createElement('span');
            g.className = 'g';
            g.textContent = digits.slice(i, i + 3);
            parts.push(g);
        }
        el.replaceChildren.apply(el, parts);
        if (changed) bump(el);
    }

    function numSpan(v, cls) {
        var el = document.createElement('span');
        el.className = 'num' + (cls ? ' ' + cls : '');
        setNum(el, v);
        return el;
    }

    function bump(el) {
        el.classList.remove('bump');
        void el.offsetWidth; /* restart the animation */
        el.classList.add('bump');
    }

    function fold(s) {
        return String(s).normalize('NFD').replace(/[\u0300-\u036f]/g, '').toLowerCase();
    }

    function el(tag, cls, text) {
        var e = document.createElement(tag);
        if (cls) e.className = cls;
        if (text !== undefined) e.textContent = text;
        return e;
    }

    /* ---- fetching --------------------------------------------------------------------- */

    function getJSON(path) {
        return fetch(path, { cache: 'no-cache', headers: { Accept: 'application/json' } })
            .then(function (r) {
                if (r.ok) return r.json();
                /* The API's errors are {"error": "..."}: say what the server said. */
                return r.json().catch(function () { return {}; }).then(function (body) {
                    var why = body && typeof body.error === 'string' ? ': ' + body.error : '';
                    throw new Error(path + ': HTTP ' + r.status + why);
                });
            });
    }

    function showAlert(msg) {
        var a = $('alert');
        if (msg) {
            a.textContent = msg;
            a.hidden = false;
        } else {
            a.hidden = true;
        }
    }

    /* ---- totals and progress ---------------------------------------------------------- */

    function rejectedTotal(r) {
        if (r === null || r === undefined) return null;
        if (typeof r === 'number') return r;
        var sum = 0;
        Object.keys(r).forEach(function (k) { sum += toInt(r[k]) || 0; });
        return sum;
    }

    function renderTotals(t) {
        if (!t) return;
        setNum($('total-accepted'), t.accepted);
        setNum($('total-duplicate'), t.duplicate !== undefined ? t.duplicate : t.duplicates);
        setNum($('total-rejected'), rejectedTotal(t.rejected));
        setNum($('total-batches'), t.batches);
    }

    var checkpointTime = null;

    function renderCheckpoint(id, time) {
        var n = toInt(id);
        if (n !== null) {
            var c = $('checkpoint-id');
            if (c.textContent !== String(n)) {
                c.textContent = String(n);
                bump(c);
            }
        }
        var d = time ? new Date(typeof time === 'number' ? time : String(time)) : null;
        checkpointTime = d && !isNaN(d.getTime()) ? d : null;
        var t = $('checkpoint-time');
        if (checkpointTime) {
            t.dateTime = checkpointTime.toISOString();
            var today = new Date().toDateString() === checkpointTime.toDateString();
            t.textContent = (today ? timeFmt : dateTimeFmt).format(checkpointTime);
        } else {
            t.removeAttribute('datetime');
            t.textContent = n === 0 ? '(estado recuperado al iniciar)' : '—';
        }
        renderAge();
    }

    function renderAge() {
        var a = $('checkpoint-age');
        if (!checkpointTime) {
            a.textContent = '';
            return;
        }
        var s = Math.max(0, Math.round((Date.now() - checkpointTime.getTime()) / 1000));
        a.textContent = s < 60 ? '(hace ' + s + ' s)'
            : s < 3600 ? '(hace ' + Math.floor(s / 60) + ' min)'
                : '(hace ' + Math.floor(s / 3600) + ' h)';
    }

    /* The footer's audit line: the hash is long, so it shows a prefix and keeps the whole
     * value in the title (and in the text a copy of the title gives). */
    function renderHead(id, hash) {
        var n = toInt(id);
        $('foot-checkpoint').textContent = n === null ? '—' : '#' + n;
        var h = $('head-hash');
        if (typeof hash === 'string' && /^[0-9a-f]{64}$/.test(hash)) {
            h.textContent = hash.slice(0, 16) + '…';
            h.title = hash;
        } else {
            h.textContent = '—';
            h.title = n === 0 ? 'ningún corte guardado todavía' : '';
        }
    }

    /* ---- reporting progress (docs/api.md) ---------------------------------------------- */

    /* "mesas reportadas X/Y · participación Z %", or '' when no table is loaded. */
    function progressText(p) {
        if (!p || !toInt(p.tables)) return '';
        var t = 'mesas reportadas ' + (toInt(p.tables_reported) || 0) + '/' +
            toInt(p.tables);
        if (typeof p.turnout === 'number') t += ' · participación ' + pct.format(p.turnout);
        return t;
    }

    function hhmm(iso) {
        var d = new Date(iso);
        if (isNaN(d.getTime())) return '';
        return String(d.getHours()).padStart(2, '0') + ':' + String(d.getMinutes()).padStart(2, '0');
    }

    function renderProgress(p) {
        var box = $('tables-progress');
        if (!box || !p) return;
        var text = progressText(p);
        box.hidden = !text;
        if (!text) return;
        var decided = toInt(p.circuits_decided);
        box.textContent = text + (decided !== null ? ' · ' + plural(decided, 'circuito decidido',
            'circuitos decididos') : '');
    }

    /* The consultation's status (docs/consultation.md, part B): "Provisional" or "Oficial"
     * in the header, and under embargo a notice instead of the results, which the server
     * then does not send (only progress). */
    function renderStatus(d) {
        if (!d || !('embargo' in d)) return;
        var official = d.status === 'official';
        var st = $('status');
        st.dataset.status = official ? 'official' : 'provisional';
        st.textContent = (official ? 'Oficial' : 'Provisional') + (d.closed ? ' · cerrada' : '');
        st.title = official ? 'Resultados certificados' + (typeof d.certified_hash === 'string' ?
            ' (cadena ' + d.certified_hash + ')' : '') : 'Resultados provisionales: aún no certificados';
        var was = model.embargo;
        model.embargo = d.embargo === true;
        $('embargo').hidden = !model.embargo;
        $('results').hidden = model.embargo;
        document.body.classList.toggle('under-embargo', model.embargo);
        if (was !== undefined && was !== model.embargo) scheduleReload(0);
    }

    function renderSummary(s) {
        renderStatus(s);
        if (s.consultation && s.consultation.name) {
            $('consultation-name').textContent = s.consultation.name;
            document.title = 'Resultados en vivo · ' + s.consultation.name;
        }
        var cpId = checkpointOf(s);
        var cpTime = s.checkpoint !== null && typeof s.checkpoint === 'object' ? s.checkpoint.time : s.time;
        /* An event may already have brought a newer checkpoint than this answer. */
        if (cpId === null || cpId >= model.checkpoint) {
            renderTotals(s.totals);
            renderProgress(s.progress);
            renderCheckpoint(cpId, cpTime);
            if ('head_hash' in s) renderHead(cpId, s.head_hash);
            if (cpId !== null) model.checkpoint = cpId;
        }
        var c = s.collectors || {};
        var registered = toInt(c.registered), reporting = toInt(c.reporting);
        setNum($('collectors-registered'), registered);
        setNum($('collectors-reporting'), reporting);
        setNum($('collectors-connected'), c.connected);
        $('collectors-connected-label').textContent = toInt(c.connected) === 1 ? 'conectado' : 'conectados';
        var share = registered ? Math.min(1, (reporting || 0) / registered) : 0;
        $('collectors-bar').style.width = (share * 100).toFixed(1) + '%';

        var np = toInt(s.projects), nc = toInt(s.circuits);
        var ns = Array.isArray(s.states) ? s.states.length : toInt(s.states);
        if (np !== null && nc !== null) {
            $('registry-size').textContent = plural(np, 'proyecto', 'proyectos') + ' en ' +
                plural(nc, 'circuito', 'circuitos') +
                (ns ? ' de ' + plural(ns, 'estado', 'estados') : '') + '.';
        }
    }

    /* ---- circuits, ranks, winners, ties ------------------------------------------------- */

    /* Competition ranking (1, 2, 2, 4) by votes, then the server's rule (src/http/snapshot.c):
     * a block of equal votes wins its seats only when it fits whole inside them and has
     * votes; a block straddling the last seat is a tie and nobody in it wins. */
    function rankCircuit(c) {
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
    function takeCircuitFields(c, src) {
        if (Array.isArray(src.winners)) c.serverWinners = src.winners.map(toInt);
        if ('tie' in src) c.serverTie = !!src.tie;
        if ('decided' in src) c.decided = !!src.decided;
        if ('progress' in src) c.progress = src.progress;
        if ('corrected_at' in src) c.correctedAt = src.corrected_at;
    }

    function circuitNode(c) {
        var d = document.createElement('details');
        d.className = 'circuit';
        d.dataset.id = String(c.id);
        d.appendChild(document.createElement('summary'));
        var table = el('table', 'projects');
        table.appendChild(el('caption', 'visually-hidden'));
        var thead = el('thead');
        var hr = el('tr');
        [['#', 'col-rank'], ['Proyecto', 'col-name'], ['Votos', 'col-votes']].forEach(function (h) {
            var th = el('th', h[1], h[0]);
            th.scope = 'col';
            hr.appendChild(th);
        });
        thead.appendChild(hr);
        table.appendChild(thead);
        table.appendChild(el('tbody'));
        d.appendChild(table);
        c.node = d;
        fillCircuit(c);
        return d;
    }

    function fillCircuit(c) {
        var d = c.node;
        if (!d) return;
        var head = el('span', 'c-head');
        head.appendChild(el('span', 'c-name', c.name));
        head.appendChild(el('span', 'c-id', 'circuito ' + c.id));
        var meta = el('span', 'c-meta');
        meta.appendChild(numSpan(c.votes));
        meta.appendChild(document.createTextNode(' votos · ' + c.seats +
            (c.seats === 1 ? ' cupo' : ' cupos')));
        /* Reporting progress on a line of its own, under the rest. */
        var tables = el('span', 'c-tables');
        var ptext = progressText(c.progress);
        if (ptext) {
            tables.appendChild(el('span', 'c-progress', ptext));
            tables.appendChild(document.createTextNode(' '));
            tables.appendChild(el('span', c.decided ? 'badge badge-decided' : 'badge badge-open',
                c.decided ? 'decidido' : 'por decidir'));
        }
        if (c.correctedAt) {
            /* Both words until the page has a string table per language: the organisers
             * read Spanish, the label the consultation's rules give is "corrected HH:MM". */
            var corr = el('span', 'badge badge-corrected',
                          'corregido (corrected) ' + hhmm(c.correctedAt));
            corr.title = 'Corrección registrada: ' + c.correctedAt + ' (ver /v1/corrections)';
            tables.appendChild(corr);
        }
        var status = el('span', 'c-status');
        var winners = c.projects.filter(function (p) { return p.winner; });
        if (c.votes === 0) {
            status.appendChild(el('span', 'muted', 'Sin votos aún'));
        } else {
            if (winners.length) {
                status.appendChild(el('span', 'badge badge-win', winners.length === 1 ? 'Gana' : 'Ganan'));
                status.appendChild(document.createTextNode(winners.map(function (p) {
                    return p.name;
                }).join(' · ') + ' '));
            }
            if (c.tie) {
                status.appendChild(el('span', 'badge badge-tie', 'Empate'));
                status.appendChild(document.createTextNode(winners.length ? 'por el último cupo'
                    : c.seats === 1 ? 'por el cupo' : 'por los cupos'));
            }
        }
        var parts = [head, meta, status];
        if (tables.childNodes.length) parts.push(tables);
        d.querySelector('summary').replaceChildren.apply(d.querySelector('summary'), parts);
        d.classList.toggle('has-tie', c.tie);
        applyFilterTo(c);
        /* A closed circuit's table is built when it opens: a large state has hundreds. */
        c.tableStale = true;
        if (d.open) fillTable(c);
    }

    function fillTable(c) {
        var d = c.node;
        c.tableStale = false;
        d.querySelector('caption').textContent = 'Proyectos del ' + c.name + ', por votos';
        var tbody = d.querySelector('tbody');
        var rows = c.projects.map(function (p) {
            var showTie = p.tie && c.tie;
            var tr = el('tr', p.winner ? 'is-winner' : showTie ? 'is-tie' : '');
            tr.dataset.id = String(p.id);
            tr.appendChild(el('td', 'col-rank', String(p.rank)));
            var name = el('th', 'col-name');
            name.scope = 'row';
            name.appendChild(el('span', 'p-name', p.name));
            if (p.winner) name.appendChild(el('span', 'badge badge-win', 'Gana'));
            if (showTie) name.appendChild(el('span', 'badge badge-tie', 'Empate'));
            var share = c.votes ? p.votes / c.votes : 0;
            var bar = el('span', 'bar');
            bar.setAttribute('aria-hidden', 'true');
            var fill = el('span');
            fill.style.width = (share * 100).toFixed(1) + '%';
            bar.appendChild(fill);
            name.appendChild(bar);
            tr.appendChild(name);
            var v = el('td', 'col-votes');
            var num = numSpan(p.votes);
            if (p.shown !== undefined && p.shown !== p.votes) num.classList.add('bump');
            p.shown = p.votes;
            v.appendChild(num);
            v.appendChild(el('span', 'share', pct.format(share)));
            tr.appendChild(v);
            return tr;
        });
        tbody.replaceChildren.apply(tbody, rows);
    }

    function sortedCircuits() {
        return Array.from(model.circuits.values()).sort(function (a, b) {
            return collator.compare(a.name, b.name) || a.id - b.id;
        });
    }

    function renderState(fresh) {
        var list = sortedCircuits();
        var box = $('circuits');
        var open = new Set();
        if (!fresh) box.querySelectorAll('details[open]').forEach(function (d) { open.add(d.dataset.id); });
        var nodes = list.map(function (c) {
            rankCircuit(c);
            var d = circuitNode(c);
            if (fresh ? list.length <= OPEN_ALL_UP_TO : open.has(d.dataset.id)) {
                d.open = true;
                fillTable(c);
            }
            return d;
        });
        if (!nodes.length) nodes.push(el('p', 'muted', 'No hay circuitos en este estado.'));
        box.replaceChildren.apply(box, nodes);
        renderStateSummary();
        syncExpandButton();
    }

    function plural(n, one, many) {
        return n + ' ' + (n === 1 ? one : many);
    }

    function renderStateSummary() {
        var votes = 0, won = 0, ties = 0, none = 0, withTables = 0, decided = 0;
        model.circuits.forEach(function (c) {
            votes += c.votes || 0;
            if (!c.votes) none++;
            else if (c.tie) ties++;
            else won++;
            if (c.progress && toInt(c.progress.tables)) withTables++;
            if (c.decided) decided++;
        });
        var parts = [plural(won, 'con ganador', 'con ganador'), plural(ties, 'con empate', 'con empate')];
        if (none) parts.push(plural(none, 'sin votos', 'sin votos'));
        if (withTables) parts.push(plural(decided, 'decidido', 'decididos'));
        $('state-summary').replaceChildren(
            document.createTextNode((model.state || '') + ': ' +
                plural(model.circuits.size, 'circuito', 'circuitos') + ' · '),
            numSpan(votes),
            document.createTextNode(' votos · ' + parts.join(' · ')));
    }

    /* ---- the filter and expand-all -------------------------------------------------------- */

    function applyFilterTo(c) {
        var q = fold($('filter').value.trim());
        var hit = !q || fold(c.name).indexOf(q) >= 0 || String(c.id) === q ||
            c.projects.some(function (p) { return fold(p.name).indexOf(q) >= 0 || String(p.id) === q; });
        if (c.node) c.node.hidden = !hit;
    }

    function applyFilter() {
        model.circuits.forEach(applyFilterTo);
        syncExpandButton();
    }

    function syncExpandButton() {
        var all = $('circuits').querySelectorAll('details:not([hidden])');
        var open = $('circuits').querySelectorAll('details[open]:not([hidden])');
        var b = $('expand-all');
        b.textContent = all.length && open.length === all.length ? 'Contraer todo' : 'Expandir todo';
        b.disabled = all.length === 0;
    }

    /* ---- states ------------------------------------------------------------------------------ */

    /* From /v1/summary's states [{name, circuits, ...}]; older servers gave names only. */
    function setStates(list) {
        if (!Array.isArray(list)) return;
        model.states = list.map(function (s) {
            return typeof s === 'string' ? { name: s, circuits: null }
                : { name: String(s.name), circuits: toInt(s.circuits) };
        }).sort(function (a, b) { return collator.compare(a.name, b.name); });
        var sel = $('state-select');
        var same = sel.options.length === model.states.length && model.states.every(function (s, i) {
            return sel.options[i].value === s.name;
        });
        if (!same) {
            sel.replaceChildren.apply(sel, model.states.map(function (s) {
                var o = el('option', '', s.name + (s.circuits === null ? ''
                    : ' · ' + s.circuits + (s.circuits === 1 ? ' circuito' : ' circuitos')));
                o.value = s.name;
                return o;
            }));
        }
        sel.disabled = model.states.length === 0;
        if (model.state !== null) sel.value = model.state;
    }

    function stateFromHash() {
        var m = /(?:^|[#&])estado=([^&]*)/.exec(location.hash);
        if (!m) return null;
        try { return decodeURIComponent(m[1]); } catch (e) { return null; }
    }

    function pickState() {
        var names = model.states.map(function (s) { return s.name; });
        var want = [stateFromHash(), model.state];
        for (var i = 0; i < want.length; i++) if (want[i] !== null && names.indexOf(want[i]) >= 0) return want[i];
        return names.length ? names[0] : null;
    }

    function selectState(name) {
        if (name === model.state) return Promise.resolve();
        model.state = name;
        $('state-select').value = name;
        history.replaceState(null, '', '#estado=' + encodeURIComponent(name));
        model.circuits = new Map();
        model.projects = new Map();
        $('circuits').replaceChildren(el('p', 'muted', 'Cargando ' + name + '…'));
        return loadState(true).catch(function (err) {
            showAlert('No se pudo cargar ' + name + ' (' + err.message + '). Reintentando…');
            scheduleReload(3000);
        });
    }

    /* ---- one state's circuits and projects ------------------------------------------------------ */

    var stateToken = 0;

    /* Fetches the selected state's circuits and projects. Events that arrive meanwhile are
     * held and replayed on top of the answer, so a checkpoint committed during the request
     * is neither lost nor applied twice. */
    function loadState(fresh) {
        var token = ++stateToken;
        var state = model.state;
        if (state === null) return Promise.resolve();
        if (!model.loading) model.loading = [];
        var q = '?state=' + encodeURIComponent(state);
        return Promise.all([getJSON('/v1/circuits' + q), getJSON('/v1/results' + q)]).then(function (rs) {
            if (token !== stateToken) return; /* a newer request superseded this one */
            var held = model.loading || [];
            model.loading = null;
            var circuits = new Map();
            (rs[0].circuits || []).forEach(function (c) {
                if (c.state !== undefined && c.state !== state) return; /* not filtered */
                var id = toInt(c.id);
                var cc = {
                    id: id, name: c.name || ('Circuito ' + id), seats: toInt(c.seats) || 1,
                    votes: 0, tie: false, projects: [], node: null
                };
                takeCircuitFields(cc, c);
                circuits.set(id, cc);
            });
            var projects = new Map();
            (rs[1].projects || []).forEach(function (p) {
                var c = circuits.get(toInt(p.circuit_id));
                if (!c) return; /* another state's project */
                var old = model.projects.get(toInt(p.id));
                var q2 = { id: toInt(p.id), name: p.name, circuit_id: c.id, votes: toInt(p.votes) || 0 };
                if (old) q2.shown = old.shown;
                projects.set(q2.id, q2);
                c.projects.push(q2);
            });
            model.circuits = circuits;
            model.projects = projects;
            model.projectsCp = checkpointOf(rs[1]);
            if (model.projectsCp === null) model.projectsCp = -1;
            model.circuitsCp = checkpointOf(rs[0]);
            if (model.circuitsCp === null) model.circuitsCp = -1;
            held.forEach(function (ev) { applyChanges(ev); });
            dirty.clear();
            renderState(fresh);
        }, function (err) {
            if (token === stateToken) model.loading = null;
            throw err;
        });
    }

    /* A document's checkpoint: a number (this server) or {id, time}. */
    function checkpointOf(doc) {
        var c = doc && doc.checkpoint;
        return toInt(c !== null && typeof c === 'object' ? c.id : c);
    }

    /* ---- everything, from scratch ------------------------------------------------------------ */

    var retryMs = 1000;
    var reloadTimer = null;
    var reloading = null;

    function reloadAll() {
        if (reloading) return reloading;
        if (!model.loading) model.loading = [];
        reloading = getJSON('/v1/summary')
            .then(function (s) {
                /* A reset may move checkpoints backwards (another database): accept it. */
                model.checkpoint = -1;
                renderSummary(s);
                setStates(s.states);
                if (model.embargo) {
                    /* No counts to show: the notice and the progress only. */
                    model.loading = null;
                    $('circuits').replaceChildren();
                    return null;
                }
                var name = pickState();
                if (name === null) {
                    model.loading = null;
                    $('circuits').replaceChildren(el('p', 'muted', 'Aún no hay circuitos cargados.'));
                    return null;
                }
                var fresh = name !== model.state;
                model.state = name;
                $('state-select').value = name;
                return loadState(fresh);
            })
            .then(function () {
                showAlert(null);
                retryMs = 1000;
            })
            .catch(function (err) {
                model.loading = null;
                showAlert('No se pudieron cargar los datos (' + err.message + '). Reintentando en ' +
                    Math.round(retryMs / 1000) + ' s…');
                scheduleReload(retryMs);
                retryMs = Math.min(RETRY_MAX_MS, retryMs * 2);
            })
            .then(function () { reloading = null; });
        return reloading;
    }

    function scheduleReload(ms) {
        if (reloadTimer) return;
        reloadTimer = setTimeout(function () {
            reloadTimer = null;
            reloadAll();
        }, ms === undefined ? RELOAD_DEBOUNCE_MS : ms);
    }

    var summaryTimer = null;
    var summaryAt = 0;

    /* At once, then at most every SUMMARY_REFRESH_MS however often checkpoints come. */
    function scheduleSummary() {
        if (summaryTimer) return;
        var wait = Math.max(0, summaryAt + SUMMARY_REFRESH_MS - Date.now());
        summaryTimer = setTimeout(function () {
            summaryAt = Date.now();
            getJSON('/v1/summary').then(renderSummary).catch(function () { /* next event retries */ })
                .then(function () { summaryTimer = null; });
        }, wait);
    }

    /* ---- live events --------------------------------------------------------------------- */

    var dirty = new Set();
    var frame = 0;

    /* Applies one checkpoint's changed projects (absolute votes) to the loaded state.
     * Returns false when a checkpoint in between was missed. */
    function applyChanges(ev) {
        /* /v1/circuits and /v1/results may answer from different checkpoints. */
        if (!(model.circuitsCp >= 0 && ev.id <= model.circuitsCp)) {
            (ev.circuits || []).forEach(function (src) {
                var c = model.circuits.get(toInt(src.id));
                if (!c) return; /* another state's circuit */
                takeCircuitFields(c, src);
                dirty.add(c.id);
            });
        }
        if (model.projectsCp >= 0 && ev.id <= model.projectsCp) return true; /* in the answer */
        var gap = model.projectsCp >= 0 && ev.id > model.projectsCp + 1;
        model.projectsCp = ev.id;
        ev.changed.forEach(function (ch) {
            var p = model.projects.get(toInt(ch.id));
            if (!p) return; /* another state's project */
            var v = toInt(ch.votes);
            if (v === null || v === p.votes) return;
            p.votes = v;
            dirty.add(p.circuit_id);
        });
        return !gap;
    }

    function parse(e) {
        try {
            var d = JSON.parse(e.data);
            var id = toInt(d.checkpoint !== undefined ? d.checkpoint : d.id);
            return id === null ? null : { id: id, data: d };
        } catch (err) {
            return null;
        }
    }

    /* Newer totals are shown at once, whatever the event. */
    function takeTotals(ev) {
        if (ev.id <= model.checkpoint) return;
        model.checkpoint = ev.id;
        renderTotals(ev.data.totals);
        renderCheckpoint(ev.id, ev.data.time);
        if ('head_hash' in ev.data) renderHead(ev.id, ev.data.head_hash);
        if (ev.data.progress) renderProgress(ev.data.progress);
        renderStatus(ev.data);
    }

    function onCheckpoint(e) {
        var ev = parse(e);
        if (!ev) return;
        takeTotals(ev);
        var ch = {
            id: ev.id, changed: Array.isArray(ev.data.changed) ? ev.data.changed : [],
            circuits: Array.isArray(ev.data.circuits) ? ev.data.circuits : []
        };
        if (model.loading) {
            model.loading.push(ch);
        } else if (!applyChanges(ch)) {
            /* A checkpoint's changes were missed: fetch the state again. */
            loadState(false).catch(function () { scheduleReload(); });
        }
        if (dirty.size && !frame) frame = requestAnimationFrame(flush);
        scheduleSummary();
    }

    /* Sent first on every (re)connection: the server's current checkpoint. */
    function onSnapshot(e) {
        var ev = parse(e);
        if (!ev) return;
        if (ev.id < model.checkpoint) { /* checkpoints went backwards: another database */
            scheduleReload(0);
            return;
        }
        takeTotals(ev);
        renderStatus(ev.data); /* the same checkpoint may come with another status */
        if (!model.loading && !model.embargo && ev.id !== model.projectsCp) {
            loadState(false).catch(function () { scheduleReload(); });
            scheduleSummary();
        }
    }

    /* The server cannot replay what this page missed: start again. */
    function onReset() {
        scheduleReload(0);
    }

    function flush() {
        frame = 0;
        dirty.forEach(function (cid) {
            var c = model.circuits.get(cid);
            if (!c) return;
            rankCircuit(c);
            fillCircuit(c);
        });
        dirty.clear();
        renderStateSummary();
    }

    function setLive(state, text) {
        $('live').dataset.state = state;
        $('live-text').textContent = text;
    }

    var streamRetryMs = 1000;

    function openStream() {
        if (!('EventSource' in window)) {
            setLive('offline', 'Sin actualización en vivo');
            return;
        }
        setLive('connecting', 'Conectando…');
        var es = new EventSource('/v1/events');
        es.onopen = function () {
            setLive('live', 'En vivo');
            streamRetryMs = 1000;
        };
        es.onerror = function () {
            if (es.readyState === EventSource.CLOSED) {
                /* The browser gave up (the server refused the stream): retry ourselves. */
                es.close();
                setLive('offline', 'Sin conexión · reintento en ' + Math.round(streamRetryMs / 1000) + ' s');
                setTimeout(openStream, streamRetryMs);
                streamRetryMs = Math.min(RETRY_MAX_MS, streamRetryMs * 2);
            } else {
                /* The browser reconnects by itself, sending Last-Event-ID. */
                setLive('reconnecting', 'Reconectando…');
            }
        };
        es.addEventListener('checkpoint', onCheckpoint);
        es.addEventListener('message', onCheckpoint); /* a server that names no event */
        es.addEventListener('snapshot', onSnapshot);
        es.addEventListener('reset', onReset);
    }

    /* The summary index.html loads in a hidden frame, so that the totals are shown by the
     * time the page's load event fires; the stream and the fetches take over from there. */
    function bootFromFrame() {
        var f = $('boot');
        if (!f) return;
        var take = function () {
            try {
                var doc = f.contentDocument;
                var text = (doc.querySelector('pre') || doc.body).textContent;
                var s = JSON.parse(text);
                if (s && s.totals) renderSummary(s);
            } catch (e) { /* the fetches below cover it */ }
            f.remove();
        };
        var doc = f.contentDocument;
        if (doc && doc.readyState === 'complete' && /\/v1\/summary$/.test(doc.URL)) take();
        else f.addEventListener('load', take, { once: true });
    }

    /* ---- start ------------------------------------------------------------------------------ */

    function start() {
        $('state-select').addEventListener('change', function (e) { selectState(e.target.value); });
        $('filter').addEventListener('input', applyFilter);
        $('expand-all').addEventListener('click', function () {
            var shown = $('circuits').querySelectorAll('details:not([hidden])');
            var openAll = Array.prototype.some.call(shown, function (d) { return !d.open; });
            shown.forEach(function (d) { d.open = openAll; });
            syncExpandButton();
        });
        $('circuits').addEventListener('toggle', function (e) {
            var d = e.target;
            if (d.open && d.dataset && d.dataset.id) {
                var c = model.circuits.get(Number(d.dataset.id));
                if (c && c.node === d && c.tableStale) fillTable(c);
            }
            syncExpandButton();
        }, true);
        window.addEventListener('hashchange', function () {
            var s = stateFromHash();
            if (s !== null && model.states.some(function (x) { return x.name === s; })) selectState(s);
        });
        setInterval(renderAge, 1000);
        bootFromFrame();
        reloadAll();
        openStream();
    }

    start();
})();
