// TALLY_BROWSER_MEASURE=1: the dashboard's first load and its search on the sample-sized
// consultation with 36,000 projects (tally-gen registry's 25 states and 4,500 circuits,
// 2 tables per circuit, 200,000 votes and the tally sheets), in headless Chromium on a cold
// cache, three times: bytes transferred (the Chrome DevTools Protocol's encodedDataLength
// per request, and the Performance API's transferSize; gzip when tallyd sends it), the time
// to the totals and to the map shown (the page's performance marks tally:totals and
// tally:map, from navigation start), the load event; then the search's catalogue (its
// bytes and the time to load and index it) and searches over it (the page's measure
// tally:search, and from the keystroke to the next frame). Writes dashboard-measure.json
// beside the screenshots and returns the one line the test prints.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';

import { CHROMIUM_ARGS, SCALE, freshDatabase, log, push, run, sleep, tallydOn } from './lib.mjs';

const PROJECTS = 36000;
const VOTES = 200000;
const RUNS = 3;

const median = (xs) => {
    const s = [...xs].sort((a, b) => a - b);
    return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

// A page with the Network domain on: bytes per request as they finish.
async function tracked(ctx) {
    const page = await ctx.newPage();
    const cdp = await ctx.newCDPSession(page);
    await cdp.send('Network.enable');
    const reqs = new Map();
    cdp.on('Network.responseReceived', (e) => {
        const u = new URL(e.response.url);
        reqs.set(e.requestId, {
            path: u.pathname + u.search, status: e.response.status,
            encoding: e.response.headers['content-encoding'] || e.response.headers['Content-Encoding'] || '',
            bytes: null,
        });
    });
    cdp.on('Network.loadingFinished', (e) => {
        const r = reqs.get(e.requestId);
        if (r) r.bytes = e.encodedDataLength;
    });
    return { page, reqs };
}

export async function measure({ bin, binDir, pgDir, outDir, chromium, state }) {
    const dir = path.join(binDir, 'itest', 'browser-measure');
    fs.rmSync(dir, { recursive: true, force: true });
    fs.mkdirSync(dir, { recursive: true });
    const t0 = Date.now();
    const reg = path.join(dir, 'registry.csv');
    const tables = path.join(dir, 'tables.csv');
    const votes = path.join(dir, 'votes');
    run(bin.gen, ['registry', '--out', reg, '--projects', String(PROJECTS), '--seed', '2024']);
    run(bin.gen, ['tables', '--registry', reg, '--out', tables, '--seed', '2024']);
    run(bin.gen, ['votes', '--registry', reg, '--collectors', '2', '--votes', String(VOTES),
        '--out-dir', votes, '--tables', tables, '--sheet-share', '0.3', '--corrections', '1',
        '--seed', '2024', '--quiet']);
    const db = freshDatabase(pgDir, 'it_browser_measure');
    state.drops.push(db.drop);
    const ctl = (...args) => run(bin.ctl, ['--db', db.conninfo, ...args], 120000 * SCALE);
    ctl('migrate');
    ctl('load-registry', reg);
    ctl('load-tables', tables);
    for (const c of ['c0', 'c1']) ctl('add-collector', c);
    const tallyd = await tallydOn(bin, db.conninfo, dir, state, 'tallyd-measure');
    await tallyd.start();
    for (const [c, f] of [['c0', 'collector-0.csv'], ['c1', 'collector-1.csv']]) {
        await push(bin, dir, tallyd.port, c, path.join(votes, f), { batch: 2000 });
    }
    await push(bin, dir, tallyd.port, 'c0', path.join(votes, 'sheets.csv'), { sheets: true });
    const summary = JSON.parse((await (await fetch(`http://127.0.0.1:${tallyd.httpPort}/v1/summary`)).text()));
    assert.equal(summary.projects, PROJECTS, 'the measured consultation has 36,000 projects');
    log(`measure: ${PROJECTS} projects, ${summary.circuits} circuits, ${summary.states.length} states, ` +
        `${summary.totals.accepted} votes accepted, ready in ${((Date.now() - t0) / 1000).toFixed(1)} s`);

    const browser = await chromium.launch({ executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
        args: CHROMIUM_ARGS, headless: true, timeout: 30000 * SCALE });
    state.browser = browser;
    const url = `http://127.0.0.1:${tallyd.httpPort}/`;
    const loads = [];
    let last = null;
    for (let i = 0; i < RUNS; i++) {
        const ctx = await browser.newContext({ viewport: { width: 1280, height: 900 } });
        const { page, reqs } = await tracked(ctx);
        await page.goto(url, { waitUntil: 'load', timeout: 60000 * SCALE });
        await page.waitForFunction((n) => document.querySelectorAll('#map [data-state]').length === n &&
            document.getElementById('total-accepted').dataset.value !== undefined &&
            document.querySelectorAll('#states-table tbody tr[data-state]').length === n,
        summary.states.length, { timeout: 30000 * SCALE });
        await sleep(1000); // what the page fetches after its load event (state view, history)
        const perf = await page.evaluate(() => {
            const nav = performance.getEntriesByType('navigation')[0];
            const res = performance.getEntriesByType('resource');
            const mark = (n) => performance.getEntriesByName(n)[0]?.startTime ?? null;
            return {
                totals_ms: mark('tally:totals'), map_ms: mark('tally:map'), load_ms: nav.loadEventEnd,
                perf_transfer: nav.transferSize + res.reduce((s, r) => s + r.transferSize, 0),
                perf_decoded: nav.decodedBodySize + res.reduce((s, r) => s + r.decodedBodySize, 0),
            };
        });
        const done = [...reqs.values()].filter((r) => r.bytes !== null);
        assert.ok(!done.some((r) => r.path === '/v1/results'), 'the first load does not fetch /v1/results');
        loads.push({
            ...perf, cdp_transfer: done.reduce((s, r) => s + r.bytes, 0), requests: done.length,
            gzip: done.filter((r) => r.encoding === 'gzip').length,
            files: done.map((r) => `${r.path} ${r.bytes}${r.encoding ? ' ' + r.encoding : ''}`),
        });
        if (last) await last.ctx.close();
        last = { ctx, page, reqs };
    }

    // The search, in the last page: the catalogue on the first focus, then searches.
    const { page, reqs } = last;
    await page.focus('#search-input');
    await page.waitForSelector('#search[data-catalogue="ready"]', { timeout: 60000 * SCALE });
    await sleep(200);
    const catalogue = await page.evaluate(() => performance.getEntriesByName('tally:catalogue')[0].duration);
    const catBytes = [...reqs.values()].filter((r) => r.path === '/v1/results' || r.path === '/v1/circuits')
        .reduce((s, r) => s + (r.bytes || 0), 0);
    const entries = Number(await page.getAttribute('#search', 'data-entries'));
    const anyId = summary.states.length ? (await (await fetch(`http://127.0.0.1:${tallyd.httpPort}/v1/results?state=` +
        encodeURIComponent(summary.states[0].name))).json()).projects[0].id : 1;
    const queries = ['cancha', 'la montaña', 'PANADERIA ESPIGA', 'escuela simon bolivar', String(anyId), '12', 'zzzz'];
    const searches = [];
    for (const q of queries) {
        const r = await page.evaluate((query) => new Promise((resolve) => {
            const before = performance.getEntriesByName('tally:search').length;
            const input = document.getElementById('search-input');
            const t = performance.now();
            input.value = query;
            input.dispatchEvent(new Event('input', { bubbles: true }));
            const poll = () => {
                const e = performance.getEntriesByName('tally:search');
                if (e.length > before) {
                    requestAnimationFrame(() => resolve({
                        search_ms: e[e.length - 1].duration, to_frame_ms: performance.now() - t,
                        total: Number(document.getElementById('search').dataset.total),
                        status: document.getElementById('search-status').textContent,
                    }));
                } else setTimeout(poll, 5);
            };
            poll();
        }), q);
        searches.push({ query: q, ...r });
    }
    await browser.close();
    state.browser = null;
    await tallyd.stop(30000 * SCALE);

    const m = (k) => median(loads.map((l) => l[k]));
    const result = {
        consultation: { projects: PROJECTS, circuits: summary.circuits, states: summary.states.length,
            accepted: summary.totals.accepted },
        first_load: {
            runs: loads, median: {
                cdp_transfer_bytes: m('cdp_transfer'), perf_transfer_bytes: m('perf_transfer'),
                decoded_bytes: m('perf_decoded'), totals_ms: m('totals_ms'), map_ms: m('map_ms'),
                load_ms: m('load_ms'),
            },
        },
        search: {
            catalogue_ms: catalogue, catalogue_bytes: catBytes, entries,
            debounce_ms: 120, searches, median_search_ms: median(searches.map((s) => s.search_ms)),
            median_to_frame_ms: median(searches.map((s) => s.to_frame_ms)),
        },
    };
    const file = path.join(outDir, 'dashboard-measure.json');
    fs.writeFileSync(file, JSON.stringify(result, null, 2) + '\n');
    const f = result.first_load.median;
    return `${PROJECTS} projects: first load ${f.cdp_transfer_bytes} bytes transferred ` +
        `(${f.decoded_bytes} decoded, ${loads[0].requests} requests, ${loads[0].gzip} gzip), totals at ` +
        `${Math.round(f.totals_ms)} ms, map at ${Math.round(f.map_ms)} ms, load event ${Math.round(f.load_ms)} ms; ` +
        `search catalogue ${catBytes} bytes in ${Math.round(catalogue)} ms (${entries} entries), a search ` +
        `${result.search.median_search_ms.toFixed(1)} ms (keystroke to frame ${Math.round(result.search.median_to_frame_ms)} ms ` +
        `with the 120 ms debounce); medians of ${RUNS} cold loads; ${file}`;
}
