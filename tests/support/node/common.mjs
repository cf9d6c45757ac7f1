// What the node tests (tests/browser, tests/nginx) share, as tests/support does for the C
// ones: processes started and always killed (they also die with this process: setpriv
// --pdeathsig), bounded waits, free ports below the ephemeral range, the fixture's psql and
// tally-push's summary line. Node's standard library only.

import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

export const SCALE = Math.max(1, Number(process.env.TALLY_TEST_TIME_SCALE) || 1);
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

let prefix = '[test]';
// Every line this module and the test print starts with the test's name.
export function setName(name) {
    prefix = `[${name}]`;
}
export const log = (...a) => console.log(prefix, ...a);

export function env(name) {
    const v = process.env[name];
    if (!v) throw new Error(`environment variable ${name} is not set (run through ctest)`);
    return v;
}

// ---- processes -------------------------------------------------------------------------

export const children = new Set();
const haveSetpriv = fs.existsSync('/usr/bin/setpriv');

// Runs a program to completion (bounded); returns stdout, throws with its output on failure.
export function run(prog, args, timeoutMs = 60000 * SCALE) {
    const r = spawnSync(prog, args,
        { encoding: 'utf8', timeout: timeoutMs, killSignal: 'SIGKILL' });
    if (r.error) throw new Error(`${path.basename(prog)} ${args[0] || ''}: ${r.error.message}`);
    if (r.status !== 0) {
        const how = r.status ?? r.signal;
        throw new Error(`${path.basename(prog)} ${args.join(' ')} exited ${how}:\n` +
            `${(r.stderr || '').trim()}\n${(r.stdout || '').trim()}`);
    }
    return r.stdout;
}

// A program in the background, stdout/stderr appended to files; it (not its own children)
// dies with this process even if this process is SIGKILLed (CTest's timeout). Options: `as`,
// [uid, gid] to run it as (the death signal is set after the change of user, so it holds);
// `env`, its environment (default this process's).
export function start(name, prog, args, outPath, errPath, { as = null, env: childEnv } = {}) {
    const out = fs.openSync(outPath, 'a');
    const err = fs.openSync(errPath, 'a');
    const pre = haveSetpriv ? ['--pdeathsig', 'KILL'] : [];
    if (as) pre.push(`--reuid=${as[0]}`, `--regid=${as[1]}`, '--clear-groups');
    const [cmd, argv] = pre.length ? ['/usr/bin/setpriv', [...pre, '--', prog, ...args]]
        : [prog, args];
    const child = spawn(cmd, argv, { stdio: ['ignore', out, err], env: childEnv || process.env });
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

// signal, then SIGKILL after graceMs; resolves to the exit code.
export async function stop(p, graceMs, signal = 'SIGTERM') {
    if (p.code !== null) return p.code;
    p.child.kill(signal);
    try {
        return await waitExit(p, graceMs);
    } catch {
        log(`${p.name} did not exit within ${graceMs} ms of ${signal}; killing it`);
        p.child.kill('SIGKILL');
        return waitExit(p, 5000).catch(() => -1);
    }
}

// Every program started here and still running, SIGKILLed at once.
export function killChildren() {
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

// A free port below Linux's ephemeral range (32768-60999 by default), as tests/support does:
// a port bind(0) handed out and that was closed again is the kernel's to give the next
// outgoing connection, before the program it was meant for binds it. Never the same one
// twice in this process.
const given = new Set();
function tryPort(port) {
    return new Promise((resolve) => {
        const s = net.createServer();
        s.unref();
        s.on('error', () => resolve(false));
        s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
    });
}
export async function freePort() {
    for (let i = 0; i < 200; i++) {
        const port = 20000 + Math.floor(Math.random() * 12768);
        if (given.has(port)) continue;
        if (await tryPort(port)) {
            given.add(port);
            return port;
        }
    }
    throw new Error('no free port in 20000-32767');
}

// ---- PostgreSQL and tally-push ---------------------------------------------------------

export function psqlPath() {
    for (const p of ['/usr/lib/postgresql/15/bin/psql', '/usr/bin/psql']) {
        if (fs.existsSync(p)) return p;
    }
    return 'psql';
}

export function withDbname(conninfo, db) {
    return /\bdbname=\S+/.test(conninfo)
        ? conninfo.replace(/\bdbname=\S+/, `dbname=${db}`)
        : `${conninfo} dbname=${db}`;
}

// "batches B votes V accepted A duplicate D rejected R", tally-push's last line.
export function pushSummary(outPath) {
    const m = [...fs.readFileSync(outPath, 'utf8').matchAll(
        /batches (\d+) votes (\d+) accepted (\d+) duplicate (\d+) rejected (\d+)/g)].pop();
    if (!m) throw new Error(`no summary line in ${outPath}`);
    return { batches: +m[1], votes: +m[2], accepted: +m[3], duplicate: +m[4], rejected: +m[5] };
}
