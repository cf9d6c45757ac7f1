// What the browser test needs besides the browser: processes started and always killed
// (they also die with this process: setpriv --pdeathsig), bounded waits, free ports, plain
// HTTP GETs, PostgreSQL databases on the CTest fixture's cluster, and the consultations
// tally-gen makes, loaded with tallyctl and served by a tallyd on free ports.

import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

export const NAME = 'browser_dashboard';
export const SCALE = Math.max(1, Number(process.env.TALLY_TEST_TIME_SCALE) || 1);
export const log = (...a) => console.log(`[${NAME}]`, ...a);
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
// The flags known to work on this machine kind: without the background-networking ones,
// Chromium keeps trying hosts the closed network refuses.
export const CHROMIUM_ARGS = [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
];

export function env(name) {
    const v = process.env[name];
    if (!v) throw new Error(`environment variable ${name} is not set (run through ctest)`);
    return v;
}

// ---- processes -------------------------------------------------------------------------

export const children = new Set();
const haveSetpriv = fs.existsSync('/usr/bin/setpriv');

// Runs a program to completion (bounded); returns stdout, throws with stderr on failure.
export function run(prog, args, timeoutMs = 60000 * SCALE) {
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
export function start(name, prog, args, outPath, errPath) {
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

export function timeout(ms, what) {
    let t;
    const p = new Promise((_, reject) => {
        t = setTimeout(() => reject(new Error(`${what}: no result within ${ms} ms`)), ms);
    });
    p.cancel = () => clearTimeout(t);
    return p;
}

export async function waitExit(p, ms) {
    const t = timeout(ms, `${p.name} to exit`);
    try {
        return await Promise.race([p.exited, t]);
    } finally {
        t.cancel();
    }
}

export async function stop(p, graceMs) {
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

export function killAllNow() {
    for (const p of children) {
        try {
            p.child.kill('SIGKILL');
        } catch { /* already gone */ }
    }
}

export function tail(file, lines = 30) {
    try {
        const t = fs.readFileSync(file, 'utf8').trimEnd().split('\n');
        return t.slice(-lines).join('\n');
    } catch {
        return '(unreadable)';
    }
}

// ---- network ---------------------------------------------------------------------------

export function freePort() {
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

// GET without compression (the body as text); status -1 when nothing answered.
export function httpGet(port, p, ms = 5000) {
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

export async function getJSON(port, p) {
    const r = await httpGet(port, p);
    if (r.status !== 200) throw new Error(`GET ${p}: HTTP ${r.status} ${r.body.slice(0, 200)}`);
    return JSON.parse(r.body);
}

// ---- PostgreSQL ------------------------------------------------------------------------

export function psqlPath() {
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

// A fresh database `db` on the fixture's cluster; returns {conninfo, drop(), sql(q)}.
export function freshDatabase(pgDir, db) {
    const base = fs.readFileSync(path.join(pgDir, 'conninfo'), 'utf8').trim();
    const psql = psqlPath();
    run(psql, ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', base,
        '-c', `DROP DATABASE IF EXISTS ${db} WITH (FORCE)`, '-c', `CREATE DATABASE ${db}`]);
    const conninfo = withDbname(base, db);
    return {
        conninfo,
        drop: () => spawnSync(psql, ['-X', '-q', '-d', base,
            '-c', `DROP DATABASE IF EXISTS ${db} WITH (FORCE)`], { timeout: 30000 }),
        // One value (first column of the first row) of a query, as text.
        sql: (q) => run(psql, ['-X', '-q', '-At', '-v', 'ON_ERROR_STOP=1', '-d', conninfo, '-c', q]).trim(),
    };
}

// ---- tally-push and tally-gen's truth --------------------------------------------------

// "batches B votes V accepted A duplicate D rejected R", tally-push's last line.
export function pushSummary(outPath) {
    const m = [...fs.readFileSync(outPath, 'utf8').matchAll(
        /batches (\d+) votes (\d+) accepted (\d+) duplicate (\d+) rejected (\d+)/g)].pop();
    if (!m) throw new Error(`no summary line in ${outPath}`);
    return { batches: +m[1], votes: +m[2], accepted: +m[3], duplicate: +m[4], rejected: +m[5] };
}

export function truthSummary(file) {
    const t = {};
    for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
        const m = /^(\w+)\s+(\d+)/.exec(line);
        if (m) t[m[1]] = +m[2];
    }
    return t;
}

// tallyd on free ports against conninfo; start() waits until /readyz answers 200.
export async function tallydOn(bin, conninfo, dir, state, label = 'tallyd') {
    const port = await freePort();
    let httpPort = await freePort();
    while (httpPort === port) httpPort = await freePort();
    const logPath = path.join(dir, `${label}.log`);
    const d = {
        port, httpPort, logPath, proc: null,
        async start() {
            const p = start(label, bin.tallyd, ['--db', conninfo,
                '--listen', `127.0.0.1:${port}`, '--http', `127.0.0.1:${httpPort}`,
                '--checkpoint-ms', '100', '--log-level', 'info'], logPath, logPath);
            d.proc = p;
            state.tallyd = p;
            const readyBy = Date.now() + 30000 * SCALE;
            for (;;) {
                if (p.code !== null) throw new Error(`${label} exited (${p.code}) before it was ready`);
                if ((await httpGet(httpPort, '/readyz')).status === 200) return p;
                if (Date.now() > readyBy) throw new Error(`${label} not ready within 30 s`);
                await sleep(100);
            }
        },
        stop: (ms) => stop(d.proc, ms),
    };
    return d;
}

// tally-push of one collector's file (or, with sheets, its tally sheets); bounded.
export async function push(bin, dir, port, collector, file, { sheets = false, batch = 500 } = {}) {
    const tag = `${collector}${sheets ? '-sheets' : ''}-${path.basename(file, '.csv')}`;
    const out = path.join(dir, `push-${tag}.out`);
    const err = path.join(dir, `push-${tag}.err`);
    const args = ['--server', `127.0.0.1:${port}`, '--collector', collector,
        '--spool', path.join(dir, `spool-${collector}`)];
    if (sheets) args.push('--sheets', file);
    else args.push('--batch', String(batch), file);
    const p = start(`tally-push ${tag}`, bin.push, args, out, err);
    const code = await waitExit(p, 90000 * SCALE).catch((e) => {
        p.child.kill('SIGKILL');
        throw e;
    });
    if (code !== 0) throw new Error(`tally-push ${tag} exited ${code}:\n${tail(err, 10)}`);
    return pushSummary(out);
}
