// What tests/nginx/nginx_proxy.test.mjs needs besides its checks: nginx's workers killed
// too, GETs that keep the raw body and headers, a Server-Sent Events reader, and the
// shipped nginx file with its addresses substituted; processes, waits and ports come from
// tests/support/node/common.mjs (shared with tests/browser). Node's standard library only.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import zlib from 'node:zlib';

import {
    SCALE, children, env, freePort, killChildren, log, psqlPath, pushSummary, run, setName,
    sleep, start as startProcess, stop, tail, timeout, waitExit, withDbname,
} from '../support/node/common.mjs';

export const NAME = 'nginx_proxy';
setName(NAME);
export {
    SCALE, children, env, freePort, log, psqlPath, pushSummary, run, sleep, stop, tail, timeout,
    waitExit, withDbname,
};

// A program in the background (tests/support/node/common.mjs), never with NGINX in its
// environment: nginx would take it for inherited listening sockets.
export function start(name, prog, args, outPath, errPath, as = null) {
    const childEnv = { ...process.env };
    delete childEnv.NGINX;
    return startProcess(name, prog, args, outPath, errPath, { as, env: childEnv });
}

// nginx's workers (and its cache manager and loader) are the master's children, not ours:
// they are gone once the master has stopped them (SIGTERM). On a hard exit the master gets
// SIGKILL and its children would live on, so they are noted once nginx runs and killed
// here by pid (each checked to still be an nginx process first).
let nginxChildren = [];
export function noteChildrenOf(ppid) {
    nginxChildren = [...new Set([...nginxChildren, ...childPids(ppid)])];
}
export function killAllNow() {
    for (const pid of nginxChildren) {
        try {
            if (fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').startsWith('nginx: ')) {
                process.kill(pid, 'SIGKILL');
            }
        } catch { /* gone */ }
    }
    killChildren();
}
process.on('exit', killAllNow);

export function childPids(ppid) {
    const out = [];
    for (const d of fs.readdirSync('/proc')) {
        if (!/^\d+$/.test(d)) continue;
        try {
            const stat = fs.readFileSync(`/proc/${d}/stat`, 'utf8');
            const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
            if (Number(fields[1]) === ppid) out.push(Number(d));
        } catch { /* exited meanwhile */ }
    }
    return out;
}

const failed = (error) => ({ status: -1, headers: {}, body: Buffer.alloc(0), error });

// One GET on a connection of its own; the body as a Buffer (not decoded). Never throws:
// status -1 and `error` on a connection failure or timeout.
export function get(port, p, { headers = {}, localAddress, ms = 5000 * SCALE } = {}) {
    return new Promise((resolve) => {
        const req = http.get({
            host: '127.0.0.1', port, path: p, headers, localAddress, agent: false, timeout: ms,
        }, (res) => {
            const chunks = [];
            res.on('data', (c) => chunks.push(c));
            res.on('end', () => resolve({
                status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks),
            }));
            res.on('error', (e) => resolve(failed(e)));
        });
        req.on('timeout', () => req.destroy(new Error(`GET ${p}: timeout after ${ms} ms`)));
        req.on('error', (e) => resolve(failed(e)));
    });
}

export const json = (r) => JSON.parse(r.body.toString('utf8'));
// The body as the reader's client shows it: decompressed when it came gzipped.
export const plainOf = (r) =>
    (r.headers['content-encoding'] === 'gzip' ? zlib.gunzipSync(r.body) : r.body);
export const cacheStatus = (r) => r.headers['x-cache-status'];

// tallyd's tally_http_requests_total, read directly (the read itself counts one).
export async function tallydRequests(port) {
    const r = await get(port, '/metrics');
    assert.equal(r.status, 200, 'tallyd /metrics');
    const m = /^tally_http_requests_total (\d+)$/m.exec(r.body.toString('utf8'));
    assert.ok(m, 'tally_http_requests_total in /metrics');
    return Number(m[1]);
}

// A Server-Sent Events reader: events as {id, event, data, at} in arrival order.
export function sse(port, { lastEventId } = {}) {
    const s = { events: [], status: null, headers: null, closed: false, req: null };
    const headers = { Accept: 'text/event-stream' };
    if (lastEventId) headers['Last-Event-ID'] = lastEventId;
    let buf = '';
    s.ready = new Promise((resolve) => {
        s.req = http.get({ host: '127.0.0.1', port, path: '/v1/events', headers, agent: false },
            (res) => {
                s.status = res.statusCode;
                s.headers = res.headers;
                res.setEncoding('utf8');
                res.on('data', (c) => {
                    buf += c;
                    let i;
                    while ((i = buf.indexOf('\n\n')) >= 0) {
                        const block = buf.slice(0, i);
                        buf = buf.slice(i + 2);
                        const ev = { id: null, event: 'message', data: '', at: Date.now() };
                        let any = false;
                        for (const line of block.split('\n')) {
                            const m = /^([a-z]+): ?(.*)$/.exec(line);
                            if (!m) continue; // a ": keepalive" comment
                            if (m[1] === 'id') ev.id = m[2];
                            else if (m[1] === 'event') ev.event = m[2];
                            else if (m[1] === 'data') ev.data += m[2];
                            else continue; // retry:
                            any = true;
                        }
                        if (any && ev.data) s.events.push(ev);
                    }
                });
                res.on('end', () => { s.closed = true; });
                res.on('error', () => { s.closed = true; });
                resolve();
            });
        s.req.on('error', () => {
            s.closed = true;
            resolve();
        });
    });
    s.close = () => s.req.destroy();
    s.waitFor = async (pred, ms, what) => {
        const by = Date.now() + ms;
        for (;;) {
            const ev = s.events.find(pred);
            if (ev) return ev;
            if (s.closed) throw new Error(`${what}: the stream closed`);
            if (Date.now() > by) {
                throw new Error(`${what}: not within ${ms} ms (events so far: ` +
                    `${s.events.map((e) => `${e.event}#${e.id}`).join(' ') || 'none'})`);
            }
            await sleep(10);
        }
    };
    return s;
}

export const eventCheckpoint = (id) => Number(String(id).split('-')[0]);

// ---- the pieces ------------------------------------------------------------------------

export function findNginx() {
    const given = process.env.TALLY_NGINX;
    if (given) return fs.existsSync(given) ? given : null;
    for (const d of [...(process.env.PATH || '').split(':'), '/usr/sbin', '/usr/local/sbin']) {
        const p = path.join(d || '.', 'nginx');
        try {
            fs.accessSync(p, fs.constants.X_OK);
            return p;
        } catch { /* next */ }
    }
    return null;
}

// The shipped file with its two EDIT places and the cache path replaced; each must be found
// exactly once, so a change to the shipped file that the test no longer follows fails here.
export function substituteConfig(text, { upstream, listen, cacheDir }) {
    const subs = [
        [/^(\s*server\s+)127\.0\.0\.1:7480;/m, `$1${upstream};`, 'upstream server 127.0.0.1:7480'],
        [/^(\s*listen\s+)80;/m, `$1${listen};`, 'listen 80'],
        [/^(proxy_cache_path\s+)\/var\/cache\/nginx\/tallyd(\s)/m, `$1${cacheDir}$2`,
            'proxy_cache_path /var/cache/nginx/tallyd'],
    ];
    for (const [re, to, what] of subs) {
        const all = new RegExp(re.source, 'gm');
        const n = (text.match(all) || []).length;
        if (n !== 1) {
            throw new Error(`deploy/nginx/tallyd.conf: "${what}" found ${n} times, want 1`);
        }
        text = text.replace(re, to);
    }
    return text;
}

// Two answers hold the same snapshot: equal bytes, or equal but for the head's "time".
// tallyd publishes a checkpoint again when a collector connects or leaves (the presence
// shown by /v1/summary and /v1/collectors), with the same id and a new time, so two answers
// of one checkpoint fetched a moment apart may differ in that field alone.
export function sameSnapshot(a, b) {
    if (a.equals(b)) return true;
    const strip = (buf) => {
        const d = JSON.parse(buf.toString('utf8'));
        delete d.time;
        return d;
    };
    try {
        assert.deepEqual(strip(a), strip(b));
        return true;
    } catch {
        return false;
    }
}

// Where two bodies first differ, for a failure message.
export function firstDifference(a, b) {
    let i = 0;
    while (i < a.length && i < b.length && a[i] === b[i]) i++;
    const at = (x) => JSON.stringify(x.subarray(Math.max(0, i - 40), i + 40).toString('utf8'));
    return `${a.length} and ${b.length} B, first difference at byte ${i}: ${at(a)} vs ${at(b)}`;
}

// Whether tallyd's Cache-Control lets a shared cache keep the answer (what nginx checks).
export function cacheableByTallyd(r) {
    const cc = String(r.headers['cache-control'] || '');
    if (/no-cache|no-store|private/i.test(cc)) return false;
    return /(^|[ ,])(s-maxage|max-age)=[1-9]/i.test(cc);
}
