/* tallyd dashboard: the progress-over-time panel (#history). Its data: /v1/history's points,
 * extended by each checkpoint event that follows the last point, fetched again (throttled)
 * when one was missed or the server thins its points; a 404 hides the chart behind a note.
 * Its chart, drawn here as SVG (no library): accepted votes above (a line and one marker per
 * point, the marker carrying data-checkpoint), tables reported below on a scale of its own
 * (0 to the tables loaded), one time axis; the SVG has a title and a description that says
 * the series in words. Drawn at the container's width, so its text keeps its size on a
 * phone, and at most once a second. */
(function () {
    'use strict';

    var i18n = window.Tally.i18n;
    var t = i18n.t;
    var NS = 'http://www.w3.org/2000/svg';

    function svgEl(tag, attrs, text) {
        var e = document.createElementNS(NS, tag);
        if (attrs) Object.keys(attrs).forEach(function (k) { e.setAttribute(k, String(attrs[k])); });
        if (text !== undefined) e.textContent = text;
        return e;
    }

    /* 1, 2, 2.5 or 5 times a power of ten, at least x. */
    function niceStep(x) {
        if (!(x > 0)) return 1;
        var p = Math.pow(10, Math.floor(Math.log10(x)));
        var m = x / p;
        return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 2.5 ? 2.5 : m <= 5 ? 5 : 10) * p;
    }

    /* Ticks 0, step, ... up to the first at or above max (about `count` intervals). */
    function yTicks(max, count, integer) {
        var step = niceStep(Math.max(max, integer ? 1 : 0) / count);
        if (integer) step = Math.max(1, Math.ceil(step));
        var ticks = [];
        for (var v = 0; ticks.length < 20; v += step) {
            ticks.push(v);
            if (v >= max) break;
        }
        return ticks;
    }

    var TIME_STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800,
        21600, 43200, 86400].map(function (s) { return s * 1000; });

    function timeTicks(t0, t1, count) {
        var span = t1 - t0;
        var step = TIME_STEPS[TIME_STEPS.length - 1];
        for (var i = 0; i < TIME_STEPS.length; i++) {
            if (span / TIME_STEPS[i] <= count) {
                step = TIME_STEPS[i];
                break;
            }
        }
        /* Aligned to the local clock: minutes and hours fall on round values. */
        var off = new Date(t0).getTimezoneOffset() * 60000;
        var first = Math.ceil((t0 - off) / step) * step + off;
        var ticks = [];
        for (var v = first; v <= t1 && ticks.length < 50; v += step) ticks.push(v);
        return ticks;
    }

    function timeLabel(ms, span) {
        var d = new Date(ms);
        if (span < 120000) return i18n.time(d);
        if (span < 86400000) return i18n.hm(d);
        return i18n.dateTime(d);
    }

    function yLabel(v) {
        return v >= 10000 ? i18n.compact(v) : i18n.num(v);
    }

    function parseTime(p) {
        var ms = Date.parse(p.time);
        return isFinite(ms) ? ms : null;
    }

    /* The series in words, for the SVG's description and the caption. */
    function summary(points, stride) {
        if (!points.length) return t('history.none');
        var first = points[0], last = points[points.length - 1];
        var fmtT = function (p) {
            var ms = parseTime(p);
            return ms === null ? '#' + p.checkpoint : i18n.time(new Date(ms));
        };
        var s;
        if (points.length === 1) {
            s = t('history.summaryOne', {
                to: fmtT(last), a1: i18n.num(last.accepted), t1: i18n.num(last.tables_reported)
            });
        } else {
            s = t('history.summary', {
                n: i18n.tn('n.checkpoints', points.length), from: fmtT(first), to: fmtT(last),
                a0: i18n.num(first.accepted), a1: i18n.num(last.accepted),
                t0: i18n.num(first.tables_reported), t1: i18n.num(last.tables_reported)
            });
        }
        if (stride > 1) s += ' ' + t('history.stride', { k: i18n.num(stride) });
        return s;
    }

    /* Draws the chart of `points` ([{checkpoint, time, accepted, tables_reported}], oldest
     * first) into `box`, replacing what was there. opts: {tablesTotal, stride, readout}
     * (readout: an element that shows the point under the pointer). */
    function render(box, points, opts) {
        opts = opts || {};
        var W = Math.max(280, Math.floor(box.clientWidth || 600));
        var narrow = W < 480;
        var M = { left: narrow ? 44 : 58, right: 12, top: 22 };
        var H1 = narrow ? 150 : 180, GAP = 34, H2 = narrow ? 80 : 96, AXIS = 44;
        var H = M.top + H1 + GAP + H2 + AXIS;
        var innerW = W - M.left - M.right;

        var n = points.length;
        var times = points.map(parseTime);
        var useTime = n > 1 && times.every(function (x) { return x !== null; }) &&
            times[n - 1] > times[0];
        var x0 = useTime ? times[0] : 0, x1 = useTime ? times[n - 1] : Math.max(1, n - 1);
        var xOf = function (i) {
            if (n === 1) return M.left + innerW / 2;
            var v = useTime ? times[i] : i;
            return M.left + (v - x0) / (x1 - x0) * innerW;
        };

        var maxA = 0, maxT = 0;
        points.forEach(function (p) {
            maxA = Math.max(maxA, Number(p.accepted) || 0);
            maxT = Math.max(maxT, Number(p.tables_reported) || 0);
        });
        var aTicks = yTicks(maxA, narrow ? 3 : 4, true);
        var aMax = aTicks[aTicks.length - 1] || 1;
        var tTop = opts.tablesTotal > 0 ? Math.max(opts.tablesTotal, maxT) : maxT;
        var tTicks = yTicks(tTop, 2, true);
        var tMax = opts.tablesTotal > 0 && opts.tablesTotal >= maxT ? opts.tablesTotal :
            tTicks[tTicks.length - 1] || 1;
        if (opts.tablesTotal > 0) {
            /* The top of the scale is the tables loaded; a round tick too close under it goes. */
            tTicks = tTicks.filter(function (v) { return v < tMax * 0.8; });
            tTicks.push(tMax);
        }
        var top2 = M.top + H1 + GAP;
        var yA = function (v) { return M.top + H1 - (v / aMax) * H1; };
        var yT = function (v) { return top2 + H2 - (v / tMax) * H2; };

        var svg = svgEl('svg', {
            width: W, height: H, viewBox: '0 0 ' + W + ' ' + H, role: 'img',
            'aria-labelledby': 'history-svg-title history-svg-desc', class: 'chart'
        });
        svg.appendChild(svgEl('title', { id: 'history-svg-title' }, t('history.title')));
        svg.appendChild(svgEl('desc', { id: 'history-svg-desc' }, summary(points, opts.stride)));

        function panel(ticks, y, top, h, title, cls) {
            var g = svgEl('g', { class: 'panel ' + cls, 'aria-hidden': 'true' });
            g.appendChild(svgEl('text', { x: M.left, y: top - 8, class: 'axis-title' }, title));
            ticks.forEach(function (v) {
                var yy = Math.round(y(v)) + 0.5;
                g.appendChild(svgEl('line', { x1: M.left, x2: W - M.right, y1: yy, y2: yy, class: 'grid' }));
                g.appendChild(svgEl('text', { x: M.left - 6, y: yy + 4, class: 'tick', 'text-anchor': 'end' },
                    yLabel(v)));
            });
            g.appendChild(svgEl('line', {
                x1: M.left + 0.5, x2: M.left + 0.5, y1: top, y2: top + h, class: 'axis'
            }));
            svg.appendChild(g);
            return g;
        }

        var gA = panel(aTicks, yA, M.top, H1, t('history.accepted'), 'panel-accepted');
        var gT = panel(tTicks, yT, top2, H2, t('history.tables'), 'panel-tables');

        if (n) {
            var dA = '', dT = '';
            for (var i = 0; i < n; i++) {
                var x = xOf(i).toFixed(1);
                dA += (i ? 'L' : 'M') + x + ',' + yA(Number(points[i].accepted) || 0).toFixed(1);
                dT += (i ? 'L' : 'M') + x + ',' + yT(Number(points[i].tables_reported) || 0).toFixed(1);
            }
            var areaT = dT + 'L' + xOf(n - 1).toFixed(1) + ',' + (top2 + H2) + 'L' +
                xOf(0).toFixed(1) + ',' + (top2 + H2) + 'Z';
            gT.appendChild(svgEl('path', { d: areaT, class: 'area-tables' }));
            gT.appendChild(svgEl('path', { d: dT, class: 'line-tables' }));
            gA.appendChild(svgEl('path', { d: dA, class: 'line-accepted' }));
            var r = n <= 60 ? 3 : n <= 300 ? 2 : 1.25;
            var marks = svgEl('g', { class: 'markers' });
            for (var k = 0; k < n; k++) {
                marks.appendChild(svgEl('circle', {
                    cx: xOf(k).toFixed(1), cy: yA(Number(points[k].accepted) || 0).toFixed(1), r: r,
                    'data-checkpoint': points[k].checkpoint, 'data-accepted': points[k].accepted,
                    'data-tables-reported': points[k].tables_reported
                }));
            }
            gA.appendChild(marks);
        }

        /* The time axis, under the lower panel. */
        var gx = svgEl('g', { class: 'x-axis', 'aria-hidden': 'true' });
        var base = top2 + H2;
        gx.appendChild(svgEl('line', { x1: M.left, x2: W - M.right, y1: base + 0.5, y2: base + 0.5, class: 'axis' }));
        if (useTime) {
            var span = x1 - x0;
            timeTicks(x0, x1, Math.max(2, Math.floor(innerW / (span < 120000 ? 90 : 70))))
                .forEach(function (ms) {
                    var x = M.left + (ms - x0) / span * innerW;
                    gx.appendChild(svgEl('line', { x1: x, x2: x, y1: base, y2: base + 5, class: 'axis' }));
                    gx.appendChild(svgEl('text', { x: x, y: base + 18, class: 'tick', 'text-anchor': 'middle' },
                        timeLabel(ms, span)));
                });
        } else if (n) {
            var only = parseTime(points[n - 1]);
            gx.appendChild(svgEl('text', { x: xOf(n - 1), y: base + 18, class: 'tick', 'text-anchor': 'middle' },
                only === null ? '#' + points[n - 1].checkpoint : i18n.time(new Date(only))));
        }
        gx.appendChild(svgEl('text', { x: W - M.right, y: base + 36, class: 'axis-title', 'text-anchor': 'end' },
            t('history.time')));
        svg.appendChild(gx);

        /* The point nearest the pointer: a guide line and the readout. */
        var guide = svgEl('line', { x1: 0, x2: 0, y1: M.top, y2: base, class: 'guide', visibility: 'hidden' });
        svg.appendChild(guide);
        if (opts.readout && n) {
            svg.addEventListener('pointermove', function (e) {
                var rect = svg.getBoundingClientRect();
                var px = (e.clientX - rect.left) * (W / rect.width);
                var best = 0;
                for (var j = 1; j < n; j++) if (Math.abs(xOf(j) - px) < Math.abs(xOf(best) - px)) best = j;
                var p = points[best];
                var ms = parseTime(p);
                guide.setAttribute('x1', xOf(best));
                guide.setAttribute('x2', xOf(best));
                guide.setAttribute('visibility', 'visible');
                opts.readout.textContent = t('history.readout', {
                    cp: p.checkpoint, time: ms === null ? '—' : i18n.time(new Date(ms)),
                    accepted: i18n.num(Number(p.accepted) || 0), tables: i18n.num(Number(p.tables_reported) || 0)
                });
            });
            svg.addEventListener('pointerleave', function () {
                guide.setAttribute('visibility', 'hidden');
            });
        }

        box.replaceChildren(svg);
        box.dataset.points = String(n);
        if (n) box.dataset.checkpoint = String(points[n - 1].checkpoint);
        return summary(points, opts.stride);
    }

    var REFRESH_MS = 5000;         /* a refetch of /v1/history, at most this often */
    var ABSENT_RETRY_MS = 30000;   /* after a 404 (a server without the route) */
    var MAX_POINTS = 2048;         /* points /v1/history sends at most */
    var DRAW_MS = 1000;            /* the chart is redrawn at most this often */

    function toInt(v) {
        var n = Number(v);
        return v === null || v === undefined || !isFinite(n) ? null : Math.trunc(n);
    }

    function sum(r) {
        if (typeof r === 'number') return r;
        var n = 0;
        if (r) Object.keys(r).forEach(function (k) { n += toInt(r[k]) || 0; });
        return n;
    }

    /* opts: {getJSON(path) -> Promise (errors carry .status), tablesTotal() -> number|null}. */
    function history(opts) {
        var $ = function (id) { return document.getElementById(id); };
        var state = { points: [], stride: 1, available: null };
        var drawTimer = 0, drawnAt = 0, fetchTimer = null, fetchedAt = 0;

        function draw() {
            drawTimer = 0;
            var has = state.available === true && state.points.length > 0;
            $('history-note').hidden = has || state.available === null;
            document.querySelector('#history .history-figure').hidden = !has;
            $('history').dataset.available = state.available === null ? 'unknown' : String(state.available);
            if (!has) return;
            $('history-summary').textContent = render($('history-chart'), state.points, {
                tablesTotal: opts.tablesTotal(), stride: state.stride, readout: $('history-readout')
            });
        }

        function redraw() {
            if (drawTimer) return;
            drawTimer = setTimeout(function () {
                requestAnimationFrame(function () {
                    drawnAt = Date.now();
                    draw();
                });
            }, Math.max(0, drawnAt + DRAW_MS - Date.now()));
        }

        function load() {
            fetchedAt = Date.now();
            return opts.getJSON('/v1/history').then(function (d) {
                state = {
                    points: Array.isArray(d.points) ? d.points : [], stride: toInt(d.stride) || 1,
                    available: true
                };
                redraw();
            }, function (err) {
                /* 404: a server without the route, or no history yet; either way no chart. */
                if (err.status === 404) {
                    state = { points: [], stride: 1, available: false };
                    redraw();
                }
            });
        }

        function schedule() {
            if (fetchTimer) return;
            var every = state.available === false ? ABSENT_RETRY_MS : REFRESH_MS;
            fetchTimer = setTimeout(function () {
                fetchTimer = null;
                load();
            }, Math.max(0, fetchedAt + every - Date.now()));
        }

        /* ev: {id, data} of a checkpoint or snapshot event. It is the next point when it
         * follows the last one and nothing is thinned; otherwise the history is fetched again. */
        function take(ev) {
            var last = state.points.length ? state.points[state.points.length - 1] : null;
            if (last && ev.id <= toInt(last.checkpoint)) return;
            var d = ev.data, tot = d.totals || {};
            if (state.available && state.stride === 1 && last && toInt(last.checkpoint) === ev.id - 1 &&
                state.points.length < MAX_POINTS && tot.accepted !== undefined) {
                state.points.push({
                    checkpoint: ev.id, time: d.time, accepted: toInt(tot.accepted),
                    duplicate: toInt(tot.duplicate), rejected: sum(tot.rejected) + sum(d.rejected_tables),
                    tables_reported: d.progress ? toInt(d.progress.tables_reported) : toInt(last.tables_reported)
                });
                redraw();
            } else {
                schedule();
            }
        }

        return {
            load: load, take: take,
            redraw: function () { if (state.points.length) redraw(); }
        };
    }

    window.Tally.chart = { render: render, summary: summary };
    window.Tally.history = { create: history };
})();
