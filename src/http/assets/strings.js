/* tallyd dashboard: every word the page shows, in Spanish (the default) and in English
 * (?lang=en), and the language's number, percent and time formats (es-VE, en-US). No other
 * file holds user-visible text: index.html names keys (data-i18n="key" for the text,
 * data-i18n-attr="attr:key;attr:key" for attributes) and the scripts call t()/tn().
 * Templates take {name} parameters; keys ending in .one/.other are chosen by tn() with the
 * language's plural rules. Both tables must have the same keys (the browser test checks). */
(function () {
    'use strict';

    var STRINGS = {
        es: {
            'page.title': 'Resultados en vivo · {name}',
            'page.description': 'Resultados en vivo de la consulta popular: totales nacionales, ' +
                'avance por estado, evolución en el tiempo y proyectos ganadores por circuito.',
            'consultation.default': 'Consulta Popular',
            'skip.main': 'Saltar al contenido',
            'skip.results': 'Saltar a los resultados por circuito',
            'header.eyebrow': 'Resultados en vivo',
            'lang.other': 'English',
            'lang.otherCode': 'en',
            'lang.switchTitle': 'Read this page in English',
            'boot.title': 'Datos iniciales',

            'status.provisional': 'Provisional',
            'status.official': 'Oficial',
            'status.closed': 'cerrada',
            'status.provisionalTitle': 'Resultados provisionales: aún no certificados',
            'status.officialTitle': 'Resultados certificados. Cadena certificada: {hash}',

            'live.connecting': 'Conectando…',
            'live.live': 'En vivo',
            'live.reconnecting': 'Reconectando…',
            'live.offline': 'Sin conexión · reintento en {s} s',
            'live.unsupported': 'Sin actualización en vivo',

            'embargo.title': 'Resultados bajo embargo.',
            'embargo.body': 'Se muestra solo el avance (mesas reportadas, participación); los ' +
                'votos por proyecto se publicarán al levantarse el embargo.',

            'alert.load': 'No se pudieron cargar los datos ({why}). Reintentando en {s} s…',
            'alert.state': 'No se pudo cargar {name} ({why}). Reintentando…',

            'totals.h': 'Totales nacionales',
            'totals.accepted': 'Votos aceptados',
            'totals.duplicate': 'Duplicados',
            'totals.rejected': 'Rechazados',
            'totals.rejectedNote': 'proyecto desconocido o no permitido',
            'totals.batches': 'Lotes',

            'progress.h': 'Avance',
            'progress.collectors': 'Colectores reportando',
            'progress.of': 'de',
            'progress.connected.one': 'conectado',
            'progress.connected.other': 'conectados',
            'progress.tables': 'mesas reportadas {reported}/{tables}',
            'progress.turnout': 'participación {pct}',
            'progress.decided.one': '{n} circuito decidido',
            'progress.decided.other': '{n} circuitos decididos',
            'progress.checkpoint': 'Último corte guardado',
            'progress.recovered': '(estado recuperado al iniciar)',
            'progress.ageS': '(hace {n} s)',
            'progress.ageMin': '(hace {n} min)',
            'progress.ageH': '(hace {n} h)',
            'registry.size': '{projects} en {circuits} de {states}.',
            'registry.sizeNoStates': '{projects} en {circuits}.',
            'n.projects.one': '{n} proyecto',
            'n.projects.other': '{n} proyectos',
            'n.circuits.one': '{n} circuito',
            'n.circuits.other': '{n} circuitos',
            'n.states.one': '{n} estado',
            'n.states.other': '{n} estados',

            'map.h': 'Mapa del avance por estado',
            'map.metric': 'Colorear por',
            'map.metric.progress': 'Mesas reportadas',
            'map.metric.turnout': 'Participación',
            'map.title': 'Mapa esquemático: un cuadro por estado ({n}), ubicado aproximadamente ' +
                'como en el país.',
            'map.desc.progress': 'El color de cada cuadro indica la proporción de mesas ' +
                'reportadas; cada cuadro enlaza a los resultados de su estado. La tabla ' +
                '«Estados» tiene las mismas cifras.',
            'map.desc.turnout': 'El color de cada cuadro indica la participación (boletas entre ' +
                'electores de las mesas reportadas); cada cuadro enlaza a los resultados de su ' +
                'estado. La tabla «Estados» tiene las mismas cifras.',
            'map.tile.progress': '{state}: {pct} de mesas reportadas ({reported} de {tables})',
            'map.tile.turnout': '{state}: participación {pct}',
            'map.tile.none': '{state}: sin datos',
            'map.tile.selected': '{label} (seleccionado)',
            'map.legend': 'Leyenda',
            'map.legend.range': '{from} – {to}',
            'map.legend.none': 'sin datos',
            'map.empty': 'Aún no hay estados cargados.',

            'history.h': 'Avance en el tiempo',
            'history.accepted': 'Votos aceptados',
            'history.tables': 'Mesas reportadas',
            'history.time': 'Hora del corte',
            'history.none': 'Aún no hay historial de cortes para mostrar.',
            'history.title': 'Votos aceptados y mesas reportadas en cada corte guardado',
            'history.summary': '{n} desde {from} hasta {to}: votos aceptados de {a0} a {a1}; ' +
                'mesas reportadas de {t0} a {t1}.',
            'history.summaryOne': 'Un solo corte, a las {to}: {a1} votos aceptados, {t1} mesas ' +
                'reportadas.',
            'history.stride': 'Se muestra un corte de cada {k}.',
            'history.readout': 'Corte #{cp} · {time} · {accepted} votos · {tables} mesas',
            'n.checkpoints.one': '{n} corte',
            'n.checkpoints.other': '{n} cortes',

            'states.h': 'Estados',
            'states.caption': 'Avance por estado. Los botones de cada columna ordenan la tabla.',
            'states.name': 'Estado',
            'states.circuits': 'Circuitos',
            'states.decided': 'Decididos',
            'states.reported': 'Mesas reportadas',
            'states.turnout': 'Participación',
            'states.ballots': 'Boletas',
            'states.reportedCell': '{reported} de {tables}',
            'states.total': 'Total nacional',
            'states.empty': 'Aún no hay estados cargados.',
            'states.sortAsc': 'orden ascendente',
            'states.sortDesc': 'orden descendente',

            'results.h': 'Resultados por estado y circuito',
            'results.state': 'Estado',
            'results.loading': 'Cargando…',
            'results.stateOption': '{name} · {circuits}',
            'results.loadingState': 'Cargando {name}…',
            'results.noCircuits': 'No hay circuitos en este estado.',
            'results.noneLoaded': 'Aún no hay circuitos cargados.',
            'results.expand': 'Expandir todo',
            'results.collapse': 'Contraer todo',
            'results.summary': '{state}: {circuits} · {votes} votos · {parts}',
            'results.withWinner': '{n} con ganador',
            'results.withTie': '{n} con empate',
            'results.noVotes': '{n} sin votos',
            'results.decided.one': '{n} decidido',
            'results.decided.other': '{n} decididos',

            'search.label': 'Buscar circuito o proyecto en todo el país',
            'search.placeholder': 'nombre o número',
            'search.hint': 'Flechas para recorrer los resultados, Intro para abrir, Esc para ' +
                'cerrar.',
            'search.loading': 'Cargando el catálogo de circuitos y proyectos…',
            'search.error': 'No se pudo cargar el catálogo ({why}).',
            'search.count.one': '{n} resultado',
            'search.count.other': '{n} resultados',
            'search.capped': '{n} resultados; se muestran los primeros {k}.',
            'search.none': 'Ningún circuito ni proyecto coincide.',
            'search.kind.circuit': 'Circuito',
            'search.kind.project': 'Proyecto',
            'search.where.circuit': '{state} · circuito {id}',
            'search.where.project': '{circuit} · {state} · proyecto {id}',

            'circuit.id': 'circuito {id}',
            'circuit.votes': '{votes} votos · {seats}',
            'circuit.seats.one': '{n} cupo',
            'circuit.seats.other': '{n} cupos',
            'circuit.noVotes': 'Sin votos aún',
            'circuit.wins.one': 'Gana',
            'circuit.wins.other': 'Ganan',
            'circuit.tie': 'Empate',
            'circuit.tieLast': 'por el último cupo',
            'circuit.tieSeat': 'por el cupo',
            'circuit.tieSeats': 'por los cupos',
            'circuit.decided': 'decidido',
            'circuit.open': 'por decidir',
            'circuit.corrected': 'corregido {time}',
            'circuit.correctedTitle': 'Corrección registrada: {at} (ver /v1/corrections)',
            'circuit.colRank': '#',
            'circuit.colProject': 'Proyecto',
            'circuit.colVotes': 'Votos',
            'circuit.caption': 'Proyectos del {name}, por votos',
            'circuit.win': 'Gana',

            'legend.win': 'Gana',
            'legend.winText': 'proyecto financiado (entre los primeros del circuito según sus ' +
                'cupos) ·',
            'legend.tie': 'Empate',
            'legend.tieText': 'empate que decide un cupo: no se elige ganador hasta que se ' +
                'resuelva. ·',
            'legend.decided': 'decidido',
            'legend.decidedText': 'los votos que faltan de las mesas no pueden cambiar los ' +
                'ganadores.',

            'foot.durable': 'Solo se muestran votos guardados de forma durable. Datos abiertos:',
            'foot.checkpoint': 'Corte',
            'foot.at': 'guardado',
            'foot.chain': 'cadena',
            'foot.noCheckpoint': 'ningún corte guardado todavía',
            'foot.headTitle': 'Cabeza de la cadena de hashes en este corte: {hash}'
        },
        en: {
            'page.title': 'Live results · {name}',
            'page.description': 'Live results of the popular consultation: national totals, ' +
                'progress by state, progress over time and winning projects by circuit.',
            'consultation.default': 'Popular consultation',
            'skip.main': 'Skip to content',
            'skip.results': 'Skip to the results by circuit',
            'header.eyebrow': 'Live results',
            'lang.other': 'Español',
            'lang.otherCode': 'es',
            'lang.switchTitle': 'Ver esta página en español',
            'boot.title': 'Initial data',

            'status.provisional': 'Provisional',
            'status.official': 'Official',
            'status.closed': 'closed',
            'status.provisionalTitle': 'Provisional results: not certified yet',
            'status.officialTitle': 'Certified results. Certified chain: {hash}',

            'live.connecting': 'Connecting…',
            'live.live': 'Live',
            'live.reconnecting': 'Reconnecting…',
            'live.offline': 'Offline · retrying in {s} s',
            'live.unsupported': 'No live updates',

            'embargo.title': 'Results under embargo.',
            'embargo.body': 'Only the progress is shown (tables reported, turnout); the votes ' +
                'per project will be published when the embargo is lifted.',

            'alert.load': 'The data could not be loaded ({why}). Retrying in {s} s…',
            'alert.state': '{name} could not be loaded ({why}). Retrying…',

            'totals.h': 'National totals',
            'totals.accepted': 'Accepted votes',
            'totals.duplicate': 'Duplicates',
            'totals.rejected': 'Rejected',
            'totals.rejectedNote': 'project unknown or not allowed',
            'totals.batches': 'Batches',

            'progress.h': 'Progress',
            'progress.collectors': 'Collectors reporting',
            'progress.of': 'of',
            'progress.connected.one': 'connected',
            'progress.connected.other': 'connected',
            'progress.tables': 'tables reported {reported}/{tables}',
            'progress.turnout': 'turnout {pct}',
            'progress.decided.one': '{n} circuit decided',
            'progress.decided.other': '{n} circuits decided',
            'progress.checkpoint': 'Last checkpoint saved',
            'progress.recovered': '(state recovered at start)',
            'progress.ageS': '({n} s ago)',
            'progress.ageMin': '({n} min ago)',
            'progress.ageH': '({n} h ago)',
            'registry.size': '{projects} in {circuits} of {states}.',
            'registry.sizeNoStates': '{projects} in {circuits}.',
            'n.projects.one': '{n} project',
            'n.projects.other': '{n} projects',
            'n.circuits.one': '{n} circuit',
            'n.circuits.other': '{n} circuits',
            'n.states.one': '{n} state',
            'n.states.other': '{n} states',

            'map.h': 'Progress map by state',
            'map.metric': 'Shade by',
            'map.metric.progress': 'Tables reported',
            'map.metric.turnout': 'Turnout',
            'map.title': 'Schematic map: one square per state ({n}), placed roughly as in the ' +
                'country.',
            'map.desc.progress': 'Each square\'s colour shows the share of tables reported; ' +
                'each square links to its state\'s results. The "States" table has the same ' +
                'figures.',
            'map.desc.turnout': 'Each square\'s colour shows the turnout (ballots over the ' +
                'electors of the tables reported); each square links to its state\'s results. ' +
                'The "States" table has the same figures.',
            'map.tile.progress': '{state}: {pct} of tables reported ({reported} of {tables})',
            'map.tile.turnout': '{state}: turnout {pct}',
            'map.tile.none': '{state}: no data',
            'map.tile.selected': '{label} (selected)',
            'map.legend': 'Legend',
            'map.legend.range': '{from} – {to}',
            'map.legend.none': 'no data',
            'map.empty': 'No states loaded yet.',

            'history.h': 'Progress over time',
            'history.accepted': 'Accepted votes',
            'history.tables': 'Tables reported',
            'history.time': 'Checkpoint time',
            'history.none': 'No checkpoint history to show yet.',
            'history.title': 'Accepted votes and tables reported at each saved checkpoint',
            'history.summary': '{n} from {from} to {to}: accepted votes from {a0} to {a1}; ' +
                'tables reported from {t0} to {t1}.',
            'history.summaryOne': 'A single checkpoint, at {to}: {a1} accepted votes, {t1} ' +
                'tables reported.',
            'history.stride': 'One checkpoint in {k} is shown.',
            'history.readout': 'Checkpoint #{cp} · {time} · {accepted} votes · {tables} tables',
            'n.checkpoints.one': '{n} checkpoint',
            'n.checkpoints.other': '{n} checkpoints',

            'states.h': 'States',
            'states.caption': 'Progress by state. The buttons of each column sort the table.',
            'states.name': 'State',
            'states.circuits': 'Circuits',
            'states.decided': 'Decided',
            'states.reported': 'Tables reported',
            'states.turnout': 'Turnout',
            'states.ballots': 'Ballots',
            'states.reportedCell': '{reported} of {tables}',
            'states.total': 'National total',
            'states.empty': 'No states loaded yet.',
            'states.sortAsc': 'ascending order',
            'states.sortDesc': 'descending order',

            'results.h': 'Results by state and circuit',
            'results.state': 'State',
            'results.loading': 'Loading…',
            'results.stateOption': '{name} · {circuits}',
            'results.loadingState': 'Loading {name}…',
            'results.noCircuits': 'No circuits in this state.',
            'results.noneLoaded': 'No circuits loaded yet.',
            'results.expand': 'Expand all',
            'results.collapse': 'Collapse all',
            'results.summary': '{state}: {circuits} · {votes} votes · {parts}',
            'results.withWinner': '{n} with a winner',
            'results.withTie': '{n} with a tie',
            'results.noVotes': '{n} without votes',
            'results.decided.one': '{n} decided',
            'results.decided.other': '{n} decided',

            'search.label': 'Search a circuit or project nationwide',
            'search.placeholder': 'name or number',
            'search.hint': 'Arrow keys to move through the results, Enter to open, Esc to close.',
            'search.loading': 'Loading the catalogue of circuits and projects…',
            'search.error': 'The catalogue could not be loaded ({why}).',
            'search.count.one': '{n} result',
            'search.count.other': '{n} results',
            'search.capped': '{n} results; the first {k} are shown.',
            'search.none': 'No circuit or project matches.',
            'search.kind.circuit': 'Circuit',
            'search.kind.project': 'Project',
            'search.where.circuit': '{state} · circuit {id}',
            'search.where.project': '{circuit} · {state} · project {id}',

            'circuit.id': 'circuit {id}',
            'circuit.votes': '{votes} votes · {seats}',
            'circuit.seats.one': '{n} seat',
            'circuit.seats.other': '{n} seats',
            'circuit.noVotes': 'No votes yet',
            'circuit.wins.one': 'Wins',
            'circuit.wins.other': 'Win',
            'circuit.tie': 'Tie',
            'circuit.tieLast': 'for the last seat',
            'circuit.tieSeat': 'for the seat',
            'circuit.tieSeats': 'for the seats',
            'circuit.decided': 'decided',
            'circuit.open': 'undecided',
            'circuit.corrected': 'corrected {time}',
            'circuit.correctedTitle': 'Correction recorded: {at} (see /v1/corrections)',
            'circuit.colRank': '#',
            'circuit.colProject': 'Project',
            'circuit.colVotes': 'Votes',
            'circuit.caption': 'Projects of {name}, by votes',
            'circuit.win': 'Wins',

            'legend.win': 'Wins',
            'legend.winText': 'funded project (among the circuit\'s first, by its seats) ·',
            'legend.tie': 'Tie',
            'legend.tieText': 'a tie that decides a seat: no winner is chosen until it is ' +
                'resolved. ·',
            'legend.decided': 'decided',
            'legend.decidedText': 'the votes still to come from the tables cannot change the ' +
                'winners.',

            'foot.durable': 'Only durably stored votes are shown. Open data:',
            'foot.checkpoint': 'Checkpoint',
            'foot.at': 'saved',
            'foot.chain': 'chain',
            'foot.noCheckpoint': 'no checkpoint saved yet',
            'foot.headTitle': 'Head of the hash chain at this checkpoint: {hash}'
        }
    };

    var LOCALES = { es: 'es-VE', en: 'en-US' };

    var lang = (function () {
        var q = /(?:^|[?&])lang=([^&#]*)/.exec(location.search);
        var want = q ? decodeURIComponent(q[1]).toLowerCase() : '';
        return Object.prototype.hasOwnProperty.call(STRINGS, want) ? want : 'es';
    })();
    var locale = LOCALES[lang];
    var table = STRINGS[lang];
    var plurals = new Intl.PluralRules(locale);

    function fill(s, params) {
        if (!params) return s;
        return s.replace(/\{(\w+)\}/g, function (m, k) {
            return Object.prototype.hasOwnProperty.call(params, k) ? String(params[k]) : m;
        });
    }

    /* The string of key with its {parameters}; a missing key shows as itself (and the test
     * that compares both tables catches it). */
    function t(key, params) {
        var s = table[key];
        if (s === undefined) {
            if (window.console) console.warn('strings.js: no string ' + key);
            return key;
        }
        return fill(s, params);
    }

    /* key.one or key.other by the language's plural rule for n; {n} is n, formatted. */
    function tn(key, n, params) {
        var form = plurals.select(n) === 'one' ? 'one' : 'other';
        var p = { n: num(n) };
        if (params) Object.keys(params).forEach(function (k) { p[k] = params[k]; });
        return t(key + '.' + form, p);
    }

    /* The template of key split into text and the given nodes: parameters that are DOM
     * nodes are inserted as they are (a number with its own markup, a link). */
    function parts(key, params) {
        var s = table[key] === undefined ? key : table[key];
        var out = [];
        var re = /\{(\w+)\}/g, last = 0, m;
        while ((m = re.exec(s)) !== null) {
            if (m.index > last) out.push(s.slice(last, m.index));
            var v = params && params[m[1]];
            out.push(v instanceof Node ? v : v === undefined ? m[0] : String(v));
            last = re.lastIndex;
        }
        if (last < s.length) out.push(s.slice(last));
        return out;
    }

    /* Fills the elements under root that name keys. */
    function apply(root) {
        root.querySelectorAll('[data-i18n]').forEach(function (el) {
            el.textContent = t(el.getAttribute('data-i18n'));
        });
        root.querySelectorAll('[data-i18n-attr]').forEach(function (el) {
            el.getAttribute('data-i18n-attr').split(';').forEach(function (pair) {
                var i = pair.indexOf(':');
                if (i > 0) el.setAttribute(pair.slice(0, i).trim(), t(pair.slice(i + 1).trim()));
            });
        });
    }

    var intFmt = new Intl.NumberFormat(locale, { maximumFractionDigits: 0 });
    var compactFmt = new Intl.NumberFormat(locale, { notation: 'compact', maximumFractionDigits: 1 });
    var pctFmts = {};
    var timeFmt = new Intl.DateTimeFormat(locale, { hour: '2-digit', minute: '2-digit', second: '2-digit' });
    var hmFmt = new Intl.DateTimeFormat(locale, { hour: '2-digit', minute: '2-digit' });
    var dateTimeFmt = new Intl.DateTimeFormat(locale, {
        day: 'numeric', month: 'short', hour: '2-digit', minute: '2-digit', second: '2-digit'
    });

    function num(n) { return intFmt.format(n); }

    /* A ratio as a percent with exactly `digits` decimals (0.3808 -> "38,08 %" with 2). */
    function pct(x, digits) {
        var d = digits === undefined ? 1 : digits;
        if (!pctFmts[d]) {
            pctFmts[d] = new Intl.NumberFormat(locale, {
                style: 'percent', minimumFractionDigits: d, maximumFractionDigits: d
            });
        }
        return pctFmts[d].format(x);
    }

    window.Tally = window.Tally || {};
    window.Tally.i18n = {
        lang: lang,
        locale: locale,
        strings: STRINGS,
        t: t,
        tn: tn,
        parts: parts,
        apply: apply,
        num: num,
        pct: pct,
        compact: function (n) { return compactFmt.format(n); },
        time: function (d) { return timeFmt.format(d); },
        hm: function (d) { return hmFmt.format(d); },
        dateTime: function (d) { return dateTimeFmt.format(d); },
        collator: new Intl.Collator(locale, { numeric: true, sensitivity: 'base' })
    };
})();
