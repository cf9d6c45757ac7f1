#!/usr/bin/env node
// deploy/nginx/tallyd.conf in front of a real tallyd: Debian's nginx, run unprivileged and in
// the foreground on free 127.0.0.1 ports, with a generated top-level nginx.conf that includes
// the shipped file after substituting tallyd's address, the listen address and the cache path
// (nothing else is changed: the test fails when those lines cannot be found exactly once).
//
// Starts, as the C integration tests do: a fresh database on the CTest fixture's PostgreSQL
// (TALLY_PG_DIR/conninfo), a small consultation from tally-gen, tallyctl migrate /
// load-registry / add-collector, tallyd on free ports, tally-push for collector c0, nginx;
// later tally-push for c1. Checks, through nginx against tallyd's direct answers:
//   - /v1/results equals tallyd's; a repeat within the second is a HIT (X-Cache-Status),
//     a browser's If-None-Match gets nginx's 304;
//   - 50 concurrent identical requests cost tallyd one request (tally_http_requests_total);
//   - Accept-Encoding: gzip gets tallyd's gzip variant, which decompresses to the plain
//     body, and plain readers never get it (variants apart, browser strings normalised);
//   - after c1's votes the documents through nginx change within about 2 s;
//   - /v1/events delivers a checkpoint event as promptly as tallyd's own stream (unbuffered)
//     and resumes with Last-Event-ID; it, receipts, /v1/collectors, health answers and a 404
//     are not cached;
//   - /metrics answers from 127.0.0.1 and is refused (403) from 127.0.0.2;
//   - once nothing changes, an expired copy is refreshed with its ETag and tallyd says 304.
// What depends on tallyd's answers (cacheable documents, gzip) is asserted from what tallyd
// itself sends: a document tallyd marks no-cache must not be cached by nginx either, and the
// log says so. Every wait is bounded; every process is killed at the end, also on failure
// or a signal; tallyd and nginx's master also die with this process (setpriv --pdeathsig),
// and nginx's workers are killed by pid (a SIGKILL of this process leaves them to whoever
// sent it: CTest's timeout kills the whole process tree).
//
// Environment (tests/nginx/CMakeLists.txt): TALLYD, TALLYCTL, TALLY_PUSH, TALLY_GEN,
// TALLY_PG_DIR, TALLY_BIN_DIR, TALLY_SRC_DIR, TALLY_TEST_TIME_SCALE; optional TALLY_NGINX
// (default: nginx on PATH or /usr/sbin/nginx), TALLY_KEEP=1 (keep the database and files).
// (Not NGINX: nginx itself reads that variable, as sockets inherited across an upgrade.)
// Prints `nginx_proxy: PASS ...`, `nginx_proxy: SKIP: ...` (exit 77) or `nginx_proxy: FAIL: ...`.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';

import {
    NAME, SCALE, cacheStatus, cacheableByTallyd, children, env, eventCheckpoint, findNginx,
    firstDifference, freePort, get, json, killAllNow, log, noteChildrenOf, plainOf, psqlPath,
    pushSummary, run, sameSnapshot, sleep, sse, start, stop, substituteConfig, tail,
    tallydRequests, waitExit, withDbname,
} from './support.mjs';

const DEADLINE_MS = 60000 * SCALE; // under CTest's TIMEOUT (90 s, scaled the same way)

// ---- the test --------------------------------------------------------------------------

async function main(state) {
    const nginx = findNginx();
    if (!nginx) {
        state.skip = 'nginx not installed (apt-get install nginx, or set TALLY_NGINX=PATH)';
        return;
    }
    const bin = {
        tallyd: env('TALLYD'), ctl: env('TALLYCTL'), push: env('TALLY_PUSH'), gen: env('TALLY_GEN'),
    };
    const srcDir = env('TALLY_SRC_DIR');
    const pgDir = env('TALLY_PG_DIR');
    const shipped = path.join(srcDir, 'deploy', 'nginx', 'tallyd.conf');

    const dir = path.join(env('TALLY_BIN_DIR'), 'itest', 'nginx');
    fs.rmSync(dir, { recursive: true, force: true });
    fs.mkdirSync(dir, { recursive: true });
    state.dir = dir;

    // nginx's own directory (prefix, cache, temp files, logs). As root, nginx runs as
    // nobody: the directory is its, and every parent must let it through.
    let as = null;
    let ngxDir = path.join(dir, 'nginx');
    if (process.getuid() === 0) {
        const pw = fs.readFileSync('/etc/passwd', 'utf8').split('\n')
            .map((l) => l.split(':')).find((f) => f[0] === 'nobody');
        if (!pw) throw new Error('running as root, but there is no user nobody to run nginx as');
        as = [Number(pw[2]), Number(pw[3])];
        let searchable = true;
        for (let d = dir; d !== path.dirname(d); d = path.dirname(d)) {
            if ((fs.statSync(d).mode & 0o001) === 0) searchable = false;
        }
        if (!searchable) {
            ngxDir = fs.mkdtempSync(path.join(os.tmpdir(), 'tally-nginx-'));
            state.tmpNgx = ngxDir;
            log(`a parent of ${dir} is closed to nobody: nginx's files are in ${ngxDir}`);
        }
    }
    fs.mkdirSync(path.join(ngxDir, 'tmp'), { recursive: true });
    if (as) {
        for (const d of [ngxDir, path.join(ngxDir, 'tmp')]) fs.chownSync(d, as[0], as[1]);
    }

    // A small consultation: 300 projects in 40 circuits of 6 states; two collectors.
    const reg = path.join(dir, 'registry.csv');
    const votes = path.join(dir, 'votes');
    run(bin.gen, ['registry', '--out', reg, '--projects', '300', '--circuits', '40',
        '--states', '6', '--seed', '13']);
    run(bin.gen, ['votes', '--registry', reg, '--collectors', '2', '--votes', '8000',
        '--out-dir', votes, '--seed', '13', '--quiet']);

    const base = fs.readFileSync(path.join(pgDir, 'conninfo'), 'utf8').trim();
    const db = 'it_nginx';
    const psql = psqlPath();
    run(psql, ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', base,
        '-c', `DROP DATABASE IF EXISTS ${db} WITH (FORCE)`, '-c', `CREATE DATABASE ${db}`]);
    state.dropDb = () => spawnSync(psql, ['-X', '-q', '-d', base,
        '-c', `DROP DATABASE IF EXISTS ${db} WITH (FORCE)`], { timeout: 30000 });
    const conninfo = withDbname(base, db);
    run(bin.ctl, ['--db', conninfo, 'migrate']);
    run(bin.ctl, ['--db', conninfo, 'load-registry', reg]);
    for (const c of ['c0', 'c1']) run(bin.ctl, ['--db', conninfo, 'add-collector', c]);

    // tallyd, and c0's votes, all durable before nginx starts.
    const [port, httpPort, ngxPort] = [await freePort(), await freePort(), await freePort()];
    const tallydLog = path.join(dir, 'tallyd.log');
    const tallyd = start('tallyd', bin.tallyd, ['--db', conninfo,
        '--listen', `127.0.0.1:${port}`, '--http', `127.0.0.1:${httpPort}`,
        '--checkpoint-ms', '100', '--log-level', 'info'], tallydLog, tallydLog);
    state.tallyd = tallyd;
    for (const by = Date.now() + 30000 * SCALE; ;) {
        if (tallyd.code !== null) throw new Error(`tallyd exited (${tallyd.code}) before ready`);
        if ((await get(httpPort, '/readyz')).status === 200) break;
        if (Date.now() > by) throw new Error('tallyd not ready within 30 s');
        await sleep(100);
    }

    function push(i) {
        const out = path.join(dir, `push-c${i}.out`);
        const err = path.join(dir, `push-c${i}.err`);
        const p = start(`tally-push c${i}`, bin.push, ['--server', `127.0.0.1:${port}`,
            '--collector', `c${i}`, '--spool', path.join(dir, `spool-c${i}`), '--quiet',
            '--batch', '500', path.join(votes, `collector-${i}.csv`)], out, err);
        return waitExit(p, 60000 * SCALE).catch((e) => {
            p.child.kill('SIGKILL');
            throw e;
        }).then((code) => {
            if (code !== 0) throw new Error(`tally-push c${i} exited ${code}:\n${tail(err, 10)}`);
            return pushSummary(out);
        });
    }
    // Until /v1/summary (tallyd's, directly) counts `accepted`: durable and published.
    async function published(accepted) {
        for (const by = Date.now() + 10000 * SCALE; ;) {
            const r = await get(httpPort, '/v1/summary');
            if (r.status === 200) {
                const s = json(r);
                if (s.totals.accepted === accepted) {
                    return { at: Date.now(), checkpoint: s.checkpoint };
                }
            }
            if (Date.now() > by) throw new Error(`/v1/summary does not count ${accepted} accepted`);
            await sleep(20);
        }
    }
    const first = await push(0);
    const firstCp = await published(first.accepted);
    log(`c0 pushed and published: ${JSON.stringify(first)}, checkpoint ${firstCp.checkpoint}`);

    // ---- nginx with the shipped file ------------------------------------------------------
    const conf = substituteConfig(fs.readFileSync(shipped, 'utf8'), {
        upstream: `127.0.0.1:${httpPort}`, listen: `127.0.0.1:${ngxPort}`,
        cacheDir: path.join(ngxDir, 'cache'),
    });
    fs.writeFileSync(path.join(ngxDir, 'tallyd.conf'), conf);
    const t = (sub) => path.join(ngxDir, 'tmp', sub);
    fs.writeFileSync(path.join(ngxDir, 'nginx.conf'), `# ${NAME}: the shipped file, included
daemon off;
master_process on;
worker_processes 2;
pid ${ngxDir}/nginx.pid;
error_log ${ngxDir}/error.log info;
events { worker_connections 512; }
http {
    log_format tally '$remote_addr "$request" $status $body_bytes_sent '
                     'cache=$upstream_cache_status upstream=$upstream_addr '
                     'upstream_status=$upstream_status t=$request_time';
    access_log ${ngxDir}/access.log tally;
    log_subrequest on;
    client_body_temp_path ${t('body')};
    proxy_temp_path ${t('proxy')};
    fastcgi_temp_path ${t('fastcgi')};
    uwsgi_temp_path ${t('uwsgi')};
    scgi_temp_path ${t('scgi')};
    sendfile on;
    include ${ngxDir}/tallyd.conf;
}
`);
    const ngxArgs = ['-p', `${ngxDir}/`, '-c', path.join(ngxDir, 'nginx.conf'),
        '-e', path.join(ngxDir, 'error.log')];
    const checkOut = path.join(ngxDir, 'nginx-t.log');
    const check = start('nginx -t', nginx, ['-t', ...ngxArgs], checkOut, checkOut, as);
    if (await waitExit(check, 30000 * SCALE) !== 0) {
        throw new Error(`nginx -t refuses the configuration:\n${tail(checkOut)}`);
    }
    const ngxLog = path.join(ngxDir, 'nginx.out');
    const ng = start('nginx', nginx, ngxArgs, ngxLog, ngxLog, as);
    state.nginx = ng;
    state.ngxDir = ngxDir;
    for (const by = Date.now() + 15000 * SCALE; ;) {
        if (ng.code !== null) throw new Error(`nginx exited (${ng.code}):\n${tail(ngxLog)}`);
        noteChildrenOf(ng.child.pid);
        if ((await get(ngxPort, '/healthz')).status === 200) break;
        if (Date.now() > by) throw new Error('nginx does not answer /healthz within 15 s');
        await sleep(50);
    }
    noteChildrenOf(ng.child.pid);
    log(`nginx ${nginx} on 127.0.0.1:${ngxPort} (as ${as ? 'nobody' : 'this user'}), tallyd HTTP ` +
        `127.0.0.1:${httpPort}`);
    const notes = [];

    // ---- /v1/results through nginx equals tallyd's; the repeat is a HIT -------------------
    let direct;
    let via;
    for (let attempt = 0; ; attempt++) {
        direct = await get(httpPort, '/v1/results');
        via = await get(ngxPort, '/v1/results');
        assert.equal(direct.status, 200, 'tallyd /v1/results');
        assert.equal(via.status, 200, 'nginx /v1/results');
        if (json(direct).checkpoint === json(via).checkpoint || attempt === 3) break;
    }
    assert.ok(direct.body.length > 10000, `a real /v1/results (${direct.body.length} B)`);
    assert.ok(sameSnapshot(via.body, direct.body), '/v1/results through nginx equals tallyd\'s ' +
        `answer (${firstDifference(via.body, direct.body)})`);
    assert.equal(via.headers['content-encoding'], undefined, 'a plain request gets a plain body');
    const cacheable = cacheableByTallyd(direct);
    log(`tallyd /v1/results: Cache-Control "${direct.headers['cache-control']}", ETag ` +
        `${direct.headers.etag}, Vary "${direct.headers.vary || ''}": ` +
        `${cacheable ? 'cacheable' : 'not cacheable'}; nginx first answer ${cacheStatus(via)}`);
    const STATUSES = ['MISS', 'EXPIRED', 'HIT', 'STALE', 'UPDATING', 'REVALIDATED'];
    assert.ok(STATUSES.includes(cacheStatus(via)),
        `X-Cache-Status on a /v1 document (got ${cacheStatus(via)})`);
    const again = await get(ngxPort, '/v1/results');
    if (cacheable) assert.ok(again.body.equals(via.body), 'the HIT is the cached body');
    if (cacheable) {
        assert.equal(cacheStatus(again), 'HIT', 'a repeat within the second is a cache HIT');
        // A browser revalidating its copy gets a 304 from nginx's cache, without the body.
        const inm = await get(ngxPort, '/v1/results',
            { headers: { 'If-None-Match': via.headers.etag } });
        assert.equal(inm.status, 304, `If-None-Match ${via.headers.etag} through nginx`);
        assert.equal(inm.body.length, 0, 'a 304 has no body');
    } else {
        assert.equal(cacheStatus(again), 'MISS', 'tallyd says no-cache: nginx must not keep it');
        notes.push('/v1/results not cacheable by tallyd\'s Cache-Control: HIT not checked');
    }

    // ---- 50 concurrent identical requests: one goes to tallyd ------------------------------
    {
        const doc = '/v1/summary'; // not asked through nginx yet: nothing cached
        const before = await tallydRequests(httpPort);
        const answers = await Promise.all(Array.from({ length: 50 }, () => get(ngxPort, doc)));
        const after = await tallydRequests(httpPort);
        const upstream = after - before - 1; // the second /metrics read counts itself
        const statuses = {};
        for (const a of answers) {
            assert.equal(a.status, 200, `${doc} through nginx`);
            statuses[cacheStatus(a)] = (statuses[cacheStatus(a)] || 0) + 1;
        }
        log(`50 concurrent ${doc} through nginx: ${upstream} request(s) reached tallyd; ` +
            `X-Cache-Status ${JSON.stringify(statuses)}`);
        if (cacheable) {
            assert.ok(upstream >= 1 && upstream <= 2,
                `one request goes upstream for 50 concurrent ones (got ${upstream})`);
            assert.ok(answers.every((a) => sameSnapshot(a.body, answers[0].body)),
                'all 50 got the same document');
            assert.ok((statuses.MISS || 0) <= 2, 'at most the lock holder missed');
        } else {
            notes.push(`50 concurrent ${doc}: ${upstream} reached tallyd (not cacheable)`);
        }
    }

    // ---- gzip: tallyd's variant through nginx, kept apart from the plain one --------------
    {
        const gz = { 'Accept-Encoding': 'gzip' };
        const dgz = await get(httpPort, '/v1/results', { headers: gz });
        const tallydGzips = dgz.headers['content-encoding'] === 'gzip';
        const vgz = await get(ngxPort, '/v1/results', { headers: gz });
        assert.equal(vgz.status, 200, 'nginx /v1/results with Accept-Encoding: gzip');
        const plain = (await get(ngxPort, '/v1/results')).body;
        if (tallydGzips) {
            assert.equal(vgz.headers['content-encoding'], 'gzip', 'nginx passes the gzip variant');
            assert.match(String(vgz.headers.vary || ''), /accept-encoding/i,
                'Vary reaches the reader');
            const unzipped = zlib.gunzipSync(vgz.body);
            assert.ok(sameSnapshot(unzipped, plain), 'the gzip variant decompresses to the ' +
                `plain body (${firstDifference(unzipped, plain)})`);
            assert.ok(vgz.body.length < plain.length / 2,
                `gzip is smaller (${vgz.body.length} of ${plain.length} B)`);
            log(`gzip through nginx: ${vgz.body.length} B for ${plain.length} B plain ` +
                `(${cacheStatus(vgz)})`);
        } else {
            assert.equal(vgz.headers['content-encoding'], undefined,
                'tallyd sent no gzip: nginx sends none either');
            assert.ok(sameSnapshot(vgz.body, plain), 'the same body for gzip and plain readers');
            notes.push('tallyd does not gzip /v1/results: the gzip variant not checked');
        }
        // A browser's Accept-Encoding is the same variant (a HIT when cacheable); gzip;q=0 and
        // no header are the plain one, never the gzip body.
        const browser = await get(ngxPort, '/v1/results',
            { headers: { 'Accept-Encoding': 'gzip, deflate, br' } });
        assert.equal(browser.headers['content-encoding'], vgz.headers['content-encoding'],
            'a browser\'s Accept-Encoding gets the gzip variant');
        assert.ok(sameSnapshot(plainOf(browser), plainOf(vgz)), 'the browser, the same document');
        if (cacheable) assert.equal(cacheStatus(browser), 'HIT', 'browser strings are normalised');
        const refused = await get(ngxPort, '/v1/results',
            { headers: { 'Accept-Encoding': 'gzip;q=0, identity' } });
        assert.equal(refused.headers['content-encoding'], undefined, 'gzip;q=0 gets a plain body');
        assert.ok(sameSnapshot(refused.body, plain), 'gzip;q=0 gets the plain body');
    }

    // ---- operations: /metrics from 127.0.0.1 only; nothing of it cached ---------------------
    {
        const m = await get(ngxPort, '/metrics');
        assert.equal(m.status, 200, '/metrics through nginx from 127.0.0.1');
        assert.match(m.body.toString('utf8'), /^tally_http_requests_total \d+$/m,
            'tallyd\'s metrics');
        assert.equal(cacheStatus(m), undefined, '/metrics does not go through the cache');
        const far = await get(ngxPort, '/metrics', { localAddress: '127.0.0.2' });
        if (far.status === -1) {
            notes.push(`no connection from 127.0.0.2 (${far.error?.message}): deny not checked`);
        } else {
            assert.equal(far.status, 403, '/metrics from another address is refused');
            const doc = await get(ngxPort, '/v1/summary', { localAddress: '127.0.0.2' });
            assert.equal(doc.status, 200, 'documents are public');
        }
        for (const p of ['/healthz', '/readyz', '/v1/receipts/c0/1', '/v1/collectors']) {
            const a = await get(ngxPort, p);
            const b = await get(ngxPort, p);
            const d = await get(httpPort, p);
            assert.equal(a.status, d.status, `${p} through nginx answers as tallyd does`);
            assert.equal(cacheStatus(a), undefined, `${p} does not go through the cache`);
            assert.equal(cacheStatus(b), undefined, `${p} (again) does not go through the cache`);
        }
    }

    // ---- an error answer is not kept: tallyd says no-cache on it ----------------------------
    {
        const p = '/v1/circuits/4294967295';
        const a = await get(ngxPort, p);
        const b = await get(ngxPort, p);
        assert.equal(a.status, 404, `${p} (no such circuit) through nginx`);
        assert.equal(b.status, 404, `${p} again`);
        assert.notEqual(cacheStatus(b), 'HIT', 'a 404 is not served from the cache');
    }

    // ---- c1's votes: the event through nginx as promptly as directly; documents follow -----
    const directStream = sse(httpPort);
    const viaStream = sse(ngxPort);
    await Promise.all([directStream.ready, viaStream.ready]);
    assert.equal(viaStream.status, 200, '/v1/events through nginx');
    assert.match(String(viaStream.headers['content-type']), /^text\/event-stream/,
        'an event stream');
    assert.equal(cacheStatus(viaStream), undefined, '/v1/events does not go through the cache');
    const snapVia = await viaStream.waitFor((e) => e.event === 'snapshot', 3000 * SCALE,
        'the first event through nginx');
    await directStream.waitFor((e) => e.event === 'snapshot', 3000 * SCALE, 'the first event');
    const resumeFrom = snapVia.id;
    log(`streams open; the snapshot through nginx has id ${resumeFrom}`);

    const tPush = Date.now();
    const pushing = push(1);
    const cpVia = await viaStream.waitFor((e) => e.event === 'checkpoint', 15000 * SCALE,
        'a checkpoint event through nginx after the push');
    const cpDirect = await directStream.waitFor(
        (e) => e.event === 'checkpoint' && e.id === cpVia.id, 3000 * SCALE,
        `checkpoint ${cpVia.id} on tallyd's own stream`);
    const lagMs = cpVia.at - cpDirect.at;
    log(`checkpoint event ${cpVia.id}: through nginx ${cpVia.at - tPush} ms after the push ` +
        `began, ${lagMs} ms after tallyd's own stream`);
    assert.ok(lagMs < 500 * SCALE, `the event is not held back by nginx (${lagMs} ms later)`);

    const second = await pushing;
    const total = first.accepted + second.accepted;
    const final = await published(total);
    log(`c1 pushed: ${JSON.stringify(second)}; tallyd publishes checkpoint ${final.checkpoint}`);
    // Both documents polled through nginx every 100 ms until they show tallyd's checkpoint:
    // the first poll after an entry expires refreshes it (polls meanwhile get the old copy,
    // UPDATING). Then the answer must be tallyd's.
    async function follow(doc) {
        const seen = [];
        for (const by = final.at + 6000 * SCALE; ;) {
            const r = await get(ngxPort, doc);
            assert.equal(r.status, 200, `nginx ${doc} while it refreshes`);
            const cp = json(r).checkpoint;
            if (seen.length === 0 || seen[seen.length - 1] !== `${cp}/${cacheStatus(r)}`) {
                seen.push(`${cp}/${cacheStatus(r)}`);
            }
            if (cp === final.checkpoint) {
                const lag = Date.now() - final.at;
                const d = await get(httpPort, doc);
                assert.ok(sameSnapshot(r.body, d.body), `the refreshed ${doc} equals tallyd's ` +
                    `answer (${firstDifference(r.body, d.body)})`);
                log(`${doc} through nginx at checkpoint ${final.checkpoint} ${lag} ms after ` +
                    `tallyd published it (checkpoint/X-Cache-Status seen: ${seen.join(' ')})`);
                return { lag, doc: json(r) };
            }
            if (Date.now() > by) {
                throw new Error(`${doc} through nginx still not at checkpoint ` +
                    `${final.checkpoint} after 6 s (checkpoint/X-Cache-Status seen: ` +
                    `${seen.join(' ')})`);
            }
            await sleep(100);
        }
    }
    const [res, sum] = await Promise.all([follow('/v1/results'), follow('/v1/summary')]);
    const lag = Math.max(res.lag, sum.lag);
    assert.ok(lag <= 3000 * SCALE, `the documents through nginx change within ~2 s (${lag} ms)`);
    assert.equal(sum.doc.totals.accepted, total, '/v1/summary through nginx counts all votes');

    // The last checkpoint's event through nginx, then both streams closed.
    await viaStream.waitFor((e) => eventCheckpoint(e.id) >= final.checkpoint, 3000 * SCALE,
        `checkpoint ${final.checkpoint}'s event through nginx`);
    viaStream.close();
    directStream.close();

    // ---- resuming with Last-Event-ID through nginx -------------------------------------------
    {
        const viaResume = sse(ngxPort, { lastEventId: resumeFrom });
        const directResume = sse(httpPort, { lastEventId: resumeFrom });
        await Promise.all([viaResume.ready, directResume.ready]);
        assert.equal(viaResume.status, 200, 'resuming through nginx');
        const lastVia = await viaResume.waitFor((e) => eventCheckpoint(e.id) >= final.checkpoint,
            3000 * SCALE, 'the replay through nginx');
        await directResume.waitFor((e) => e.id === lastVia.id, 3000 * SCALE, 'the replay directly');
        const ids = (s) => s.events.slice(0, s.events.findIndex((e) => e.id === lastVia.id) + 1)
            .map((e) => `${e.event}#${e.id}`);
        const replay = ids(viaResume);
        assert.ok(viaResume.events[0].event === 'checkpoint' &&
            eventCheckpoint(viaResume.events[0].id) > eventCheckpoint(resumeFrom),
        `resumed after ${resumeFrom}, not started over (first: ${replay[0]})`);
        assert.deepEqual(replay, ids(directResume), 'the same replay through nginx as directly');
        log(`Last-Event-ID ${resumeFrom} through nginx: ${replay.length} events replayed ` +
            `(${replay[0]} .. ${replay[replay.length - 1]})`);
        viaResume.close();
        directResume.close();
    }

    // ---- revalidation: an expired copy is refreshed with its ETag; tallyd answers 304 -------
    // Nothing changes any more: once the copy of /v1/results expires, the next reader's
    // request makes nginx ask tallyd with If-None-Match (its access log shows the upstream
    // status). tallyd must answer 304.
    let revalidated = 'not checked';
    if (cacheable) {
        const doc = '/v1/results';
        const tag = (await get(httpPort, doc)).headers.etag;
        const accessLog = path.join(ngxDir, 'access.log');
        const from = fs.statSync(accessLog).size;
        const seen = [];
        const found = () => fs.readFileSync(accessLog).subarray(from).toString('utf8')
            .split('\n').find((l) => l.includes(`"GET ${doc} `) && /upstream_status=304\b/.test(l));
        for (const by = Date.now() + 5000 * SCALE; !found() && Date.now() < by;) {
            const r = await get(ngxPort, doc);
            if (seen[seen.length - 1] !== cacheStatus(r)) seen.push(cacheStatus(r));
            await sleep(100);
        }
        await sleep(100); // the refresh's log line
        if ((await get(httpPort, doc)).headers.etag !== tag) {
            notes.push(`${doc}'s ETag changed meanwhile: revalidation not checked`);
        } else {
            assert.ok(found(), `tallyd answers nginx's refresh of ${doc} with 304 (statuses ` +
                `seen: ${seen.join(' ')})`);
            revalidated = `${doc} revalidated by a 304 (${seen.join(' ')})`;
            log(`${doc}: X-Cache-Status ${seen.join(' ')}; nginx refreshed it with ETag ${tag}, ` +
                'tallyd answered 304');
        }
    }

    const cached = cacheable ? 'HIT on repeat, 50 concurrent -> 1 upstream' : 'not cacheable';
    state.summary = `through nginx: results equal, ${cached}, results followed checkpoint ` +
        `${final.checkpoint} in ${lag} ms, ` +
        `events ${lagMs} ms behind tallyd, resumed with Last-Event-ID, ${revalidated}` +
        (notes.length ? `; NOTE: ${notes.join('; ')}` : '');

    assert.equal(await stop(ng, 10000 * SCALE), 0, 'nginx stops on SIGTERM');
    assert.equal(await stop(tallyd, 15000 * SCALE), 0, 'tallyd stops cleanly on SIGTERM');
}

async function cleanup(state) {
    for (const p of [...children]) await stop(p, 10000);
    killAllNow();
    if (!process.env.TALLY_KEEP) {
        if (state.dropDb) state.dropDb();
        if (state.tmpNgx) fs.rmSync(state.tmpNgx, { recursive: true, force: true });
    }
}

const state = {};
const deadline = setTimeout(() => {
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
    if (state.ngxDir) {
        for (const f of ['error.log', 'access.log']) {
            console.log(`---- nginx ${f} (last lines)\n${tail(path.join(state.ngxDir, f))}`);
        }
    }
    if (state.tallyd) console.log(`---- tallyd log (last lines)\n${tail(state.tallyd.errPath)}`);
} finally {
    await cleanup(state).catch((e) => log(`cleanup: ${e.message}`));
    clearTimeout(deadline);
}
process.exit(status);
