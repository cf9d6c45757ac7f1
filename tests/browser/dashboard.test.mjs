#!/usr/bin/env node
// The dashboard in a real browser: headless Chromium (Debian's /usr/bin/chromium, driven by
// playwright-core) loads tallyd's own page at / against a consultation of 27 areas (the 25
// the map places, two more it puts in an extra row) with voting tables, tally sheets and a
// corrected sheet, and checks against the API: the totals, live and without a reload; the
// map (a square per state, shaded as /v1/states says, by tables reported and by turnout);
// the chart (a marker per /v1/history point, as many as checkpoints were published); the
// states table's figures and its sorting; the corrected circuit's mark, reached from its
// square; the national search (a project of another state, by number and by name, then the
// keyboard: it opens that state and that circuit); Spanish and English (?lang=en); a tallyd
// restart; the embargo (tallyctl embargo on/off); provisional, then closed, then official
// with the certified head (tallyctl close, tallyctl certify). The page's first load must not
// fetch the whole of /v1/results. Saves dashboard.png, dashboard-phone.png, dashboard-en.png,
// dashboard-embargo.png and dashboard-official.png in TALLY_BROWSER_OUT or TALLY_BIN_DIR.
//
// TALLY_BROWSER_MEASURE=1 then measures the first load and the search on a 36,000-project
// consultation (measure.mjs): one line and dashboard-measure.json beside the screenshots.
//
// Environment (set by tests/browser/CMakeLists.txt): TALLYD, TALLYCTL, TALLY_PUSH,
// TALLY_GEN, TALLY_PG_DIR, TALLY_BIN_DIR, TALLY_TEST_TIME_SCALE; optional CHROMIUM
// (default /usr/bin/chromium), TALLY_BROWSER_OUT, TALLY_KEEP=1 (keep the databases),
// TALLY_BROWSER_MEASURE=1. Prints one line `browser_dashboard: PASS ...` or
// `browser_dashboard: FAIL: ...`; exits 0, 1 (failure) or 77 (cannot run here: skipped).
// Every wait is bounded; every process it started is killed at the end, on failure too.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';

import {
    CHROMIUM_ARGS, NAME, SCALE, env, getJSON, httpGet, killAllNow, log, push, run, sleep, stop, tail,
    tallydOn, truthSummary, freshDatabase, children,
} from './lib.mjs';

const DEADLINE_MS = 170000 * SCALE; // under CTest's TIMEOUT (360 s, scaled the same way)
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const WAIT = 20000 * SCALE;

// The map's bins (docs/dashboard.md): thresholds 0.2, 0.4, 0.6, 0.8; "none" without data.
function binOf(v) {
    if (v === null) return 'none';
    return String([0.2, 0.4, 0.6, 0.8].filter((x) => v >= x).length);
}

function expectedValue(progress, metric) {
    if (metric === 'turnout') return typeof progress.turnout === 'number' ? progress.turnout : null;
    return progress.tables > 0 ? progress.tables_reported / progress.tables : null;
}

// What fails WCAG 2.1 AA contrast on the page in `scheme`: each visible text against the
// first opaque background under it (4.5:1; 3:1 for large text); each square of the map: its
// label and its outline against its fill, and its edge (fill or outline) against the panel
// (3:1); the chart's lines against the panel (3:1).
async function contrastProblems(page, scheme) {
    await page.emulateMedia({ colorScheme: scheme });
    const out = await page.evaluate(() => {
        const parse = (s) => (s.match(/[\d.]+/g) || ['0', '0', '0', '0']).map(Number);
        const lum = (c) => {
            const v = c.slice(0, 3).map((x) => x / 255)
                .map((x) => (x <= 0.03928 ? x / 12.92 : ((x + 0.055) / 1.055) ** 2.4));
            return 0.2126 * v[0] + 0.7152 * v[1] + 0.0722 * v[2];
        };
        const ratio = (a, b) => {
            const [x, y] = [lum(parse(a)), lum(parse(b))];
            return (Math.max(x, y) + 0.05) / (Math.min(x, y) + 0.05);
        };
        const bgOf = (e) => {
            for (; e; e = e.parentElement) {
                const c = getComputedStyle(e).backgroundColor;
                const v = parse(c);
                if (v.length < 4 || v[3] > 0.5) return c;
            }
            return 'rgb(255, 255, 255)';
        };
        const bad = new Set();
        const check = (what, r, min) => { if (!(r >= min)) bad.add(`${what}: ${r.toFixed(2)} < ${min}`); };
        const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
        for (let n; (n = walker.nextNode());) {
            const e = n.parentElement;
            if (!n.textContent.trim() || !e || e.closest('[hidden], noscript, .visually-hidden, svg')) continue;
            const s = getComputedStyle(e);
            if (!e.getBoundingClientRect().width || s.visibility === 'hidden') continue;
            let op = 1;
            for (let x = e; x; x = x.parentElement) op *= Number(getComputedStyle(x).opacity);
            const size = parseFloat(s.fontSize);
            const large = size >= 24 || (size >= 18.66 && Number(s.fontWeight) >= 700);
            check(`"${n.textContent.trim().slice(0, 24)}" (${e.tagName.toLowerCase()}.${e.className})`,
                op < 1 ? 0 : ratio(s.color, bgOf(e)), large ? 3 : 4.5);
        }
        const panel = getComputedStyle(document.getElementById('map-panel')).backgroundColor;
        document.querySelectorAll('#map [data-state]').forEach((a) => {
            const s = getComputedStyle(a);
            check(`square ${a.dataset.bin} outline`, ratio(s.borderTopColor, s.backgroundColor), 3);
            check(`square ${a.dataset.bin} edge`, Math.max(ratio(s.backgroundColor, panel),
                ratio(s.borderTopColor, panel)), 3);
        });
        for (const sel of ['.chart .line-accepted', '.chart .line-tables', '.chart .markers circle']) {
            const e = document.querySelector(sel);
            if (e) check(sel, ratio(getComputedStyle(e)[sel.endsWith('circle') ? 'fill' : 'stroke'], panel), 3);
        }
        const tick = document.querySelector('.chart .tick');
        if (tick) check('chart ticks', ratio(getComputedStyle(tick).fill, panel), 4.5);
        return [...bad];
    });
    await page.emulateMedia({ colorScheme: 'light' });
    return out;
}

const digits = (s) => String(s).replace(/\D/g, '');
const fold = (s) => s.normalize('NFD').replace(/[\u0300-\u036f]/g, '').toLowerCase();

async function main(state) {
    const bin = {
        tallyd: env('TALLYD'), ctl: env('TALLYCTL'), push: env('TALLY_PUSH'), gen: env('TALLY_GEN'),
    };
    const binDir = env('TALLY_BIN_DIR');
    const pgDir = env('TALLY_PG_DIR');
    const outDir = process.env.TALLY_BROWSER_OUT || binDir;
    if (!fs.existsSync(CHROMIUM)) {
        state.skip = `${CHROMIUM} not found (apt-get install chromium)`;
        return;
    }
    let chromium;
    try {
        ({ chromium } = await import('playwright-core'));
    } catch (e) {
        state.skip = `playwright-core not installed (npm ci in tests/browser): ${e.message}`;
        return;
    }

    const dir = path.join(binDir, 'itest', 'browser');
    fs.rmSync(dir, { recursive: true, force: true });
    fs.mkdirSync(dir, { recursive: true });
    state.dir = dir;

    // 27 areas (the 25 of the sample, "Estado 26" and "Estado 27"), 54 circuits, 324
    // projects, two voting tables per circuit; the votes name their tables, 30 % of the
    // tables report by tally sheet instead, and one sheet is corrected by a version 2.
    const reg = path.join(dir, 'registry.csv');
    const tables = path.join(dir, 'tables.csv');
    const votes = path.join(dir, 'votes');
    run(bin.gen, ['registry', '--out', reg, '--projects', '324', '--circuits', '54',
        '--states', '27', '--seed', '41']);
    run(bin.gen, ['tables', '--registry', reg, '--out', tables, '--electors-per-table', '80',
        '--seed', '41']);
    run(bin.gen, ['votes', '--registry', reg, '--collectors', '2', '--votes', '3000',
        '--out-dir', votes, '--tables', tables, '--sheet-share', '0.3', '--corrections', '1',
        '--repeat-rate', '0.02', '--unknown-rate', '0.005', '--seed', '41', '--quiet']);
    const truth = truthSummary(path.join(votes, 'truth-summary.txt'));

    const db = freshDatabase(pgDir, 'it_browser');
    state.drops.push(db.drop);
    const ctl = (...args) => run(bin.ctl, ['--db', db.conninfo, ...args]);
    ctl('migrate');
    ctl('load-registry', reg);
    ctl('load-tables', tables);
    for (const c of ['c0', 'c1']) ctl('add-collector', c);

    const tallyd = await tallydOn(bin, db.conninfo, dir, state);
    await tallyd.start();
    const api = (p) => getJSON(tallyd.httpPort, p);
    const index = await httpGet(tallyd.httpPort, '/');
    assert.equal(index.status, 200, 'GET / answers 200');
    assert.match(String(index.headers['content-type']), /^text\/html/, 'GET / is HTML');
    assert.match(index.body, /id="total-accepted"/, 'GET / is the dashboard');

    // Collector c0's votes (its half of the circuits), all durable before the page opens.
    const first = await push(bin, dir, tallyd.port, 'c0', path.join(votes, 'collector-0.csv'));
    log(`c0 pushed: ${JSON.stringify(first)}`);

    const browser = await chromium.launch({
        executablePath: CHROMIUM, args: CHROMIUM_ARGS, headless: true, timeout: 30000 * SCALE,
    });
    state.browser = browser;
    const pageErrors = [];
    const watch = (page, label) => {
        page.on('pageerror', (e) => pageErrors.push(`${label}: ${e.message}`));
        page.on('console', (m) => {
            // (A 404 is /v1/history on a server without it; a cut chunk, the event stream
            // when tallyd stops.)
            if (m.type() === 'error' && !/status of 404|ERR_INCOMPLETE_CHUNKED_ENCODING/.test(m.text())) {
                log(`${label} console error: ${m.text()}`);
            }
        });
    };

    const ctx = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const page = await ctx.newPage();
    state.page = page;
    watch(page, 'desktop');
    const requests = [];
    page.on('request', (r) => requests.push(new URL(r.url()).pathname + new URL(r.url()).search));
    let navigations = 0;
    page.on('framenavigated', (f) => {
        if (f === page.mainFrame()) navigations++;
    });
    const url = `http://127.0.0.1:${tallyd.httpPort}/`;
    await page.goto(url, { waitUntil: 'load', timeout: 30000 * SCALE });
    const firstLoad = await page.evaluate(() => {
        const nav = performance.getEntriesByType('navigation')[0];
        const res = performance.getEntriesByType('resource');
        const mark = (n) => performance.getEntriesByName(n)[0]?.startTime ?? null;
        return {
            transfer: nav.transferSize + res.reduce((s, r) => s + r.transferSize, 0),
            requests: 1 + res.length, totals_ms: mark('tally:totals'), map_ms: mark('tally:map'),
        };
    });

    const readTotal = () => page.evaluate(() => {
        const el = document.getElementById('total-accepted');
        return el ? el.textContent.replace(/\D/g, '') : null;
    });
    const waitTotal = (want, what) => page.waitForFunction((w) => {
        const el = document.getElementById('total-accepted');
        return el && el.textContent.replace(/\D/g, '') === String(w);
    }, want, { timeout: WAIT, polling: 100 }).catch(async () => {
        throw new Error(`${what}: #total-accepted shows ${await readTotal()}, want ${want}`);
    });
    // Until the page shows the API's checkpoint in the totals, the map, the states table and
    // the chart (each refreshes on its own schedule); the API is asked again each time, in
    // case a checkpoint is still on its way.
    const waitSynced = async (what) => {
        let shown = '';
        for (const by = Date.now() + WAIT; ; await sleep(100)) {
            const cp = (await api('/v1/summary')).checkpoint;
            const history = (await httpGet(tallyd.httpPort, '/v1/history')).status === 200;
            shown = await page.evaluate((c) => {
                const d = (id) => document.getElementById(id)?.dataset.checkpoint;
                const ok = document.getElementById('checkpoint-id').textContent === String(c.cp) &&
                    d('map') === String(c.cp) && d('states-table') === String(c.cp) &&
                    (c.history ? d('history-chart') === String(c.cp)
                        : document.getElementById('history').dataset.available === 'false');
                return ok ? '' : `checkpoint-id=${document.getElementById('checkpoint-id').textContent} ` +
                    `map=${d('map')} states-table=${d('states-table')} history-chart=${d('history-chart')}`;
            }, { cp, history });
            if (!shown) return cp;
            if (Date.now() > by) throw new Error(`${what}: the page did not reach checkpoint ${cp}: ${shown}`);
        }
    };

    await waitTotal(first.accepted, 'after c0');
    log(`page shows accepted ${first.accepted} after c0`);
    await page.waitForSelector('#live[data-state="live"]', { timeout: 15000 * SCALE });
    assert.equal(await page.getAttribute('html', 'lang'), 'es', 'Spanish by default');
    assert.ok(firstLoad.totals_ms !== null && firstLoad.map_ms !== null,
        `the totals and the map are on the page at its load event (${JSON.stringify(firstLoad)})`);
    assert.ok(!requests.some((r) => r === '/v1/results' || r.startsWith('/v1/results?format')),
        `the first load does not fetch the whole /v1/results: ${requests.join(' ')}`);

    // ---- the map, part way through: c0's circuits report, c1's not yet ----
    async function checkMap(metric, label) {
        await page.check(`#map-metric input[value="${metric}"]`);
        await waitSynced(`map by ${metric} (${label})`);
        const doc = await api('/v1/states');
        const tiles = await page.$$eval('#map [data-state]', (els) => els.map((a) => ({
            state: a.dataset.state, value: a.dataset.value, bin: a.dataset.bin, metric: a.dataset.metric,
            label: a.getAttribute('aria-label'), href: a.getAttribute('href'),
            row: Number(a.parentNode.style.gridRow), col: Number(a.parentNode.style.gridColumn),
        })));
        assert.equal(tiles.length, doc.states.length, `one square per state of /v1/states (${label})`);
        const cells = new Set(tiles.map((x) => `${x.row},${x.col}`));
        assert.equal(cells.size, tiles.length, 'no two squares share a place');
        const bins = new Set();
        for (const s of doc.states) {
            const tile = tiles.find((x) => x.state === s.name);
            assert.ok(tile, `a square for ${s.name}`);
            const want = expectedValue(s.progress, metric);
            const got = tile.value === '' ? null : Number(tile.value);
            if (want === null) assert.equal(got, null, `${s.name}: no ${metric} value`);
            else assert.ok(Math.abs(got - want) < 1e-12, `${s.name}: data-value ${got}, want ${want}`);
            assert.equal(tile.bin, binOf(want), `${s.name}: bin of ${want}`);
            assert.equal(tile.metric, metric);
            assert.ok(tile.label.startsWith(`${s.name}: `), `${s.name}: its square's name says it: ${tile.label}`);
            assert.equal(decodeURIComponent(tile.href), `#estado=${s.name}`, `${s.name}: links to its view`);
            bins.add(tile.bin);
        }
        // The 25 sample names have their place; the others a row below the layout's.
        for (const [name, row, col] of [['Zulia', 2, 1], ['Distrito Capital', 2, 6], ['Amazonas', 5, 5]]) {
            const tile = tiles.find((x) => x.state === name);
            assert.deepEqual([tile.row, tile.col], [row, col], `${name} at its place`);
        }
        for (const name of ['Estado 26', 'Estado 27']) {
            assert.ok(tiles.find((x) => x.state === name).row >= 6, `${name} in the extra row`);
        }
        return [...bins].sort();
    }
    const binsPart = await checkMap('progress', 'after c0');
    assert.ok(binsPart.length >= 2, `part way through, the squares differ: bins ${binsPart}`);
    log(`map after c0: 27 squares as /v1/states, bins ${binsPart.join(',')}`);
    await page.check('#map-metric input[value="progress"]');

    const cpBefore = Number(await page.textContent('#checkpoint-id'));
    const pointsBefore = await page.locator('#history-chart [data-checkpoint]').count();
    await page.evaluate(() => { window.__sameDocument = true; });
    const navBefore = navigations;

    // ---- collector c1's votes, then the tally sheets, while the page is open ----
    const second = await push(bin, dir, tallyd.port, 'c1', path.join(votes, 'collector-1.csv'));
    log(`c1 pushed: ${JSON.stringify(second)}`);
    const total = first.accepted + second.accepted;
    assert.equal(total, truth.accepted, 'the two collectors together accept what tally-gen says');
    await waitTotal(total, 'after c1 (live, no reload)');
    const sheets = await push(bin, dir, tallyd.port, 'c0', path.join(votes, 'sheets.csv'), { sheets: true });
    log(`sheets pushed: ${JSON.stringify(sheets)}`);
    let corrections;
    for (const by = Date.now() + WAIT; ; await sleep(100)) {
        corrections = await api('/v1/corrections');
        if (corrections.count >= 1) break;
        if (Date.now() > by) throw new Error('no correction listed after the version 2 sheet');
    }
    const cpSynced = await waitSynced('after c1 and the sheets');
    assert.equal(navigations, navBefore, 'the page did not navigate');
    assert.equal(await page.evaluate(() => window.__sameDocument === true), true, 'the page was not reloaded');
    const cpAfter = Number(await page.textContent('#checkpoint-id'));
    assert.ok(cpAfter > cpBefore, `checkpoint id advanced (${cpBefore} -> ${cpAfter})`);
    log(`page shows accepted ${total} live, checkpoint ${cpBefore} -> ${cpAfter}`);

    // The page agrees with the API.
    const summary = await api('/v1/summary');
    assert.equal(summary.totals.accepted, total, '/v1/summary totals.accepted');
    assert.equal(digits(await page.textContent('#total-duplicate')), String(summary.totals.duplicate), 'duplicates');
    assert.equal(await page.getAttribute('#head-hash', 'data-hash'), summary.head_hash, 'the footer: chain head');
    assert.equal(await page.getAttribute('#foot-time', 'datetime'), new Date(summary.time).toISOString(),
        'the footer: the checkpoint\'s time');
    assert.ok(await page.locator('#circuits details.circuit').count() > 0, 'circuits of the selected state');
    assert.ok(await page.locator('#circuits .badge-win').count() > 0, 'winners are marked');

    // ---- the map at the end (every table reported), and by turnout ----
    await checkMap('progress', 'after the sheets');
    const binsTurnout = await checkMap('turnout', 'after the sheets');
    log(`map: shading follows /v1/states by tables reported and by turnout (bins ${binsTurnout.join(',')})`);
    await page.check('#map-metric input[value="progress"]');
    assert.equal(await page.locator('#map-legend li[data-bin]').count(), 6, 'the legend: five bins and no data');

    // ---- accessibility: skip link, labels, tab order of the squares, contrast ----
    // (A page of its own: Tab starts from the top of a freshly loaded document.)
    const apage = await ctx.newPage();
    watch(apage, 'keyboard');
    await apage.goto(url, { waitUntil: 'load', timeout: 30000 * SCALE });
    await apage.waitForSelector('#states-table tbody tr[data-state]', { timeout: WAIT });
    await apage.keyboard.press('Tab');
    const skip = await apage.evaluate(() => {
        const a = document.activeElement;
        const r = a.getBoundingClientRect();
        return { cls: a.className, text: a.textContent, visible: r.top >= 0 && r.height > 0 };
    });
    assert.deepEqual(skip, { cls: 'skip', text: 'Saltar al contenido', visible: true },
        'the first Tab reaches the skip link, shown when focused');
    await apage.keyboard.press('Enter');
    assert.equal(await apage.evaluate(() => document.activeElement.id), 'main', 'the skip link moves the focus');
    const a11y = await apage.evaluate(() => {
        const unlabelled = [...document.querySelectorAll('input, select, button, a[href]')]
            .filter((e) => !e.closest('[hidden]'))
            .filter((e) => !(e.labels?.length || e.getAttribute('aria-label') || e.textContent.trim()))
            .map((e) => e.id || e.outerHTML.slice(0, 80));
        const order = [...document.querySelectorAll('#map-tiles > li')]
            .map((li) => [Number(li.style.gridRow), Number(li.style.gridColumn)]);
        return { unlabelled, order };
    });
    assert.deepEqual(a11y.unlabelled, [], 'every control has a label');
    assert.deepEqual(a11y.order, [...a11y.order].sort((x, y) => x[0] - y[0] || x[1] - y[1]),
        'the squares come in reading order (tab order row by row)');
    // Every text on the page, and the map's squares, in both schemes; with circuits open
    // and search results listed.
    await apage.evaluate(() => document.querySelectorAll('#circuits details').forEach((d, i) => {
        if (i < 4) d.open = true;
    }));
    await apage.fill('#search-input', 'a');
    await apage.waitForSelector('#search-results a', { timeout: WAIT });
    for (const scheme of ['light', 'dark']) {
        assert.deepEqual(await contrastProblems(apage, scheme), [], `contrast in the ${scheme} scheme`);
    }
    await apage.close();
    log('accessibility: skip link, every control labelled, squares in reading order, contrast of ' +
        'every text and square, light and dark');

    // ---- the chart: one marker per /v1/history point, one point per checkpoint ----
    let historyNote = 'history: ';
    const histRes = await httpGet(tallyd.httpPort, '/v1/history');
    if (histRes.status === 404) {
        assert.ok(await page.isVisible('#history-note'), 'no /v1/history: the page says so');
        assert.equal(await page.locator('#history-chart [data-checkpoint]').count(), 0);
        historyNote += 'the server answers 404: the page shows its note';
    } else {
        const hist = JSON.parse(histRes.body);
        const marks = await page.$$eval('#history-chart [data-checkpoint]', (els) =>
            els.map((e) => [Number(e.dataset.checkpoint), Number(e.dataset.accepted)]));
        assert.deepEqual(marks, hist.points.map((p) => [p.checkpoint, p.accepted]),
            'a marker per /v1/history point, in order, with its accepted votes');
        assert.ok(marks.length > pointsBefore, `the chart grew live (${pointsBefore} -> ${marks.length})`);
        const [n, lo, hi] = db.sql('SELECT count(*), min(id), max(id) FROM checkpoints').split('|').map(Number);
        if (hist.stride === 1) {
            assert.equal(marks.length, n, `as many points as checkpoints were published (${n})`);
            assert.deepEqual([marks[0][0], marks[marks.length - 1][0]], [lo, hi], 'from the first to the last');
        }
        assert.equal(hi, cpSynced, 'the last point is the summary\'s checkpoint');
        assert.ok((await page.textContent('#history-summary')).length > 20, 'the chart has a text summary');
        assert.ok(await page.locator('#history-chart svg title').count() === 1, 'the SVG has a title');
        historyNote += `${marks.length} markers = ${hist.points.length} points = ${n} checkpoints`;
    }
    log(historyNote);

    // ---- the states table: the API's figures, formatted es-VE, sortable ----
    const statesDoc = await api('/v1/states');
    const rows = await page.$$eval('#states-table tbody tr[data-state]', (trs) => trs.map((tr) => {
        const c = {};
        tr.querySelectorAll('[data-col]').forEach((td) => {
            c[td.dataset.col] = { value: td.dataset.value, text: td.textContent, ...td.dataset };
        });
        return { state: tr.dataset.state, c };
    }));
    assert.equal(rows.length, statesDoc.states.length, 'a row per state');
    const fmt = (n) => page.evaluate((x) => new Intl.NumberFormat('es-VE').format(x), n);
    for (const s of statesDoc.states) {
        const r = rows.find((x) => x.state === s.name);
        assert.ok(r, `a row for ${s.name}`);
        const p = s.progress;
        assert.equal(Number(r.c.circuits.value), s.circuits, `${s.name}: circuits`);
        assert.equal(r.c.decided.value === '' ? null : Number(r.c.decided.value), p.circuits_decided ?? null,
            `${s.name}: decided`);
        assert.equal(Number(r.c.reported.reported), p.tables_reported, `${s.name}: tables reported`);
        assert.equal(Number(r.c.reported.tables), p.tables, `${s.name}: tables`);
        assert.equal(r.c.turnout.value === '' ? null : Number(r.c.turnout.value), p.turnout, `${s.name}: turnout`);
        assert.equal(Number(r.c.ballots.value), p.ballots, `${s.name}: ballots`);
        assert.equal(r.c.ballots.text, await fmt(p.ballots), `${s.name}: ballots as es-VE writes them`);
        if (p.turnout !== null) {
            assert.equal(Number(digits(r.c.turnout.text)), Math.round(p.turnout * 10000),
                `${s.name}: turnout shown to the API's 4 decimals (${r.c.turnout.text})`);
        }
    }
    const colValues = (col) => page.$$eval(`#states-table tbody tr[data-state] [data-col="${col}"]`,
        (els, k) => els.map((e) => (k === 'name' ? e.textContent : Number(e.dataset.value))), col);
    await page.click('#states-table th[data-col="ballots"] button');
    assert.equal(await page.getAttribute('#states-table th[data-col="ballots"]', 'aria-sort'), 'descending');
    let b = await colValues('ballots');
    assert.deepEqual(b, [...b].sort((x, y) => y - x), 'sorted by ballots, largest first');
    await page.click('#states-table th[data-col="ballots"] button');
    assert.equal(await page.getAttribute('#states-table th[data-col="ballots"]', 'aria-sort'), 'ascending');
    b = await colValues('ballots');
    assert.deepEqual(b, [...b].sort((x, y) => x - y), 'then smallest first');
    assert.equal(await page.getAttribute('#states-table th[data-col="name"]', 'aria-sort'), null,
        'aria-sort only on the sorted column');
    await page.click('#states-table th[data-col="name"] button');
    log('states table: the figures of /v1/states, sorted by ballots both ways, then by name');

    // The circuits re-ranked in the page from live events agree with the server's ranking.
    const stateName = await page.inputValue('#state-select');
    const results = await api(`/v1/results?state=${encodeURIComponent(stateName)}`);
    const shown = await page.evaluate(() => [...document.querySelectorAll('#circuits tr[data-id]')]
        .map((tr) => ({
            id: Number(tr.dataset.id),
            rank: Number(tr.querySelector('.col-rank').textContent),
            votes: Number(tr.querySelector('.col-votes .num').textContent),
            winner: !!tr.querySelector('.badge-win'),
            tie: !!tr.querySelector('.badge-tie'),
        })));
    const byId = new Map(results.projects.map((p) => [p.id, p]));
    assert.equal(shown.length, results.projects.length, `every project of ${stateName} is listed`);
    for (const r of shown) {
        const p = byId.get(r.id);
        assert.ok(p, `project ${r.id} is in /v1/results?state=`);
        // A tie among projects nobody voted for yet is not shown as news.
        assert.deepEqual(r, { id: p.id, rank: p.rank, votes: p.votes, winner: p.winner, tie: p.tie && r.tie },
            `project ${r.id} as the API ranks it`);
        if (p.tie && p.votes > 0) assert.ok(r.tie, `project ${r.id}'s tie is shown`);
    }

    // Reporting progress: national and per circuit card, as the API gives it.
    const sp = summary.progress;
    const natText = `mesas reportadas ${await fmt(sp.tables_reported)}/${await fmt(sp.tables)}`;
    assert.ok((await page.textContent('#tables-progress')).startsWith(natText),
        `national progress: "${natText}"`);
    const circuitsDoc = await api(`/v1/circuits?state=${encodeURIComponent(stateName)}`);
    for (const c of circuitsDoc.circuits) {
        const card = await page.$eval(`#circuits details[data-id="${c.id}"]`, (d) => ({
            progress: d.querySelector('.c-progress')?.textContent || '',
            decided: !!d.querySelector('.badge-decided'), open: !!d.querySelector('.badge-open'),
        }));
        assert.ok(card.progress.startsWith(`mesas reportadas ${c.progress.tables_reported}/${c.progress.tables}`),
            `circuit ${c.id}: ${card.progress}`);
        assert.equal(card.decided, c.decided, `circuit ${c.id}: decided as the API says`);
        assert.equal(card.open, !c.decided);
    }

    // ---- the corrected circuit, reached from its state's square ----
    const corrected = corrections.corrections.find((x) => x.kind === 'sheet') || corrections.corrections[0];
    const cid = corrected.circuits[0];
    const allCircuits = await api('/v1/circuits');
    const cstate = allCircuits.circuits.find((c) => c.id === cid).state;
    await page.click(`#map [data-state="${cstate}"]`);
    await page.waitForFunction(([s, id]) => document.getElementById('state-select').value === s &&
        document.querySelector(`#circuits details[data-id="${id}"] .badge-corrected`) &&
        document.activeElement === document.getElementById('results-h'), [cstate, cid],
    { timeout: WAIT, polling: 100 }).catch(() => {
        throw new Error(`the square of ${cstate} did not lead to circuit ${cid} marked as corrected`);
    });
    assert.equal(await page.getAttribute(`#map [data-state="${cstate}"]`, 'aria-current'), 'true');
    log(`correction ${corrected.id}: circuit ${cid} of ${cstate} marked, reached from the map`);

    const shot = path.join(outDir, 'dashboard.png');
    await page.screenshot({ path: shot, fullPage: true, animations: 'disabled' });
    state.shots.push(shot);

    // ---- the national search: a project of another state than the selected one ----
    const selected = await page.inputValue('#state-select');
    const other = statesDoc.states.find((s) => s.name !== selected && s.name !== 'Distrito Capital' &&
        s.circuits >= 2);
    const otherResults = await api(`/v1/results?state=${encodeURIComponent(other.name)}`);
    const target = otherResults.projects.find((p) => /[áéíóúñ]/i.test(p.name)) || otherResults.projects[0];
    assert.ok(!requests.includes('/v1/results'), 'no catalogue before the search is used');
    await page.focus('#search-input');
    await page.waitForSelector('#search[data-catalogue="ready"]', { timeout: WAIT });
    assert.ok(requests.includes('/v1/results') && requests.includes('/v1/circuits'),
        'the catalogue is loaded on the first focus');
    assert.equal(Number(await page.getAttribute('#search', 'data-entries')), 324 + 54, 'every project and circuit');
    // By number.
    await page.fill('#search-input', String(target.id));
    await page.waitForSelector(`#search-results a[data-kind="project"][data-id="${target.id}"]`, { timeout: WAIT });
    assert.match(await page.textContent('#search-status'), /^\d+ resultados?/, 'the count is announced');
    assert.equal(await page.getAttribute('#search-status', 'aria-live'), 'polite');
    // By name, without accents, in capitals: the same project among the results.
    const query = fold(target.name).toUpperCase();
    await page.fill('#search-input', query);
    await page.waitForSelector(`#search-results a[data-id="${target.id}"]`, { timeout: WAIT }).catch(() => {
        throw new Error(`"${query}" does not find project ${target.id} (${target.name})`);
    });
    // The keyboard: down into the list to the project, Enter opens it in its state's view.
    await page.press('#search-input', 'ArrowDown');
    for (let i = 0; i < 60; i++) {
        if (await page.evaluate((id) => document.activeElement?.dataset?.id === String(id), target.id)) break;
        await page.keyboard.press('ArrowDown');
    }
    assert.equal(await page.evaluate(() => document.activeElement.dataset.id), String(target.id),
        'the arrows reach the project in the list');
    await page.keyboard.press('Enter');
    await page.waitForFunction(([s, c, p]) => document.getElementById('state-select').value === s &&
        document.querySelector(`#circuits details[data-id="${c}"][open] tr.is-target[data-id="${p}"]`) &&
        document.activeElement.closest('details')?.dataset.id === String(c),
    [other.name, target.circuit_id, target.id], { timeout: WAIT, polling: 100 }).catch(async () => {
        throw new Error(`the search link did not open project ${target.id} in ${other.name}: ` +
            await page.evaluate(() => location.hash));
    });
    assert.ok(await page.isHidden('#search-results'), 'the list closes once a result is opened');
    await page.fill('#search-input', query);
    await page.waitForSelector('#search-results:not([hidden])', { timeout: WAIT });
    await page.press('#search-input', 'Escape');
    assert.ok(await page.isHidden('#search-results'), 'Escape closes the list');
    const searchMs = Number(await page.getAttribute('#search', 'data-ms'));
    log(`search: project ${target.id} of ${other.name} (selected was ${selected}) by number and by ` +
        `"${query}", opened with the keyboard; ${searchMs} ms a search`);

    // ---- a phone: 390x844, no sideways scrolling ----
    const phone = await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true });
    const ppage = await phone.newPage();
    watch(ppage, 'phone');
    await ppage.goto(url, { waitUntil: 'load', timeout: 30000 * SCALE });
    await ppage.waitForFunction((w) => {
        const el = document.getElementById('total-accepted');
        return el && el.textContent.replace(/\D/g, '') === String(w);
    }, summary.totals.accepted, { timeout: WAIT, polling: 100 });
    await ppage.waitForSelector('#circuits details.circuit', { timeout: 10000 * SCALE });
    await ppage.waitForSelector('#history-chart svg, #history-note:not([hidden])', { timeout: WAIT });
    const overflow = await ppage.evaluate(() => document.documentElement.scrollWidth);
    assert.ok(overflow <= 390, `no horizontal scrolling on a phone (scrollWidth ${overflow})`);
    const pshot = path.join(outDir, 'dashboard-phone.png');
    await ppage.screenshot({ path: pshot, animations: 'disabled' });
    state.shots.push(pshot);
    await phone.close();

    // ---- English: ?lang=en ----
    const en = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const epage = await en.newPage();
    watch(epage, 'english');
    await epage.goto(`${url}?lang=en`, { waitUntil: 'load', timeout: 30000 * SCALE });
    await epage.waitForSelector('#states-table tbody tr[data-state]', { timeout: WAIT });
    const english = await epage.evaluate(() => {
        const txt = (sel) => document.querySelector(sel)?.textContent.trim();
        const s = window.Tally.i18n.strings;
        return {
            lang: document.documentElement.lang, totals: txt('#totals-h'), map: txt('#map-h'),
            states: txt('#states-h'), search: txt('label[for="search-input"]'), status: txt('#status-label'),
            col: txt('#states-table th[data-col="name"]'), sw: txt('#lang-switch'),
            swHref: document.getElementById('lang-switch').getAttribute('href'),
            tile: document.querySelector('#map [data-state]').getAttribute('aria-label'),
            title: document.title,
            sameKeys: JSON.stringify(Object.keys(s.es).sort()) === JSON.stringify(Object.keys(s.en).sort()),
            empty: [...document.querySelectorAll('[data-i18n]')].filter((e) => !e.textContent.trim())
                .map((e) => e.dataset.i18n),
        };
    });
    assert.deepEqual(english, {
        lang: 'en', totals: 'National totals', map: 'Progress map by state', states: 'States',
        search: 'Search a circuit or project nationwide', status: 'Provisional', col: 'State',
        sw: 'Español', swHref: english.swHref, tile: english.tile, title: english.title,
        sameKeys: true, empty: [],
    }, 'the English page');
    assert.match(english.swHref, /^\?lang=es/, 'the switch leads to Spanish');
    assert.match(english.tile, /of tables reported/, 'the squares speak English');
    assert.match(english.title, /^Live results · /);
    const eshotEn = path.join(outDir, 'dashboard-en.png');
    await epage.screenshot({ path: eshotEn, animations: 'disabled' });
    state.shots.push(eshotEn);
    await epage.click('#lang-switch');
    await epage.waitForFunction(() => document.documentElement.lang === 'es' &&
        document.getElementById('totals-h').textContent === 'Totales nacionales', null, { timeout: WAIT });
    await en.close();
    log('English with ?lang=en (same keys in both tables), and back to Spanish by the switch');

    // ---- tallyd restarts: the indicator shows the break, then the page reconnects ----
    assert.equal(await tallyd.stop(15000 * SCALE), 0, 'tallyd stops cleanly on SIGTERM');
    await page.waitForSelector('#live:not([data-state="live"])', { timeout: 15000 * SCALE });
    const during = await page.textContent('#live-text');
    await tallyd.start();
    await page.waitForSelector('#live[data-state="live"]', { timeout: 30000 * SCALE });
    await waitTotal(total, 'after tallyd restarted');
    log(`tallyd restarted: the page showed "${during.trim()}", then live again`);

    // ---- the embargo (tallyctl embargo on): the notice and the progress, no results ----
    assert.equal((await page.textContent('#status')).trim(), 'Provisional', 'status shown');
    ctl('embargo', 'on', '--actor', 'prueba');
    await page.waitForFunction(() => !document.getElementById('embargo').hidden &&
        document.getElementById('results').hidden, null, { timeout: 15000 * SCALE, polling: 100 }).catch(async () => {
        throw new Error('embargo not shown: ' + await page.evaluate(() => document.getElementById('embargo')?.outerHTML));
    });
    assert.match(await page.textContent('#embargo'), /Resultados bajo embargo/);
    assert.ok(await page.isVisible('#tables-progress'), 'the progress stays under embargo');
    assert.equal(await page.locator('#map [data-state]').count(), 27, 'the map stays under embargo');
    await page.waitForFunction(() => [...document.querySelectorAll('#states-table tbody [data-col="decided"]')]
        .every((td) => td.dataset.value === ''), null, { timeout: WAIT, polling: 200 });
    const eshot = path.join(outDir, 'dashboard-embargo.png');
    await page.screenshot({ path: eshot, fullPage: true, animations: 'disabled' });
    state.shots.push(eshot);
    ctl('embargo', 'off', '--actor', 'prueba');
    await page.waitForFunction(() => document.getElementById('embargo').hidden &&
        !document.getElementById('results').hidden &&
        document.querySelectorAll('#circuits details.circuit').length > 0, null, { timeout: WAIT, polling: 100 });
    await waitTotal(total, 'after the embargo was lifted');
    log('embargo on: notice, progress, map; decided left out; off: the results again');

    // ---- close, then certify: provisional, closed, official with the certified head ----
    ctl('close', '--actor', 'prueba');
    await page.waitForFunction(() => document.getElementById('status').dataset.closed === 'true' &&
        document.getElementById('status-label').textContent === 'Provisional · cerrada', null,
    { timeout: WAIT, polling: 100 });
    const certDir = path.join(dir, 'cert');
    ctl('certify', '--out', certDir, '--actor', 'junta');
    let official;
    for (const by = Date.now() + WAIT; ; await sleep(100)) {
        official = await api('/v1/summary');
        if (official.status === 'official') break;
        if (Date.now() > by) throw new Error('/v1/summary not official after tallyctl certify');
    }
    assert.match(official.certified_hash, /^[0-9a-f]{64}$/);
    await page.waitForFunction((h) => {
        const st = document.getElementById('status');
        const code = document.getElementById('status-hash');
        return st.dataset.status === 'official' && !code.hidden && code.dataset.hash === h &&
            code.textContent === h.slice(0, 12) + '…' && code.title === h &&
            document.getElementById('status-label').textContent === 'Oficial';
    }, official.certified_hash, { timeout: WAIT, polling: 100 }).catch(async () => {
        throw new Error('official status not shown: ' + await page.evaluate(() => document.getElementById('status').outerHTML));
    });
    await waitSynced('after certify');
    assert.equal(await page.getAttribute('#head-hash', 'data-hash'), official.head_hash, 'footer: the chain head');
    if (histRes.status === 200) {
        const hist = await api('/v1/history');
        const n = Number(db.sql('SELECT count(*) FROM checkpoints'));
        const marks = await page.locator('#history-chart [data-checkpoint]').count();
        assert.equal(marks, hist.points.length, 'after the close: a marker per point');
        if (hist.stride === 1) assert.equal(marks, n, 'after the close: a point per checkpoint');
    }
    for (const scheme of ['light', 'dark']) {
        assert.deepEqual(await contrastProblems(page, scheme), [], `contrast of the official page, ${scheme}`);
    }
    const oshot = path.join(outDir, 'dashboard-official.png');
    await page.screenshot({ path: oshot, animations: 'disabled' });
    state.shots.push(oshot);
    log(`closed, then official: certified head ${official.certified_hash.slice(0, 12)}… shown, full in its title`);

    assert.deepEqual(pageErrors, [], 'no script errors on the page');
    state.summary = `accepted ${first.accepted} -> ${total} live, checkpoint ${cpBefore} -> ${cpAfter}; ` +
        `map, chart, states table as the API; search across states; es/en; restart; embargo; ` +
        `official; first load ${firstLoad.transfer} bytes in ${firstLoad.requests} requests, totals at ` +
        `${Math.round(firstLoad.totals_ms)} ms, map at ${Math.round(firstLoad.map_ms)} ms; screenshots in ${outDir}`;

    // The browser first, so that tallyd's stop does not cut open event streams.
    await browser.close();
    state.browser = null;
    assert.equal(await tallyd.stop(15000 * SCALE), 0, 'tallyd stops cleanly on SIGTERM');

    if (process.env.TALLY_BROWSER_MEASURE === '1') {
        const { measure } = await import('./measure.mjs');
        state.measure = await measure({ bin, binDir, pgDir, outDir, chromium, state });
    }
}

async function cleanup(state) {
    if (state.browser) await Promise.race([state.browser.close().catch(() => {}), sleep(10000)]);
    for (const p of [...children]) await stop(p, 10000);
    if (!process.env.TALLY_KEEP) for (const drop of state.drops) drop();
}

const state = { shots: [], drops: [] };
const deadline = setTimeout(async () => {
    console.log(`${NAME}: FAIL: deadline of ${DEADLINE_MS / 1000} s passed`);
    if (state.tallyd) console.log(`---- tallyd log\n${tail(state.tallyd.errPath)}`);
    killAllNow();
    process.exit(1);
}, DEADLINE_MS * (process.env.TALLY_BROWSER_MEASURE === '1' ? 2 : 1));
process.on('exit', killAllNow);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
    process.on(sig, () => {
        console.log(`${NAME}: FAIL: interrupted by ${sig}`);
        killAllNow();
        process.exit(1);
    });
}

let status = 0;
const t0 = Date.now();
try {
    await main(state);
    if (state.skip) {
        console.log(`${NAME}: SKIP: ${state.skip}`);
        status = 77;
    } else {
        if (state.measure) console.log(`${NAME}: MEASURE: ${state.measure}`);
        console.log(`${NAME}: PASS (${((Date.now() - t0) / 1000).toFixed(1)} s): ${state.summary}`);
    }
} catch (e) {
    status = 1;
    console.log(`${NAME}: FAIL: ${e.stack || e.message}`);
    if (state.page) {
        const fail = path.join(process.env.TALLY_BROWSER_OUT || process.env.TALLY_BIN_DIR || '.',
            'dashboard-failure.png');
        await state.page.screenshot({ path: fail, fullPage: true }).then(
            () => console.log(`---- page at failure: ${fail}`), () => {});
        const shown = await state.page.evaluate(() => ['total-accepted', 'checkpoint-id',
            'live-text', 'alert', 'status'].map((id) => {
            const el = document.getElementById(id);
            return `${id}=${el ? JSON.stringify(el.textContent.trim()) : 'missing'}`;
        }).join(' ')).catch(() => '(page gone)');
        console.log(`---- page: ${shown}`);
    }
    if (state.tallyd) console.log(`---- tallyd log (last lines)\n${tail(state.tallyd.errPath)}`);
} finally {
    await cleanup(state).catch((e) => log(`cleanup: ${e.message}`));
    clearTimeout(deadline);
}
process.exit(status);
