#!/usr/bin/env node
// The dashboard in a real browser (issue 4, item 4): headless Chromium (Debian's
// /usr/bin/chromium, driven by playwright-core) loads tallyd's own page at /, sees the
// accepted total, and sees it change live, without a reload, when more votes arrive.
//
// Starts everything itself, as the C integration tests do (tests/support): a fresh database
// on the CTest fixture's throw-away PostgreSQL (TALLY_PG_DIR/conninfo), a small consultation
// from tally-gen, tallyctl migrate / load-registry / add-collector, tallyd on free ports,
// tally-push for collector c0, the browser, then tally-push for c1. Saves dashboard.png
// (1280 px wide, full page) and dashboard-phone.png (390x844) in TALLY_BROWSER_OUT or
// TALLY_BIN_DIR. Every wait is bounded; every process it started is killed at the end,
// on failure too (children also die with this process: setpriv --pdeathsig).
//
// Environment (set by tests/browser/CMakeLists.txt): TALLYD, TALLYCTL, TALLY_PUSH,
// TALLY_GEN, TALLY_PG_DIR, TALLY_BIN_DIR, TALLY_TEST_TIME_SCALE; optional CHROMIUM
// (default /usr/bin/chromium), TALLY_BROWSER_OUT, TALLY_KEEP=1 (keep the database).
// Prints one line `browser_dashboard: PASS ...` or `browser_dashboard: FAIL: ...`;
// exits 0, 1 (failure) or 77 (cannot run here: CTest reports it as skipped).

import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

const NAME = 'browser_dashboard';
const SCALE = Math.max(1, Number(process.env.TALLY_TEST_TIME_SCALE) || 1);
const DEADLINE_MS = 150000 * SCALE; // under CTest's TIMEOUT (180 s, scaled the same way)
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
// The flags known to work on this machine kind: without the background-networking ones,
// Chromium keeps trying hosts the closed network refuses.
const CHROMIUM_ARGS = [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
];

const log = (...a) => console.log(`[${NAME}]`, ...a);

function env(name) {
    const v = process.env[name];
    if (!v) throw new Error(`environment variable ${name} is not set (run through ctest)`);
    return v;
}

// ---- processes -------------------------------------------------------------------------

const children = new Set();
const haveSetpriv = fs.existsSync('/usr/bin/setpriv');

// Runs a program to completion (bounded); returns stdout, throws with stderr on failure.
function run(prog, args, timeoutMs = 60000 * SCALE) {
    const r = spawnSync(prog, args, { encoding: 'utf8', timeout: timeoutMs, killSignal: 'SIGKILL' });
    if (r.error) throw new Error(`${path.basename(prog)} ${args[0] || ''}: ${r.error.message}`);
    if (r.status !== 0) {
        throw new Error(`${path.basename(prog)} ${args.join(' ')} exited ${r.status ?? r.signal}:\n` +
            `${(r.stderr || '').trim()}`);
    }
    return r.stdout;
}

// Starts a program in the background with stdout/stderr appended to files. It dies with
// this process even if this process is SIGKILLed (CTest's timeout).
function start(name, prog, args, outPath, errPath) {
    const out = fs.openSync(outPath, 'a');
    const err = fs.openSync(errPath, 'a');
    const [cmd, argv] = haveSetpriv
        ? ['/usr/bin/setpriv', ['--pdeathsig', 'KILL', '--', prog, ...args]]
        : [prog, args];
    const child = spawn(cmd, argv, { stdio: ['ignore', out, err] });
    fs.closeSync(out);
    fs.closeSync(err);
    const p = { name, child, outPath, errPath, code: null };
    p.exited = new Promise((resolve) => {
        child.on('exit', (code, signal) => {
            p.code = code ?? 128 + (os.constants.signals[signal] || 0);
            children.delete(p);
            resolve(p.code);
        });
        child.on('error', (e) => {
            p.code = 127;
            children.delete(p);
            log(`${name}: ${e.message}`);
            resolve(127);
        });
    });
    children.add(p);
    return p;
}

function timeout(ms, what) {
    let t;
    const p = new Promise((_, reject) => {
        t = setTimeout(() => reject(new Error(`${what}: no result within ${ms} ms`)), ms);
    });
    p.cancel = () => clearTimeout(t);
    return p;
}

async function waitExit(p, ms) {
    const t = timeout(ms, `${p.name} to exit`);
    try {
        return await Promise.race([p.exited, t]);
    } finally {
        t.cancel();
    }
}

async function stop(p, graceMs) {
    if (p.code !== null) return p.code;
    p.child.kill('SIGTERM');
    try {
        return await waitExit(p, graceMs);
    } catch {
        log(`${p.name} did not exit within ${graceMs} ms of SIGTERM; killing it`);
        p.child.kill('SIGKILL');
        return waitExit(p, 5000).catch(() => -1);
    }
}

function killAllNow() {
    for (const p of children) {
        try {
            p.child.kill('SIGKILL');
        } catch { /* already gone */ }
    }
}
process.on('exit', killAllNow);

function tail(file, lines = 30) {
    try {
        const t = fs.readFileSync(file, 'utf8').trimEnd().split('\n');
        return t.slice(-lines).join('\n');
    } catch {
        return '(unreadable)';
    }
}

// ---- network ---------------------------------------------------------------------------

function freePort() {
    return new Promise((resolve, reject) => {
        const s = net.createServer();
        s.unref();
        s.on('error', reject);
        s.listen(0, '127.0.0.1', () => {
            const { port } = s.address();
            s.close(() => resolve(port));
        });
    });
}

function httpGet(port, p, ms = 3000) {
    return new Promise((resolve) => {
        const req = http.get({ host: '127.0.0.1', port, path: p, timeout: ms }, (res) => {
            let body = '';
            res.setEncoding('utf8');
            res.on('data', (c) => { body += c; });
            res.on('end', () => resolve({ status: res.statusCode, body, headers: res.headers }));
        });
        req.on('timeout', () => req.destroy(new Error('timeout')));
        req.on('error', () => resolve({ status: -1, body: '' }));
    });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---- the pieces ------------------------------------------------------------------------

function psqlPath() {
    for (const p of ['/usr/lib/postgresql/15/bin/psql', '/usr/bin/psql']) {
        if (fs.existsSync(p)) return p;
    }
    return 'psql';
}

function withDbname(conninfo, db) {
    return /\bdbname=\S+/.test(conninfo)
        ? conninfo.replace(/\bdbname=\S+/, `dbname=${db}`)
        : `${conninfo} dbname=${db}`;
}

// "batches B votes V accepted A duplicate D rejected R", tally-push's last line.
function pushSummary(outPath) {
    const m = [...fs.readFileSync(outPath, 'utf8').matchAll(
        /batches (\d+) votes (\d+) accepted (\d+) duplicate (\d+) rejected (\d+)/g)].pop();
    if (!m) throw new Error(`no summary line in ${outPath}`);
    return { batches: +m[1], votes: +m[2], accepted: +m[3], duplicate: +m[4], rejected: +m[5] };
}

function truthSummary(file) {
    const t = {};
    for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
        const m = /^(\w+)\s+(\d+)/.exec(line);
        if (m) t[m[1]] = +m[2];
    }
    return t;
}

// ---- the test --------------------------------------------------------------------------

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

    // A small consultation: 4 states, 12 circuits, 72 projects; two collectors.
    const reg = path.join(dir, 'registry.csv');
    const votes = path.join(dir, 'votes');
    run(bin.gen, ['registry', '--out', reg, '--projects', '72', '--circuits', '12',
        '--states', '4', '--seed', '41']);
    run(bin.gen, ['votes', '--registry', reg, '--collectors', '2', '--votes', '6000',
        '--out-dir', votes, '--repeat-rate', '0.02', '--unknown-rate', '0.005',
        '--seed', '41', '--quiet']);
    const truth = truthSummary(path.join(votes, 'truth-summary.txt'));

    // A fresh database on the fixture's PostgreSQL.
    const base = fs.readFileSync(path.join(pgDir, 'conninfo'), 'utf8').trim();
    const db = 'it_browser';
    const psql = psqlPath();
    run(psql, ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', base,
        '-c', `DROP DATABASE IF EXISTS ${db} WITH (FORCE)`, '-c', `CREATE DATABASE ${db}`]);
    state.dropDb = () => spawnSync(psql, ['-X', '-q', '-d', base,
        '-c', `DROP DATABASE IF EXISTS ${db} WITH (FORCE)`], { timeout: 30000 });
    const conninfo = withDbname(base, db);
    run(bin.ctl, ['--db', conninfo, 'migrate']);
    run(bin.ctl, ['--db', conninfo, 'load-registry', reg]);
    for (const c of ['c0', 'c1']) run(bin.ctl, ['--db', conninfo, 'add-collector', c]);
    // One voting table per circuit, none reported (the votes name no table): every card
    // shows its reporting progress and "por decidir" (docs/api.md).
    const csvFields = (line) => [...line.matchAll(/(?:^|,)("(?:[^"]|"")*"|[^,]*)/g)]
        .map((m) => m[1]);
    const circuitIds = [...new Set(fs.readFileSync(reg, 'utf8').trim().split('\n').slice(1)
        .map((l) => csvFields(l.replace(/\r$/, ''))[2]))];
    const tablesCsv = path.join(dir, 'tables.csv');
    fs.writeFileSync(tablesCsv, 'table_id,circuit_id,electors\n' +
        circuitIds.map((c) => `T${c},${c},1000\n`).join(''));
    run(bin.ctl, ['--db', conninfo, 'load-tables', tablesCsv]);

    // tallyd on free ports; ready once recovered with PostgreSQL reachable.
    const port = await freePort();
    let httpPort = await freePort();
    while (httpPort === port) httpPort = await freePort();
    const tallydLog = path.join(dir, 'tallyd.log');
    async function startTallyd() {
        const d = start('tallyd', bin.tallyd, ['--db', conninfo,
            '--listen', `127.0.0.1:${port}`, '--http', `127.0.0.1:${httpPort}`,
            '--checkpoint-ms', '100', '--log-level', 'info'], tallydLog, tallydLog);
        state.tallyd = d;
        const readyBy = Date.now() + 30000 * SCALE;
        for (;;) {
            if (d.code !== null) throw new Error(`tallyd exited (${d.code}) before it was ready`);
            if ((await httpGet(httpPort, '/readyz')).status === 200) return d;
            if (Date.now() > readyBy) throw new Error('tallyd not ready within 30 s');
            await sleep(100);
        }
    }
    let tallyd = await startTallyd();
    const index = await httpGet(httpPort, '/');
    assert.equal(index.status, 200, 'GET / answers 200');
    assert.match(String(index.headers['content-type']), /^text\/html/, 'GET / is HTML');
    assert.match(index.body, /id="total-accepted"/, 'GET / is the dashboard');

    async function push(i) {
        const out = path.join(dir, `push-c${i}.out`);
        const err = path.join(dir, `push-c${i}.err`);
        const p = start(`tally-push c${i}`, bin.push, ['--server', `127.0.0.1:${port}`,
            '--collector', `c${i}`, '--spool', path.join(dir, `spool-c${i}`),
            '--batch', '500', path.join(votes, `collector-${i}.csv`)], out, err);
        const code = await waitExit(p, 60000 * SCALE).catch((e) => {
            p.child.kill('SIGKILL');
            throw e;
        });
        if (code !== 0) throw new Error(`tally-push c${i} exited ${code}:\n${tail(err, 10)}`);
        return pushSummary(out);
    }

    // Collector c0's votes, all durable before the page opens.
    const first = await push(0);
    log(`c0 pushed: ${JSON.stringify(first)}`);

    const browser = await chromium.launch({
        executablePath: CHROMIUM, args: CHROMIUM_ARGS, headless: true, timeout: 30000 * SCALE,
    });
    state.browser = browser;
    const pageErrors = [];
    const watch = (page, label) => {
        page.on('pageerror', (e) => pageErrors.push(`${label}: ${e.message}`));
        page.on('console', (m) => {
            if (m.type() === 'error') log(`${label} console error: ${m.text()}`);
        });
    };

    const ctx = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const page = await ctx.newPage();
    state.page = page;
    watch(page, 'desktop');
    let navigations = 0;
    page.on('framenavigated', (f) => {
        if (f === page.mainFrame()) navigations++;
    });
    const url = `http://127.0.0.1:${httpPort}/`;
    await page.goto(url, { waitUntil: 'load', timeout: 30000 * SCALE });

    const readTotal = () => page.evaluate(() => {
        const el = document.getElementById('total-accepted');
        return el ? el.textContent.replace(/\D/g, '') : null;
    });
    const waitTotal = (want, what) => page.waitForFunction((w) => {
        const el = document.getElementById('total-accepted');
        return el && el.textContent.replace(/\D/g, '') === String(w);
    }, want, { timeout: 20000 * SCALE, polling: 100 }).catch(async () => {
        throw new Error(`${what}: #total-accepted shows ${await readTotal()}, want ${want}`);
    });

    await waitTotal(first.accepted, 'after c0');
    log(`page shows accepted ${first.accepted} after c0`);
    // The stream is open (the indicator says live) before the second collector pushes.
    await page.waitForSelector('#live[data-state="live"]', { timeout: 15000 * SCALE });
    const cpBefore = Number(await page.textContent('#checkpoint-id'));
    await page.evaluate(() => { window.__sameDocument = true; });
    const navBefore = navigations;

    // Collector c1's votes arrive while the page is open: the total must follow, live.
    const second = await push(1);
    log(`c1 pushed: ${JSON.stringify(second)}`);
    const total = first.accepted + second.accepted;
    assert.equal(total, truth.accepted, 'the two collectors together accept what tally-gen says');
    await waitTotal(total, 'after c1 (live, no reload)');
    assert.equal(navigations, navBefore, 'the page did not navigate');
    assert.equal(await page.evaluate(() => window.__sameDocument === true), true,
        'the page was not reloaded');
    const cpAfter = Number(await page.textContent('#checkpoint-id'));
    assert.ok(cpAfter > cpBefore, `checkpoint id advanced (${cpBefore} -> ${cpAfter})`);
    log(`page shows accepted ${total} live, checkpoint ${cpBefore} -> ${cpAfter}`);

    // The page agrees with the API.
    const summary = JSON.parse((await httpGet(httpPort, '/v1/summary')).body);
    assert.equal(summary.totals.accepted, total, '/v1/summary totals.accepted');
    const shownDup = await page.evaluate(() =>
        document.getElementById('total-duplicate').textContent.replace(/\D/g, ''));
    assert.equal(shownDup, String(summary.totals.duplicate), 'duplicates shown');
    const circuits = await page.locator('#circuits details.circuit').count();
    assert.ok(circuits > 0, 'circuits of the selected state are listed');
    const winners = await page.locator('#circuits .badge-win').count();
    assert.ok(winners > 0, 'winners are marked');

    // The circuits re-ranked in the page from live events agree with the server's ranking.
    const stateName = await page.inputValue('#state-select');
    const results = JSON.parse((await httpGet(httpPort,
        `/v1/results?state=${encodeURIComponent(stateName)}`)).body);
    const rows = await page.evaluate(() => [...document.querySelectorAll('#circuits tr[data-id]')]
        .map((tr) => ({
            id: Number(tr.dataset.id),
            rank: Number(tr.querySelector('.col-rank').textContent),
            votes: Number(tr.querySelector('.col-votes .num').textContent),
            winner: !!tr.querySelector('.badge-win'),
            tie: !!tr.querySelector('.badge-tie'),
        })));
    const byId = new Map(results.projects.map((p) => [p.id, p]));
    assert.equal(rows.length, results.projects.length, `every project of ${stateName} is listed`);
    for (const r of rows) {
        const p = byId.get(r.id);
        assert.ok(p, `project ${r.id} is in /v1/results?state=`);
        // A tie among projects nobody voted for yet is not shown as news.
        assert.deepEqual(r, { id: p.id, rank: p.rank, votes: p.votes, winner: p.winner,
            tie: p.tie && r.tie }, `project ${r.id} as the API ranks it`);
        if (p.tie && p.votes > 0) assert.ok(r.tie, `project ${r.id}'s tie is shown`);
    }

    // Reporting progress: national and per circuit card.
    await page.waitForFunction((n) => {
        const el = document.getElementById('tables-progress');
        return el && !el.hidden && el.textContent.includes(`mesas reportadas 0/${n}`);
    }, circuitIds.length, { timeout: 10000 * SCALE, polling: 100 }).catch(async () => {
        throw new Error('national progress not shown: ' +
            await page.evaluate(() => document.getElementById('tables-progress')?.outerHTML));
    });
    const cardProgress = await page.evaluate(() => [...document.querySelectorAll(
        '#circuits details.circuit')].map((d) => ({
        progress: d.querySelector('.c-progress')?.textContent || '',
        open: !!d.querySelector('.badge-open'),
        decided: !!d.querySelector('.badge-decided'),
    })));
    for (const c of cardProgress) {
        assert.equal(c.progress, 'mesas reportadas 0/1', 'a circuit card shows its tables');
        assert.ok(c.open && !c.decided, 'a circuit with unreported tables is "por decidir"');
    }

    const shot = path.join(outDir, 'dashboard.png');
    await page.screenshot({ path: shot, fullPage: true, animations: 'disabled' });
    state.shots.push(shot);

    // A phone: 390x844, no sideways scrolling.
    const phone = await browser.newContext({
        viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true,
    });
    const ppage = await phone.newPage();
    watch(ppage, 'phone');
    await ppage.goto(url, { waitUntil: 'load', timeout: 30000 * SCALE });
    await ppage.waitForFunction((w) => {
        const el = document.getElementById('total-accepted');
        return el && el.textContent.replace(/\D/g, '') === String(w);
    }, total, { timeout: 20000 * SCALE, polling: 100 });
    await ppage.waitForSelector('#circuits details.circuit', { timeout: 10000 * SCALE });
    const overflow = await ppage.evaluate(() => document.documentElement.scrollWidth);
    assert.ok(overflow <= 390, `no horizontal scrolling on a phone (scrollWidth ${overflow})`);
    const pshot = path.join(outDir, 'dashboard-phone.png');
    await ppage.screenshot({ path: pshot, animations: 'disabled' });
    state.shots.push(pshot);

    await phone.close();

    // tallyd restarts: the indicator shows the break, then the page reconnects by itself
    // and still shows the durable total.
    assert.equal(await stop(tallyd, 15000 * SCALE), 0, 'tallyd stops cleanly on SIGTERM');
    await page.waitForSelector('#live:not([data-state="live"])', { timeout: 15000 * SCALE });
    const during = await page.textContent('#live-text');
    tallyd = await startTallyd();
    await page.waitForSelector('#live[data-state="live"]', { timeout: 30000 * SCALE });
    await waitTotal(total, 'after tallyd restarted');
    log(`tallyd restarted: the page showed "${during.trim()}", then live again`);

    // The embargo, set as `tallyctl embargo on` sets it: once tallyd applies it the page
    // shows the notice and the progress in place of the results (the API sends no counts);
    // lifted, the results come back. The header says "Provisional" (not certified).
    assert.equal((await page.textContent('#status')).trim(), 'Provisional', 'status shown');
    const embargo = (on) => run(psql, ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', conninfo, '-c',
        `UPDATE consultation_state SET embargo = ${on}, embargo_applied = NULL`]);
    embargo(true);
    await page.waitForFunction(() => !document.getElementById('embargo').hidden &&
        document.getElementById('results').hidden, null,
    { timeout: 15000 * SCALE, polling: 100 }).catch(async () => {
        throw new Error('embargo not shown: ' +
            await page.evaluate(() => document.getElementById('embargo')?.outerHTML));
    });
    assert.match(await page.textContent('#embargo'), /Resultados bajo embargo/);
    assert.ok(await page.isVisible('#tables-progress'), 'the progress stays under embargo');
    const eshot = path.join(outDir, 'dashboard-embargo.png');
    await page.screenshot({ path: eshot, fullPage: true, animations: 'disabled' });
    state.shots.push(eshot);
    embargo(false);
    await page.waitForFunction(() => document.getElementById('embargo').hidden &&
        !document.getElementById('results').hidden &&
        document.querySelectorAll('#circuits details.circuit').length > 0, null,
    { timeout: 15000 * SCALE, polling: 100 });
    await waitTotal(total, 'after the embargo was lifted');
    log('embargo on: notice and progress only; off: the results again');

    assert.deepEqual(pageErrors, [], 'no script errors on the page');
    state.summary = `accepted ${first.accepted} -> ${total} live, checkpoint ${cpBefore} -> ` +
        `${cpAfter}, reconnected after a tallyd restart; screenshots ${state.shots.join(', ')}`;

    // The browser first, so that tallyd's stop does not cut open event streams.
    await browser.close();
    state.browser = null;
    assert.equal(await stop(tallyd, 15000 * SCALE), 0, 'tallyd stops cleanly on SIGTERM');
}

async function cleanup(state) {
    if (state.browser) {
        await Promise.race([state.browser.close().catch(() => {}), sleep(10000)]);
    }
    for (const p of [...children]) await stop(p, 10000);
    if (state.dropDb && !process.env.TALLY_KEEP) state.dropDb();
}

const state = { shots: [] };
const deadline = setTimeout(async () => {
    console.log(`${NAME}: FAIL: deadline of ${DEADLINE_MS / 1000} s passed`);
    if (state.tallyd) console.log(`---- tallyd log\n${tail(state.tallyd.errPath)}`);
    killAllNow();
    process.exit(1);
}, DEADLINE_MS);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
    process.on(sig, () => {
        console.log(`${NAME}: FAIL: interrupted by ${sig}`);
        killAllNow();
        process.exit(1);
    });
}

let status = 0;
try {
    await main(state);
    if (state.skip) {
        console.log(`${NAME}: SKIP: ${state.skip}`);
        status = 77;
    } else {
        console.log(`${NAME}: PASS: ${state.summary}`);
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
            'live-text', 'alert'].map((id) => {
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
