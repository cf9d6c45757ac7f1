/* tallyd dashboard: the national search over circuits and projects, by name (accents and
 * case folded, every word must appear) or by number (the id, exact or its first digits),
 * whatever state is selected. The catalogue (/v1/circuits and /v1/results, every circuit
 * and project: several MB for 36,000 projects) is loaded on the first focus or keystroke,
 * never at page load, and folded once; a search is then one pass over it. Each result is a
 * link to the circuit (and project) in its state's view. Keys: Down from the field enters
 * the list, Up/Down/Home/End move in it, Enter opens, Escape closes. */
(function () {
    'use strict';

    var i18n = window.Tally.i18n;
    var t = i18n.t;

    var CAP = 50;          /* results listed at most */
    var DEBOUNCE_MS = 120;

    function fold(s) {
        return String(s).normalize('NFD').replace(/[\u0300-\u036f]/g, '').toLowerCase();
    }

    function toInt(v) {
        var n = Number(v);
        return Number.isFinite(n) ? Math.trunc(n) : null;
    }

    /* Entries {kind, id, sid, name, f (folded name), state, cid, cname}: circuits first,
     * then projects, each by folded name, so a pass in order yields results in order. */
    function buildIndex(circuitsDoc, resultsDoc) {
        var circuits = new Map();
        var entries = [];
        (circuitsDoc.circuits || []).forEach(function (c) {
            var id = toInt(c.id);
            var e = {
                kind: 'circuit', id: id, sid: String(id), name: String(c.name || ''),
                state: String(c.state || ''), cid: id, cname: String(c.name || '')
            };
            e.f = fold(e.name);
            circuits.set(id, e);
            entries.push(e);
        });
        var projects = [];
        (resultsDoc.projects || []).forEach(function (p) {
            var c = circuits.get(toInt(p.circuit_id));
            if (!c) return;
            var id = toInt(p.id);
            var e = {
                kind: 'project', id: id, sid: String(id), name: String(p.name || ''),
                state: c.state, cid: c.id, cname: c.name
            };
            e.f = fold(e.name);
            projects.push(e);
        });
        var byF = function (a, b) { return a.f < b.f ? -1 : a.f > b.f ? 1 : a.id - b.id; };
        entries.sort(byF);
        projects.sort(byF);
        entries = entries.concat(projects);
        entries.forEach(function (e, i) { e.order = i; });
        /* Every folded name (and every id) in one string, each after a newline: a search is
         * then a few native indexOf calls over it, not one per entry. starts[i] is where
         * entry i's name begins; starts[n] is one past the end. */
        var starts = new Array(entries.length + 1), idStarts = new Array(entries.length + 1);
        var names = [], ids = [], at = 1, idAt = 1;
        entries.forEach(function (e, i) {
            starts[i] = at;
            idStarts[i] = idAt;
            names.push(e.f.replace(/\n/g, ' '));
            ids.push(e.sid);
            at += e.f.length + 1;
            idAt += e.sid.length + 1;
        });
        starts[entries.length] = at;
        idStarts[entries.length] = idAt;
        return {
            entries: entries, starts: starts, idStarts: idStarts,
            text: '\n' + names.join('\n') + '\n', idText: '\n' + ids.join('\n') + '\n'
        };
    }

    /* The entry whose span [starts[i], starts[i+1]) holds pos, from hint onwards. */
    function entryAt(starts, pos, hint) {
        var lo = hint, hi = starts.length - 2;
        while (lo < hi) {
            var mid = (lo + hi + 1) >> 1;
            if (starts[mid] <= pos) lo = mid;
            else hi = mid - 1;
        }
        return lo;
    }

    /* {total, items, words}: every match counted, the first CAP by score (exact id, id
     * prefix, name starting with the query's first word, a word of it starting so, anywhere)
     * then by index order. */
    function find(index, query) {
        var q = fold(query).trim().replace(/\s+/g, ' ');
        if (!q) return { total: 0, items: [] };
        var words = q.split(' ');
        var buckets = [[], [], [], [], []];
        var total = 0;
        var entries = index.entries;
        var seen = new Uint8Array(entries.length);
        var take = function (i, score) {
            seen[i] = 1;
            total++;
            if (buckets[score].length < CAP) buckets[score].push(entries[i]);
        };
        var i, pos, from;
        if (/^\d+$/.test(q)) {
            /* Ids starting with the digits: "\n" + q in the ids' string. */
            for (from = 0, i = 0; (pos = index.idText.indexOf('\n' + q, from)) >= 0;) {
                i = entryAt(index.idStarts, pos + 1, i);
                take(i, index.idText.charCodeAt(pos + 1 + q.length) === 10 ? 0 : 1);
                from = index.idStarts[i + 1] - 1;
            }
        }
        /* Names holding every word: the longest word finds the candidates. */
        var longest = words.reduce(function (a, w) { return w.length > a.length ? w : a; }, '');
        for (from = 0, i = 0; (pos = index.text.indexOf(longest, from)) >= 0;) {
            i = entryAt(index.starts, pos, i);
            from = index.starts[i + 1];
            if (seen[i]) continue;
            var f = entries[i].f;
            var at = f.indexOf(words[0]);
            var all = at >= 0;
            for (var w = 1; w < words.length && all; w++) all = f.indexOf(words[w]) >= 0;
            if (all) take(i, at === 0 ? 2 : f.charCodeAt(at - 1) === 32 ? 3 : 4);
        }
        /* Within a score, index order (the buckets were filled in index order, ids first). */
        var items = [];
        for (var b = 0; b < buckets.length && items.length < CAP; b++) {
            buckets[b].sort(function (x, y) { return x.order - y.order; });
            items = items.concat(buckets[b].slice(0, CAP - items.length));
        }
        return { total: total, items: items, words: words };
    }

    /* name with the first folded match of each word marked, when folding kept the length
     * (it does for Spanish: á -> a, ñ -> n). */
    function marked(name, words) {
        var f = fold(name);
        var span = document.createElement('span');
        span.className = 'hit-name';
        if (f.length !== name.length || !words) {
            span.textContent = name;
            return span;
        }
        var marks = [];
        words.forEach(function (w) {
            var at = f.indexOf(w);
            if (at >= 0 && w) marks.push([at, at + w.length]);
        });
        marks.sort(function (a, b) { return a[0] - b[0]; });
        var pos = 0;
        marks.forEach(function (m) {
            if (m[0] < pos) return;
            if (m[0] > pos) span.appendChild(document.createTextNode(name.slice(pos, m[0])));
            var mk = document.createElement('mark');
            mk.textContent = name.slice(m[0], m[1]);
            span.appendChild(mk);
            pos = m[1];
        });
        if (pos < name.length) span.appendChild(document.createTextNode(name.slice(pos)));
        return span;
    }

    /* opts: {box, input, list, status, getJSON, hrefOf(entry), onOpen(href)}. */
    function create(opts) {
        var input = opts.input, list = opts.list, status = opts.status, box = opts.box;
        var index = null;
        var loading = null;
        var timer = null;
        var generation = 0;

        function setStatus(text) {
            if (status.textContent !== text) status.textContent = text;
        }

        function load() {
            if (index || loading) return loading || Promise.resolve(index);
            var gen = generation;
            setStatus(t('search.loading'));
            box.dataset.catalogue = 'loading';
            performance.mark('tally:catalogue-start');
            loading = Promise.all([opts.getJSON('/v1/circuits'), opts.getJSON('/v1/results')])
                .then(function (docs) {
                    if (gen !== generation) return null;
                    index = buildIndex(docs[0], docs[1]);
                    performance.measure('tally:catalogue', 'tally:catalogue-start');
                    box.dataset.catalogue = 'ready';
                    box.dataset.entries = String(index.entries.length);
                    loading = null;
                    run();
                    return index;
                }, function (err) {
                    loading = null;
                    box.dataset.catalogue = 'error';
                    setStatus(t('search.error', { why: err.message }));
                    return null;
                });
            return loading;
        }

        function close() {
            list.hidden = true;
            box.classList.remove('is-open');
        }

        function links() {
            return Array.prototype.slice.call(list.querySelectorAll('a'));
        }

        function run() {
            var q = input.value;
            if (!q.trim()) {
                list.replaceChildren();
                close();
                setStatus('');
                return;
            }
            if (!index) {
                load();
                return;
            }
            var t0 = performance.now();
            var r = find(index, q);
            var items = r.items.map(function (e) {
                var li = document.createElement('li');
                var a = document.createElement('a');
                a.href = opts.hrefOf(e);
                a.dataset.kind = e.kind;
                a.dataset.id = e.sid;
                a.dataset.state = e.state;
                a.dataset.circuit = String(e.cid);
                var kind = document.createElement('span');
                kind.className = 'hit-kind hit-' + e.kind;
                kind.textContent = t('search.kind.' + e.kind);
                var where = document.createElement('span');
                where.className = 'hit-where';
                where.textContent = e.kind === 'circuit' ?
                    t('search.where.circuit', { state: e.state, id: e.sid }) :
                    t('search.where.project', { circuit: e.cname, state: e.state, id: e.sid });
                a.appendChild(kind);
                a.appendChild(document.createTextNode(' '));
                a.appendChild(marked(e.name, r.words));
                a.appendChild(where);
                li.appendChild(a);
                return li;
            });
            list.replaceChildren.apply(list, items);
            list.hidden = items.length === 0;
            box.classList.toggle('is-open', items.length > 0);
            box.dataset.total = String(r.total);
            setStatus(r.total === 0 ? t('search.none') : r.total > items.length ?
                t('search.capped', { n: i18n.num(r.total), k: i18n.num(items.length) }) :
                i18n.tn('search.count', r.total));
            var ms = performance.now() - t0;
            box.dataset.ms = ms.toFixed(2);
            performance.measure('tally:search', { start: t0, duration: ms });
        }

        input.addEventListener('focus', load);
        input.addEventListener('input', function () {
            clearTimeout(timer);
            timer = setTimeout(run, DEBOUNCE_MS);
            if (!index) load();
        });
        input.addEventListener('keydown', function (e) {
            if (e.key === 'ArrowDown') {
                clearTimeout(timer);
                if (list.hidden) run();
                var l = links();
                if (l.length) {
                    e.preventDefault();
                    l[0].focus();
                }
            } else if (e.key === 'Escape') {
                if (!list.hidden) {
                    e.preventDefault();
                    close();
                } else if (input.value) {
                    e.preventDefault();
                    input.value = '';
                    run();
                }
            } else if (e.key === 'Enter') {
                clearTimeout(timer);
                run();
                var first = links()[0];
                /* Enter in the field opens the only (or the best) result. */
                if (first) {
                    e.preventDefault();
                    first.click();
                }
            }
        });
        list.addEventListener('keydown', function (e) {
            var l = links();
            var i = l.indexOf(document.activeElement);
            if (i < 0) return;
            var to = -1;
            if (e.key === 'ArrowDown') to = Math.min(l.length - 1, i + 1);
            else if (e.key === 'ArrowUp') to = i - 1;
            else if (e.key === 'Home') to = 0;
            else if (e.key === 'End') to = l.length - 1;
            else if (e.key === 'Escape') {
                e.preventDefault();
                close();
                input.focus();
                return;
            } else return;
            e.preventDefault();
            if (to < 0) input.focus();
            else l[to].focus();
        });
        list.addEventListener('click', function (e) {
            var a = e.target.closest && e.target.closest('a');
            if (!a) return;
            close();
            /* The same link twice changes no hash: open it here. */
            if (a.hash === location.hash && opts.onOpen) {
                e.preventDefault();
                opts.onOpen(a.hash);
            }
        });
        box.addEventListener('focusout', function () {
            setTimeout(function () {
                if (!box.contains(document.activeElement)) close();
            }, 0);
        });
        input.addEventListener('click', function () {
            if (list.hidden && input.value.trim() && index) run();
        });

        return {
            /* After a reset (maybe another registry): the catalogue is loaded again. */
            reset: function () {
                generation++;
                index = null;
                loading = null;
                delete box.dataset.catalogue;
                if (!list.hidden) close();
            },
            load: load
        };
    }

    window.Tally.search = { create: create, find: find, fold: fold };
})();
