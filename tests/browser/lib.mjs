// What the browser test needs besides the browser: plain HTTP GETs, PostgreSQL databases on
// the CTest fixture's cluster, and the consultations tally-gen makes, loaded with tallyctl
// and served by a tallyd on free ports; processes, waits and ports come from
// tests/support/node/common.mjs (shared with tests/nginx).

import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';

import {
    SCALE, env, freePort, killChildren, log, psqlPath, pushSummary, run, setName, sleep,
    start, stop, tail, timeout, waitExit, withDbname, children,
} from '../support/node/common.mjs';

export const NAME = 'browser_dashboard';
setName(NAME);
export {
    SCALE, env, freePort, log, psqlPath, pushSummary, run, sleep, start, stop, tail, timeout,
    waitExit, children,
};
export const killAllNow = killChildren;
// The flags known to work on this machine kind: without the background-networking ones,
// Chromium keeps trying hosts the closed network refuses.
export const CHROMIUM_ARGS = [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
];

// ---- network ---------------------------------------------------------------------------

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
