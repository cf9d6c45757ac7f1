/* tallyd dashboard: the map of the first-level areas as a tile-grid cartogram (no boundary
 * data): one square per state of /v1/states at a fixed (row, column) of LAYOUT, laid out
 * roughly like Venezuela; a state not in LAYOUT gets a square in the rows below, so any
 * registry shows one square per state. Each square is a link to its state's view, shaded
 * by the bin of the figure shown (reporting progress or turnout); its accessible name says
 * the state and the figure. Colours are in style.css, by data-bin. Hooks: docs/dashboard.md. */
(function () {
    'use strict';

    var i18n = window.Tally.i18n;
    var t = i18n.t;

    /* [name, row, column, abbreviation shown on the square]: 8 columns, 5 rows; west to the
     * left, the Caribbean coast on rows 0-1, the llanos on rows 2-3, the south on row 4. */
    var LAYOUT = [
        ['Falcón', 0, 1, 'FAL'],
        ['Dependencias Federales', 0, 4, 'DF'],
        ['La Guaira', 0, 5, 'LG'],
        ['Nueva Esparta', 0, 7, 'NE'],
        ['Zulia', 1, 0, 'ZUL'],
        ['Lara', 1, 1, 'LAR'],
        ['Yaracuy', 1, 2, 'YAR'],
        ['Carabobo', 1, 3, 'CAR'],
        ['Aragua', 1, 4, 'ARA'],
        ['Distrito Capital', 1, 5, 'DC'],
        ['Miranda', 1, 6, 'MIR'],
        ['Sucre', 1, 7, 'SUC'],
        ['Mérida', 2, 0, 'MÉR'],
        ['Trujillo', 2, 1, 'TRU'],
        ['Portuguesa', 2, 2, 'POR'],
        ['Cojedes', 2, 3, 'COJ'],
        ['Guárico', 2, 4, 'GUÁ'],
        ['Anzoátegui', 2, 5, 'ANZ'],
        ['Monagas', 2, 6, 'MON'],
        ['Delta Amacuro', 2, 7, 'DA'],
        ['Táchira', 3, 0, 'TÁC'],
        ['Barinas', 3, 1, 'BAR'],
        ['Apure', 3, 2, 'APU'],
        ['Bolívar', 3, 5, 'BOL'],
        ['Amazonas', 4, 4, 'AMA']
    ];
    var COLUMNS = 8;

    /* Five bins of 20 points: [0, 0.2), [0.2, 0.4), ... [0.8, 1]; "none" without data. */
    var BINS = [0, 0.2, 0.4, 0.6, 0.8];

    function fold(s) {
        return String(s).normalize('NFD').replace(/[\u0300-\u036f]/g, '').toLowerCase().trim();
    }

    var byName = new Map();
    var rows = 0;
    LAYOUT.forEach(function (e) {
        byName.set(fold(e[0]), { row: e[1], col: e[2], abbr: e[3] });
        rows = Math.max(rows, e[1] + 1);
    });

    /* "Estado 26" -> "E26", "Nueva Región" -> "NR", "Capital" -> "CAP". */
    function abbr(name) {
        var words = String(name).trim().split(/\s+/).filter(Boolean);
        if (words.length === 1) return words[0].slice(0, 3).toUpperCase();
        return words.map(function (w) { return /^\d+$/.test(w) ? w : w[0].toUpperCase(); })
            .join('').slice(0, 4);
    }

    /* Where each state goes: its LAYOUT place (matched without accents or case), or the
     * next free place of the rows below LAYOUT's, in the order given (by name). */
    function place(names) {
        var out = [];
        var extra = 0;
        var taken = new Set();
        names.forEach(function (name) {
            var p = byName.get(fold(name));
            var key = p ? p.row + ',' + p.col : '';
            if (p && !taken.has(key)) {
                taken.add(key);
                out.push({ name: name, row: p.row, col: p.col, abbr: p.abbr, known: true });
            } else {
                out.push({
                    name: name, row: rows + Math.floor(extra / COLUMNS), col: extra % COLUMNS,
                    abbr: abbr(name), known: false
                });
                extra++;
            }
        });
        return out;
    }

    /* The fraction a state is shaded by: tables reported / tables, or the turnout the API
     * gives (ballots / electors of the reported tables); null without data. */
    function value(progress, metric) {
        if (!progress) return null;
        if (metric === 'turnout') {
            return typeof progress.turnout === 'number' && isFinite(progress.turnout) ?
                progress.turnout : null;
        }
        var tables = Number(progress.tables);
        if (!(tables > 0)) return null;
        return (Number(progress.tables_reported) || 0) / tables;
    }

    function bin(v) {
        if (v === null || v === undefined || !isFinite(v)) return 'none';
        var b = 0;
        for (var i = 0; i < BINS.length; i++) if (v >= BINS[i]) b = i;
        return String(b);
    }

    function label(name, progress, metric, v) {
        if (v === null) return t('map.tile.none', { state: name });
        if (metric === 'turnout') return t('map.tile.turnout', { state: name, pct: i18n.pct(v, 2) });
        return t('map.tile.progress', {
            state: name, pct: i18n.pct(v, 1), reported: i18n.num(Number(progress.tables_reported) || 0),
            tables: i18n.num(Number(progress.tables))
        });
    }

    var tiles = new Map(); /* name -> {li, a, abbr, fig} */

    function tileNode(name) {
        var li = document.createElement('li');
        li.className = 'tile-cell';
        var a = document.createElement('a');
        a.className = 'tile';
        a.dataset.state = name;
        var ab = document.createElement('span');
        ab.className = 'tile-abbr';
        ab.setAttribute('aria-hidden', 'true');
        var fig = document.createElement('span');
        fig.className = 'tile-fig';
        fig.setAttribute('aria-hidden', 'true');
        a.appendChild(ab);
        a.appendChild(fig);
        li.appendChild(a);
        return { li: li, a: a, abbr: ab, fig: fig };
    }

    /* Draws (or updates in place, so that a focused square keeps its focus) one square per
     * state of `states` ([{name, progress}]) into the list `ul`. hrefOf(name) is the link. */
    function render(ul, states, metric, selected, hrefOf) {
        var placed = place(states.map(function (s) { return s.name; }));
        var seen = new Set();
        var lastRow = rows - 1;
        placed.forEach(function (p, i) {
            var s = states[i];
            seen.add(p.name);
            var tile = tiles.get(p.name);
            if (!tile) {
                tile = tileNode(p.name);
                tiles.set(p.name, tile);
            }
            lastRow = Math.max(lastRow, p.row);
            tile.li.style.gridRow = String(p.row + 1);
            tile.li.style.gridColumn = String(p.col + 1);
            tile.li.classList.toggle('tile-extra', !p.known);
            var v = value(s.progress, metric);
            var a = tile.a;
            a.href = hrefOf(p.name);
            a.dataset.value = v === null ? '' : String(v);
            a.dataset.bin = bin(v);
            a.dataset.metric = metric;
            var l = label(p.name, s.progress, metric, v);
            if (p.name === selected) {
                a.setAttribute('aria-current', 'true');
                l = t('map.tile.selected', { label: l });
            } else {
                a.removeAttribute('aria-current');
            }
            a.setAttribute('aria-label', l);
            a.title = l;
            tile.abbr.textContent = p.abbr;
            tile.fig.textContent = v === null ? '—' : i18n.pct(v, 0);
        });
        tiles.forEach(function (tile, name) {
            if (!seen.has(name)) {
                tile.li.remove();
                tiles.delete(name);
            }
        });
        /* The document order (and so the tab order) reads the map row by row. */
        placed.slice().sort(function (x, y) { return x.row - y.row || x.col - y.col; })
            .forEach(function (p, k) {
                var li = tiles.get(p.name).li;
                if (ul.children[k] !== li) ul.insertBefore(li, ul.children[k] || null);
            });
        ul.style.setProperty('--map-rows', String(lastRow + 1));
        ul.style.setProperty('--map-cols', String(COLUMNS));
    }

    /* The legend: a swatch and the range of each bin, and "no data". */
    function renderLegend(ul) {
        var items = BINS.map(function (lo, i) {
            var hi = i + 1 < BINS.length ? BINS[i + 1] : 1;
            return { bin: String(i), text: t('map.legend.range', { from: i18n.pct(lo, 0), to: i18n.pct(hi, 0) }) };
        });
        items.push({ bin: 'none', text: t('map.legend.none') });
        ul.replaceChildren.apply(ul, items.map(function (it) {
            var li = document.createElement('li');
            li.dataset.bin = it.bin;
            var sw = document.createElement('span');
            sw.className = 'swatch';
            sw.dataset.bin = it.bin;
            sw.setAttribute('aria-hidden', 'true');
            li.appendChild(sw);
            li.appendChild(document.createTextNode(it.text));
            return li;
        }));
    }

    window.Tally.map = {
        LAYOUT: LAYOUT,
        BINS: BINS,
        place: place,
        value: value,
        bin: bin,
        render: render,
        renderLegend: renderLegend
    };
})();
