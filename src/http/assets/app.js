/* tallyd dashboard: the page's data and its wiring. National totals, progress, status and
 * the map come from /v1/summary (first in a hidden frame, so they are on the page at its
 * load event), the states table and the map from /v1/states, the chart from /v1/history,
 * the selected state's circuits from /v1/circuits?state= and /v1/results?state=, all kept
 * live from /v1/events (SSE). The full catalogue (/v1/results) is loaded by the search
 * only, when it is first used. Rendering lives in circuits.js, map.js, states.js, chart.js
 * and search.js; every word in strings.js.
 *
 * Numbers only ever come from the server's durable snapshots. A `checkpoint` event carries
 * new absolute totals and the absolute votes of the projects that changed. The page loads
 * only the selected state's circuits and projects, and fetches them again after a `reset`
 * event, a `snapshot` event that shows it is behind, or a gap in checkpoint ids. */
(function () {
    'use strict';

    var T = window.Tally, i18n = T.i18n, t = i18n.t, tn = i18n.tn;
    var el = T.dom.el, setNum = T.dom.setNum, toInt = T.dom.toInt, bump = T.dom.bump;

    var SUMMARY_REFRESH_MS = 5000; /* collectors' progress and the states are not in events */
    var RELOAD_DEBOUNCE_MS = 400;
    var RETRY_MAX_MS = 30000;

    var $ = function (id) { return document.getElementById(id); };

    var model = {
        checkpoint: -1,          /* newest checkpoint whose totals are shown */
        projectsCp: -1,          /* checkpoint the loaded projects' votes are at */
        circuitsCp: -1,          /* checkpoint the loaded circuits' fields are at */
        loading: null,           /* events held while the state's results are in flight */
        states: [],              /* [{name, circuits}] sorted by name */
        state: null,             /* the selected state's name */
        circuits: new Map(),     /* its circuits: id -> {id, name, seats, votes, tie, projects, node} */
        projects: new Map(),     /* its projects: id -> {id, name, circuit_id, votes, rank, winner, tie} */
        summary: null,           /* the last /v1/summary */
        consultationId: null,
        map: { metric: 'progress', cp: -1, list: [] }, /* states shown on the map */
        tableCp: -1              /* checkpoint of the states table's /v1/states */
    };

    var view = T.circuits.create(model, $('circuits'));
    var statesTable = T.statesTable.create($('states-table'), stateHref);
    var hist = T.history.create({
        getJSON: getJSON,
        tablesTotal: function () {
            return model.summary && model.summary.progress ? toInt(model.summary.progress.tables) : null;
        }
    });
    var search = null;

    /* ---- links and the hash ---------------------------------------------------------- */

    function stateHref(name) {
        return '#estado=' + encodeURIComponent(name);
    }

    /* #estado=NAME[&circuito=ID[&proyecto=ID]] */
    function parseHash() {
        var out = { state: null, circuit: null, project: null };
        location.hash.replace(/^#/, '').split('&').forEach(function (kv) {
            var i = kv.indexOf('=');
            if (i < 0) return;
            var k = kv.slice(0, i), v;
            try { v = decodeURIComponent(kv.slice(i + 1)); } catch (e) { return; }
            if (k === 'estado') out.state = v;
            else if (k === 'circuito') out.circuit = toInt(v);
            else if (k === 'proyecto') out.project = toInt(v);
        });
        return out;
    }

    function renderLangSwitch() {
        var a = $('lang-switch');
        var code = t('lang.otherCode');
        a.textContent = t('lang.other');
        a.lang = code;
        a.hreflang = code;
        a.title = t('lang.switchTitle');
        a.href = '?lang=' + code + location.hash;
    }

    /* ---- fetching --------------------------------------------------------------------- */

    function getJSON(path) {
        return fetch(path, { cache: 'no-cache', headers: { Accept: 'application/json' } })
            .then(function (r) {
                if (r.ok) return r.json();
                /* The API's errors are {"error": "..."}: say what the server said. */
                return r.json().catch(function () { return {}; }).then(function (body) {
                    var why = body && typeof body.error === 'string' ? ': ' + body.error : '';
                    var err = new Error(path + ': HTTP ' + r.status + why);
                    err.status = r.status;
                    throw err;
                });
            });
    }

    function showAlert(msg) {
        var a = $('alert');
        a.hidden = !msg;
        if (msg) a.textContent = msg;
    }

    /* ---- totals, progress, status, footer -------------------------------------------- */

    function rejectedTotal(r) {
        if (r === null || r === undefined) return null;
        if (typeof r === 'number') return r;
        var sum = 0;
        Object.keys(r).forEach(function (k) { sum += toInt(r[k]) || 0; });
        return sum;
    }

    var marked = {};
    function markOnce(name) {
        if (marked[name]) return;
        marked[name] = true;
        performance.mark(name);
    }

    function renderTotals(tot) {
        if (!tot) return;
        setNum($('total-accepted'), tot.accepted);
        setNum($('total-duplicate'), tot.duplicate !== undefined ? tot.duplicate : tot.duplicates);
        setNum($('total-rejected'), rejectedTotal(tot.rejected));
        setNum($('total-batches'), tot.batches);
        if (toInt(tot.accepted) !== null) markOnce('tally:totals');
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
        [$('checkpoint-time'), $('foot-time')].forEach(function (e, i) {
            if (checkpointTime) {
                e.dateTime = checkpointTime.toISOString();
                var today = new Date().toDateString() === checkpointTime.toDateString();
                e.textContent = (today && i === 0 ? i18n.time : i18n.dateTime)(checkpointTime);
            } else {
                e.removeAttribute('datetime');
                e.textContent = n === 0 && i === 0 ? t('progress.recovered') : '—';
            }
        });
        renderAge();
    }

    function renderAge() {
        var a = $('checkpoint-age');
        if (!checkpointTime) {
            a.textContent = '';
            return;
        }
        var s = Math.max(0, Math.round((Date.now() - checkpointTime.getTime()) / 1000));
        a.textContent = s < 60 ? t('progress.ageS', { n: s }) : s < 3600 ?
            t('progress.ageMin', { n: Math.floor(s / 60) }) : t('progress.ageH', { n: Math.floor(s / 3600) });
    }

    /* The footer's audit line: the hash is long, so it shows a prefix and keeps the whole
     * value in the title. */
    function renderHead(id, hash) {
        var n = toInt(id);
        $('foot-checkpoint').textContent = n === null ? '—' : '#' + n;
        var h = $('head-hash');
        if (typeof hash === 'string' && /^[0-9a-f]{64}$/.test(hash)) {
            h.textContent = hash.slice(0, 16) + '…';
            h.title = t('foot.headTitle', { hash: hash });
            h.dataset.hash = hash;
        } else {
            h.textContent = '—';
            h.title = n === 0 ? t('foot.noCheckpoint') : '';
            delete h.dataset.hash;
        }
    }

    function renderProgress(p) {
        var box = $('tables-progress');
        if (!box || !p) return;
        var text = T.circuits.progressText(p);
        box.hidden = !text;
        if (!text) return;
        var decided = toInt(p.circuits_decided);
        box.textContent = text + (decided !== null ? ' · ' + tn('progress.decided', decided) : '');
    }

    /* The consultation's status (docs/api.md "Status", "Embargo"): "Provisional" or
     * "Oficial" with the certified head in the header, and under embargo a notice instead
     * of the results, which the server then does not send (only progress). */
    function renderStatus(d) {
        if (!d || !('embargo' in d)) return;
        var official = d.status === 'official';
        var st = $('status');
        st.dataset.status = official ? 'official' : 'provisional';
        st.dataset.closed = d.closed ? 'true' : 'false';
        $('status-label').textContent = t(official ? 'status.official' : 'status.provisional') +
            (d.closed && !official ? ' · ' + t('status.closed') : '');
        var code = $('status-hash');
        var hash = official && typeof d.certified_hash === 'string' ? d.certified_hash : '';
        code.hidden = !hash;
        code.textContent = hash ? hash.slice(0, 12) + '…' : '';
        code.title = hash;
        if (hash) code.dataset.hash = hash;
        else delete code.dataset.hash;
        st.title = hash ? t('status.officialTitle', { hash: hash }) : t('status.provisionalTitle');
        var was = model.embargo;
        model.embargo = d.embargo === true;
        $('embargo').hidden = !model.embargo;
        $('results').hidden = model.embargo;
        document.body.classList.toggle('under-embargo', model.embargo);
        if (was !== undefined && was !== model.embargo) scheduleReload(0);
    }

    function checkpointOf(doc) {
        var c = doc && doc.checkpoint;
        return toInt(c !== null && typeof c === 'object' ? c.id : c);
    }

    function renderSummary(s) {
        renderStatus(s);
        model.summary = s;
        if (s.consultation) {
            var name = s.consultation.name || t('consultation.default');
            $('consultation-name').textContent = name;
            document.title = t('page.title', { name: name });
            if (model.consultationId !== null && model.consultationId !== s.consultation.id && search) search.reset();
            model.consultationId = s.consultation.id;
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
        $('collectors-connected-label').textContent = tn('progress.connected', toInt(c.connected) || 0);
        var share = registered ? Math.min(1, (reporting || 0) / registered) : 0;
        $('collectors-bar').style.width = (share * 100).toFixed(1) + '%';

        var np = toInt(s.projects), nc = toInt(s.circuits);
        var ns = Array.isArray(s.states) ? s.states.length : toInt(s.states);
        if (np !== null && nc !== null) {
            $('registry-size').textContent = ns ? t('registry.size', {
                projects: tn('n.projects', np), circuits: tn('n.circuits', nc), states: tn('n.states', ns)
            }) : t('registry.sizeNoStates', { projects: tn('n.projects', np), circuits: tn('n.circuits', nc) });
        }
        if (Array.isArray(s.states) && s.states.length && typeof s.states[0] === 'object') {
            showStates(s.states, cpId === null ? 0 : cpId, false);
        }
    }

    /* ---- the map and the states table ------------------------------------------------- */

    /* list: [{name, circuits, progress}] of /v1/states (table and map) or of the summary
     * (map only: it has no circuits_decided). Older checkpoints than shown are ignored. */
    function showStates(list, cp, full) {
        if (cp >= model.map.cp) {
            model.map.cp = cp;
            model.map.list = list;
            renderMap();
        }
        if (full && cp >= model.tableCp) {
            model.tableCp = cp;
            var s = model.summary;
            statesTable.render(list, s ? { circuits: s.circuits, progress: s.progress } : null, cp);
        }
    }

    function renderMap() {
        var list = model.map.list;
        var metric = model.map.metric;
        T.map.render($('map-tiles'), list, metric, model.state, stateHref);
        var fig = $('map');
        fig.dataset.metric = metric;
        fig.dataset.checkpoint = String(model.map.cp);
        $('map-title').textContent = list.length ? t('map.title', { n: list.length }) : t('map.empty');
        $('map-desc').textContent = t('map.desc.' + metric);
        if (list.length) markOnce('tally:map');
    }

    function loadStatesDoc() {
        return getJSON('/v1/states').then(function (d) {
            if (Array.isArray(d.states)) showStates(d.states, checkpointOf(d) || 0, true);
        });
    }

    /* ---- states and the state view ---------------------------------------------------- */

    /* From /v1/summary's states [{name, circuits, ...}]; older servers gave names only. */
    function setStates(list) {
        if (!Array.isArray(list)) return;
        model.states = list.map(function (s) {
            return typeof s === 'string' ? { name: s, circuits: null }
                : { name: String(s.name), circuits: toInt(s.circuits) };
        }).sort(function (a, b) { return i18n.collator.compare(a.name, b.name); });
        var sel = $('state-select');
        var same = sel.options.length === model.states.length && model.states.every(function (s, i) {
            return sel.options[i].value === s.name;
        });
        if (!same) {
            sel.replaceChildren.apply(sel, model.states.map(function (s) {
                var o = el('option', '', s.circuits === null ? s.name :
                    t('results.stateOption', { name: s.name, circuits: tn('n.circuits', s.circuits) }));
                o.value = s.name;
                return o;
            }));
        }
        sel.disabled = model.states.length === 0;
        if (model.state !== null) sel.value = model.state;
    }

    function knownState(name) {
        return name !== null && model.states.some(function (s) { return s.name === name; });
    }

    function pickState() {
        var want = [parseHash().state, model.state];
        for (var i = 0; i < want.length; i++) if (knownState(want[i])) return want[i];
        return model.states.length ? model.states[0].name : null;
    }

    var pending = null; /* {circuit, project, focusResults} to show once the state is loaded */

    function revealPending() {
        var p = pending;
        if (!p) return;
        if (p.circuit !== null) {
            if (view.reveal(p.circuit, p.project)) pending = null;
            return;
        }
        pending = null;
        if (p.focusResults) {
            $('results-h').scrollIntoView({ block: 'start' });
            $('results-h').focus({ preventScroll: true });
        }
    }

    function selectState(name, fromHash) {
        if (!fromHash) window.history.replaceState(null, '', stateHref(name));
        renderLangSwitch();
        if (name === model.state) {
            revealPending();
            return Promise.resolve();
        }
        model.state = name;
        $('state-select').value = name;
        model.circuits = new Map();
        model.projects = new Map();
        renderMap();
        $('circuits').replaceChildren(el('p', 'muted', t('results.loadingState', { name: name })));
        return loadState(true).catch(function (err) {
            showAlert(t('alert.state', { name: name, why: err.message }));
            scheduleReload(3000);
        });
    }

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
                    id: id, name: c.name || String(id), seats: toInt(c.seats) || 1,
                    votes: 0, tie: false, projects: [], node: null
                };
                T.circuits.takeFields(cc, c);
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
            view.render(fresh);
            revealPending();
        }, function (err) {
            if (token === stateToken) model.loading = null;
            throw err;
        });
    }

    /* ---- everything, from scratch ------------------------------------------------------ */

    var retryMs = 1000;
    var bootSummary = null; /* the hidden frame's summary, for the first reloadAll */
    var reloadTimer = null;
    var reloading = null;

    function reloadAll() {
        if (reloading) return reloading;
        if (!model.loading) model.loading = [];
        /* A reset may move checkpoints backwards (another database): accept them. */
        model.map.cp = -1;
        model.tableCp = -1;
        loadStatesDoc().catch(function () { /* the next refresh retries */ });
        hist.load();
        var boot = bootSummary;
        bootSummary = null;
        reloading = (boot ? boot.then(function (s) { return s || getJSON('/v1/summary'); })
            : getJSON('/v1/summary'))
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
                    $('circuits').replaceChildren(el('p', 'muted', t('results.noneLoaded')));
                    return null;
                }
                var fresh = name !== model.state;
                model.state = name;
                $('state-select').value = name;
                renderMap();
                return loadState(fresh);
            })
            .then(function () {
                showAlert(null);
                retryMs = 1000;
            })
            .catch(function (err) {
                model.loading = null;
                showAlert(t('alert.load', { why: err.message, s: Math.round(retryMs / 1000) }));
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

    /* At once, then at most every SUMMARY_REFRESH_MS however often checkpoints come: the
     * summary (collectors) and the states (map, table). */
    function scheduleSummary() {
        if (summaryTimer) return;
        var wait = Math.max(0, summaryAt + SUMMARY_REFRESH_MS - Date.now());
        summaryTimer = setTimeout(function () {
            summaryAt = Date.now();
            getJSON('/v1/summary').then(renderSummary).then(loadStatesDoc)
                .catch(function () { /* next event retries */ })
                .then(function () { summaryTimer = null; });
        }, wait);
    }

    /* ---- live events ------------------------------------------------------------------- */

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
                T.circuits.takeFields(c, src);
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
        hist.take(ev);
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
            if (search) search.reset();
            scheduleReload(0);
            return;
        }
        takeTotals(ev);
        renderStatus(ev.data); /* the same checkpoint may come with another status */
        hist.take(ev);
        if (!model.loading && !model.embargo && ev.id !== model.projectsCp) {
            loadState(false).catch(function () { scheduleReload(); });
            scheduleSummary();
        }
    }

    /* The server cannot replay what this page missed (or its status changed): start again.
     * The reset's own data already carries the new status. */
    function onReset(e) {
        var ev = parse(e);
        if (ev) renderStatus(ev.data);
        scheduleReload(0);
    }

    function flush() {
        frame = 0;
        dirty.forEach(function (cid) {
            var c = model.circuits.get(cid);
            if (!c) return;
            T.circuits.rank(c);
            view.fill(c);
        });
        dirty.clear();
        view.renderSummary();
    }

    function setLive(state, text) {
        $('live').dataset.state = state;
        $('live-text').textContent = text;
    }

    var streamRetryMs = 1000;

    function openStream() {
        if (!('EventSource' in window)) {
            setLive('offline', t('live.unsupported'));
            return;
        }
        setLive('connecting', t('live.connecting'));
        var es = new EventSource('/v1/events');
        es.onopen = function () {
            setLive('live', t('live.live'));
            streamRetryMs = 1000;
        };
        es.onerror = function () {
            if (es.readyState === EventSource.CLOSED) {
                /* The browser gave up (the server refused the stream): retry ourselves. */
                es.close();
                setLive('offline', t('live.offline', { s: Math.round(streamRetryMs / 1000) }));
                setTimeout(openStream, streamRetryMs);
                streamRetryMs = Math.min(RETRY_MAX_MS, streamRetryMs * 2);
            } else {
                /* The browser reconnects by itself, sending Last-Event-ID. */
                setLive('reconnecting', t('live.reconnecting'));
            }
        };
        es.addEventListener('checkpoint', onCheckpoint);
        es.addEventListener('message', onCheckpoint); /* a server that names no event */
        es.addEventListener('snapshot', onSnapshot);
        es.addEventListener('reset', onReset);
    }

    /* The summary index.html loads in a hidden frame, so that the totals and the map are
     * shown by the time the page's load event fires; the first reloadAll takes the same
     * answer instead of asking again. Resolves to the summary, or null. */
    function bootFromFrame() {
        var f = $('boot');
        if (!f) return null;
        return new Promise(function (resolve) {
            var take = function () {
                var s = null;
                try {
                    var doc = f.contentDocument;
                    s = JSON.parse((doc.querySelector('pre') || doc.body).textContent);
                    if (s && s.totals) renderSummary(s);
                    else s = null;
                } catch (e) { s = null; /* the fetch covers it */ }
                f.remove();
                resolve(s);
            };
            var doc = f.contentDocument;
            if (doc && doc.readyState === 'complete' && /\/v1\/summary$/.test(doc.URL)) take();
            else f.addEventListener('load', take, { once: true });
        });
    }

    /* ---- start -------------------------------------------------------------------------- */

    function start() {
        document.documentElement.lang = i18n.lang;
        i18n.apply(document);
        document.title = t('page.title', { name: t('consultation.default') });
        renderLangSwitch();
        T.map.renderLegend($('map-legend'));
        renderMap();
        statesTable.render([], null, null);

        /* Skip links move the focus without replacing the hash (it holds the state). */
        document.querySelectorAll('a.skip').forEach(function (a) {
            a.addEventListener('click', function (e) {
                var to = document.querySelector(a.getAttribute('href'));
                if (!to) return;
                e.preventDefault();
                if (!to.hasAttribute('tabindex')) to.setAttribute('tabindex', '-1');
                to.scrollIntoView({ block: 'start' });
                to.focus({ preventScroll: true });
            });
        });
        $('state-select').addEventListener('change', function (e) {
            pending = null;
            selectState(e.target.value, false);
        });
        $('map-metric').addEventListener('change', function (e) {
            if (e.target.name !== 'map-metric') return;
            model.map.metric = e.target.value === 'turnout' ? 'turnout' : 'progress';
            renderMap();
        });
        /* A square of the map or a state of the table: that state's results. */
        [$('map-tiles'), $('states-table')].forEach(function (box) {
            box.addEventListener('click', function (e) {
                var a = e.target.closest && e.target.closest('a[href^="#estado="]');
                if (!a) return;
                pending = { circuit: null, project: null, focusResults: true };
                if (a.hash === location.hash) {
                    e.preventDefault();
                    revealPending();
                }
            });
        });
        $('expand-all').addEventListener('click', function () {
            var shown = $('circuits').querySelectorAll('details');
            var openAll = Array.prototype.some.call(shown, function (d) { return !d.open; });
            shown.forEach(function (d) { d.open = openAll; });
            view.syncExpand();
        });
        $('circuits').addEventListener('toggle', function (e) {
            var d = e.target;
            if (d.open && d.dataset && d.dataset.id) {
                var c = model.circuits.get(Number(d.dataset.id));
                if (c && c.node === d && c.tableStale) view.fillTable(c);
            }
            view.syncExpand();
        }, true);
        var openHash = function () {
            var h = parseHash();
            renderLangSwitch();
            if (!knownState(h.state)) return;
            if (h.circuit !== null) pending = { circuit: h.circuit, project: h.project };
            selectState(h.state, true);
        };
        window.addEventListener('hashchange', openHash);
        search = T.search.create({
            box: $('search'), input: $('search-input'), list: $('search-results'),
            status: $('search-status'), getJSON: getJSON,
            hrefOf: function (e) {
                return stateHref(e.state) + '&circuito=' + e.cid +
                    (e.kind === 'project' ? '&proyecto=' + e.id : '');
            },
            onOpen: openHash
        });
        var h0 = parseHash();
        if (h0.circuit !== null) pending = { circuit: h0.circuit, project: h0.project };

        var lastWidth = 0;
        if ('ResizeObserver' in window) {
            new ResizeObserver(function (entries) {
                var w = Math.round(entries[0].contentRect.width);
                if (w !== lastWidth) {
                    lastWidth = w;
                    hist.redraw();
                }
            }).observe($('history'));
        }
        setInterval(renderAge, 1000);
        bootSummary = bootFromFrame();
        reloadAll();
        openStream();
    }

    start();
})();
