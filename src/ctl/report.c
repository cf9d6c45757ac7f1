/* The certification's files from a struct ctl_report: ranking through src/rules, the
 * states summed from the circuits, projects.csv, circuits.csv, states.csv and the printable
 * report.html (Spanish, inline CSS, no script, no external reference). The export formats
 * are in export_fmt.c. Pure: no database, no clock. */
#include "ctl/report.h"

#include "core/xalloc.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- ranking and states ---------------------------------------------------------------- */

static void rank_circuit(const struct ctl_report *r, struct ctl_rep_circuit *c)
{
    size_t n = c->n_projects;
    struct rules_project *in = xcalloc(n ? n : 1, sizeof(*in));
    struct rules_outcome *out = xcalloc(n ? n : 1, sizeof(*out));
    uint32_t *order = xcalloc(n ? n : 1, sizeof(*order));
    struct ctl_rep_project *copy = xcalloc(n ? n : 1, sizeof(*copy));
    for (size_t i = 0; i < n; i++)
        in[i] = (struct rules_project){c->projects[i].id, c->projects[i].votes,
                                       c->projects[i].min_votes};
    struct rules_lot lot = {r->seed, r->seed_len};
    rules_circuit_rank(in, n, c->seats, c->remaining, r->use_lot && r->seed ? &lot : NULL, order,
                       out, &c->res);
    for (size_t k = 0; k < n; k++) {
        copy[k] = c->projects[order[k]];
        copy[k].out = out[order[k]];
    }
    if (n)
        memcpy(c->projects, copy, n * sizeof(*copy));
    free(copy);
    free(order);
    free(out);
    free(in);
}

void ctl_report_finish(struct ctl_report *r)
{
    r->states = xcalloc(r->n_circuits ? r->n_circuits : 1, sizeof(*r->states));
    r->n_states = 0;
    for (size_t i = 0; i < r->n_circuits; i++) {
        struct ctl_rep_circuit *c = &r->circuits[i];
        rank_circuit(r, c);
        const char *name = c->state ? c->state : "";
        size_t k = 0;
        while (k < r->n_states && strcmp(r->states[k].name, name) != 0)
            k++;
        if (k == r->n_states) {
            /* Insert in byte order. */
            while (k > 0 && strcmp(r->states[k - 1].name, name) > 0) {
                r->states[k] = r->states[k - 1];
                k--;
            }
            memset(&r->states[k], 0, sizeof(r->states[k]));
            r->states[k].name = name;
            r->n_states++;
        }
        struct ctl_rep_state *s = &r->states[k];
        s->circuits++;
        s->tables += c->tables;
        s->tables_reported += c->tables_reported;
        s->electors += c->electors;
        s->electors_reported += c->electors_reported;
        s->ballots += c->ballots;
    }
}

void ctl_report_cleanup(struct ctl_report *r)
{
    free(r->states);
    r->states = NULL;
    r->n_states = 0;
}

/* ---- small writers -------------------------------------------------------------------- */

const char *ctl_report_status(const struct ctl_report *r)
{
    return r->official ? "official" : "provisional";
}

void ctl_hex(const uint8_t *b, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[b[i] >> 4];
        out[2 * i + 1] = digits[b[i] & 15];
    }
    out[2 * n] = '\0';
}

/* ballots / electors in units of 1/10^digits, rounded half up. */
static uint64_t ratio_units(uint64_t ballots, uint64_t electors, uint64_t scale)
{
    unsigned __int128 num = (unsigned __int128)ballots * scale * 2 + electors;
    return (uint64_t)(num / ((unsigned __int128)electors * 2));
}

void ctl_turnout_text(uint64_t ballots, uint64_t electors_reported, char out[32])
{
    if (electors_reported == 0) {
        out[0] = '\0';
        return;
    }
    uint64_t u = ratio_units(ballots, electors_reported, 10000);
    snprintf(out, 32, "%" PRIu64 ".%04" PRIu64, u / 10000, u % 10000);
}

/* "45,12 %" (two decimals, Spanish comma), "—" when nothing reported. */
static void turnout_es(uint64_t ballots, uint64_t electors_reported, char out[40])
{
    if (electors_reported == 0) {
        snprintf(out, 40, "\xe2\x80\x94");
        return;
    }
    uint64_t u = ratio_units(ballots, electors_reported, 10000);
    snprintf(out, 40, "%" PRIu64 ",%02" PRIu64 " %%", u / 100, u % 100);
}

void ctl_html_escape(FILE *f, const char *s)
{
    for (; s && *s; s++) {
        switch (*s) {
        case '&':
            fputs("&amp;", f);
            break;
        case '<':
            fputs("&lt;", f);
            break;
        case '>':
            fputs("&gt;", f);
            break;
        case '"':
            fputs("&quot;", f);
            break;
        case '\'':
            fputs("&#39;", f);
            break;
        default:
            fputc(*s, f);
        }
    }
}

void ctl_csv_field(FILE *f, const char *s, char sep)
{
    if (!s)
        s = "";
    size_t n = strlen(s);
    bool quote = n > 0 && (s[0] == ' ' || s[n - 1] == ' ');
    for (const char *p = s; *p && !quote; p++)
        quote = *p == sep || *p == '"' || *p == '\r' || *p == '\n';
    if (!quote) {
        fputs(s, f);
        return;
    }
    fputc('"', f);
    for (const char *p = s; *p; p++) {
        if (*p == '"')
            fputc('"', f);
        fputc(*p, f);
    }
    fputc('"', f);
}

static const char *tf(bool b)
{
    return b ? "true" : "false";
}

static int stream_ok(FILE *f)
{
    return ferror(f) ? -1 : 0;
}

/* ---- the certification's CSV files ---------------------------------------------------- */

int ctl_report_projects_csv(FILE *f, const struct ctl_report *r)
{
    fputs("project_id,project_name,circuit_id,state,votes,rank,winner,tie,by_lot\n", f);
    for (size_t i = 0; i < r->n_circuits; i++) {
        const struct ctl_rep_circuit *c = &r->circuits[i];
        for (size_t k = 0; k < c->n_projects; k++) {
            const struct ctl_rep_project *p = &c->projects[k];
            fprintf(f, "%" PRIu32 ",", p->id);
            ctl_csv_field(f, p->name, ',');
            fprintf(f, ",%" PRIu32 ",", c->id);
            ctl_csv_field(f, c->state, ',');
            fprintf(f, ",%" PRIu64 ",%" PRIu32 ",%s,%s,%s\n", p->votes, p->out.rank,
                    tf(p->out.winner), tf(p->out.tie), tf(p->out.by_lot));
        }
    }
    return stream_ok(f);
}

int ctl_report_circuits_csv(FILE *f, const struct ctl_report *r)
{
    fputs("circuit_id,circuit_name,state,seats,tables,tables_reported,electors,ballots,turnout,"
          "winners,tie\n",
          f);
    for (size_t i = 0; i < r->n_circuits; i++) {
        const struct ctl_rep_circuit *c = &r->circuits[i];
        char t[32];
        ctl_turnout_text(c->ballots, c->electors_reported, t);
        fprintf(f, "%" PRIu32 ",", c->id);
        ctl_csv_field(f, c->name, ',');
        fputc(',', f);
        ctl_csv_field(f, c->state, ',');
        fprintf(f,
                ",%" PRIu32 ",%" PRIu64 ",%" PRIu64 ",%" PRIu64 ",%" PRIu64 ",%s,%" PRIu32 ",%s\n",
                c->seats, c->tables, c->tables_reported, c->electors, c->ballots, t, c->res.winners,
                tf(c->res.tie));
    }
    return stream_ok(f);
}

int ctl_report_states_csv(FILE *f, const struct ctl_report *r)
{
    fputs("state,circuits,tables,tables_reported,electors,ballots,turnout\n", f);
    for (size_t i = 0; i < r->n_states; i++) {
        const struct ctl_rep_state *s = &r->states[i];
        char t[32];
        ctl_turnout_text(s->ballots, s->electors_reported, t);
        ctl_csv_field(f, s->name, ',');
        fprintf(f, ",%" PRIu64 ",%" PRIu64 ",%" PRIu64 ",%" PRIu64 ",%" PRIu64 ",%s\n", s->circuits,
                s->tables, s->tables_reported, s->electors, s->ballots, t);
    }
    return stream_ok(f);
}

/* ---- report.html ---------------------------------------------------------------------- */

static const char html_css[] =
    "body{font-family:Georgia,'Times New Roman',serif;color:#111;margin:2em auto;"
    "max-width:60em;padding:0 1em;line-height:1.4}\n"
    "h1{font-size:1.6em;margin-bottom:.2em}h2{font-size:1.3em;border-bottom:2px solid #333;"
    "margin-top:1.6em}h3{font-size:1.1em;margin:1.2em 0 .3em}\n"
    ".status{font-size:1.2em;font-weight:bold;letter-spacing:.05em;text-transform:uppercase}\n"
    ".hash{font-family:'DejaVu Sans Mono',Menlo,monospace;font-size:.85em;word-break:break-all}\n"
    "table{border-collapse:collapse;width:100%;margin:.4em 0 1em}\n"
    "th,td{border:1px solid #999;padding:.25em .5em;text-align:left;vertical-align:top}\n"
    "th{background:#eee}td.n{text-align:right;font-variant-numeric:tabular-nums}\n"
    "tr.win td{font-weight:bold}.tie{color:#8a4b00;font-weight:bold}\n"
    ".box{border:1px solid #333;padding:.6em 1em;margin:1em 0}\n"
    ".small{font-size:.85em;color:#444}\n"
    "@media print{body{margin:0;max-width:none;font-size:10.5pt}"
    "h2{page-break-after:avoid}section.circuit{page-break-inside:avoid}"
    "th{background:#ddd!important;-webkit-print-color-adjust:exact;print-color-adjust:exact}"
    ".noprint{display:none}@page{margin:1.5cm}}\n";

static void html_time(FILE *f, int64_t us)
{
    time_t t = (time_t)(us / 1000000);
    struct tm tm;
    char buf[40];
    if (gmtime_r(&t, &tm) && strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M:%S UTC", &tm))
        fputs(buf, f);
}

static void html_num(FILE *f, uint64_t v)
{
    /* Thousands separated by a dot, as Spanish writes them. */
    char digits[24], out[40];
    int n = snprintf(digits, sizeof(digits), "%" PRIu64, v);
    int o = 0;
    for (int i = 0; i < n; i++) {
        if (i > 0 && (n - i) % 3 == 0)
            out[o++] = '.';
        out[o++] = digits[i];
    }
    out[o] = '\0';
    fputs(out, f);
}

static void html_progress_cells(FILE *f, uint64_t tables, uint64_t reported, uint64_t electors,
                                uint64_t electors_reported, uint64_t ballots)
{
    char t[40];
    turnout_es(ballots, electors_reported, t);
    fputs("<td class=\"n\">", f);
    html_num(f, tables);
    fputs("</td><td class=\"n\">", f);
    html_num(f, reported);
    fputs("</td><td class=\"n\">", f);
    html_num(f, electors);
    fputs("</td><td class=\"n\">", f);
    html_num(f, ballots);
    fprintf(f, "</td><td class=\"n\">%s</td>", t);
}

static const char html_progress_head[] =
    "<th>Mesas</th><th>Mesas escrutadas</th><th>Electores</th><th>Papeletas</th>"
    "<th>Participaci\xc3\xb3n</th>";

static void html_outcome(FILE *f, const struct ctl_rep_project *p)
{
    if (p->out.winner && p->out.by_lot)
        fputs("Ganador <span class=\"tie\">(empate decidido por sorteo)</span>", f);
    else if (p->out.winner)
        fputs("Ganador", f);
    else if (p->out.tie)
        fputs("<span class=\"tie\">Empate</span>", f);
    else if (!p->out.eligible)
        fprintf(f, "No alcanza el m\xc3\xadnimo de %" PRIu32 " votos", p->min_votes);
}

static void html_circuit(FILE *f, const struct ctl_rep_circuit *c)
{
    fprintf(f, "<section class=\"circuit\">\n<h3>Circuito %" PRIu32 ": ", c->id);
    ctl_html_escape(f, c->name);
    fprintf(f, "</h3>\n<p>Esca\xc3\xb1os: %" PRIu32 ". Ganadores: %" PRIu32 ".", c->seats,
            c->res.winners);
    bool lot = false;
    for (size_t k = 0; k < c->n_projects; k++)
        lot = lot || c->projects[k].out.by_lot;
    if (c->res.tie && lot)
        fputs(" <span class=\"tie\">Empate en el \xc3\xbaltimo esca\xc3\xb1o, decidido por "
              "sorteo.</span>",
              f);
    else if (c->res.tie)
        fputs(" <span class=\"tie\">Empate en el \xc3\xbaltimo esca\xc3\xb1o: sin decidir "
              "(no hay regla de desempate).</span>",
              f);
    fputs("</p>\n<table><tr>", f);
    fputs(html_progress_head, f);
    fputs("</tr><tr>", f);
    html_progress_cells(f, c->tables, c->tables_reported, c->electors, c->electors_reported,
                        c->ballots);
    fputs("</tr></table>\n<table><tr><th>Puesto</th><th>Proyecto</th><th>Nombre</th>"
          "<th>Votos</th><th>Resultado</th></tr>\n",
          f);
    for (size_t k = 0; k < c->n_projects; k++) {
        const struct ctl_rep_project *p = &c->projects[k];
        fprintf(f, "<tr%s><td class=\"n\">%" PRIu32 "</td><td class=\"n\">%" PRIu32 "</td><td>",
                p->out.winner ? " class=\"win\"" : "", p->out.rank, p->id);
        ctl_html_escape(f, p->name);
        fputs("</td><td class=\"n\">", f);
        html_num(f, p->votes);
        fputs("</td><td>", f);
        html_outcome(f, p);
        fputs("</td></tr>\n", f);
    }
    fputs("</table>\n</section>\n", f);
}

static void html_delta(FILE *f, const char *label, int64_t d, bool *first)
{
    if (d == 0)
        return;
    fprintf(f, "%s", *first ? "" : "; ");
    ctl_html_escape(f, label);
    fprintf(f, " %+" PRId64, d);
    *first = false;
}

static void html_corrections(FILE *f, const struct ctl_report *r)
{
    fputs("<h2>Correcciones</h2>\n", f);
    if (r->n_corrections == 0) {
        fputs("<p>No hubo correcciones del conteo.</p>\n", f);
        return;
    }
    fputs("<table><tr><th>N.\xc2\xba</th><th>Fecha</th><th>Tipo</th><th>Actor</th>"
          "<th>Motivo</th><th>Mesa o lote</th><th>Cambios</th></tr>\n",
          f);
    for (size_t i = 0; i < r->n_corrections; i++) {
        const struct ctl_rep_correction *x = &r->corrections[i];
        fprintf(f, "<tr><td class=\"n\">%" PRIu64 "</td><td>", x->id);
        html_time(f, x->at_us);
        fprintf(f, "</td><td>%s</td><td>", x->retract ? "Retiro de un lote" : "Acta reemplazada");
        ctl_html_escape(f, x->actor);
        fputs("</td><td>", f);
        ctl_html_escape(f, x->reason);
        fputs("</td><td>", f);
        if (x->table_id) {
            fputs("Mesa ", f);
            ctl_html_escape(f, x->table_id);
            if (x->to_version)
                fprintf(f, " (acta v%" PRIu32 " \xe2\x86\x92 v%" PRIu32 ")", x->from_version,
                        x->to_version);
        }
        if (x->collector_id) {
            fputs(x->table_id ? "<br>" : "", f);
            fputs("Lote ", f);
            ctl_html_escape(f, x->collector_id);
            fprintf(f, "/%" PRIu64, x->seq);
        }
        fputs("</td><td>", f);
        bool first = true;
        for (size_t k = 0; k < x->n_deltas; k++) {
            char label[32];
            snprintf(label, sizeof(label), "%" PRIu32 ":", x->project_ids[k]);
            html_delta(f, label, x->deltas[k], &first);
        }
        html_delta(f, "blancos:", x->blank_delta, &first);
        html_delta(f, "nulos:", x->null_delta, &first);
        html_delta(f, "papeletas:", x->ballots_delta, &first);
        fputs("</td></tr>\n", f);
    }
    fputs("</table>\n", f);
}

static void html_header(FILE *f, const struct ctl_report *r)
{
    char hex[65];
    fputs("<!DOCTYPE html>\n<html lang=\"es\">\n<head>\n<meta charset=\"utf-8\">\n<title>", f);
    fputs(r->official ? "Resultados oficiales: " : "Resultados provisionales: ", f);
    ctl_html_escape(f, r->consultation);
    fprintf(f, "</title>\n<style>\n%s</style>\n</head>\n<body>\n<h1>", html_css);
    ctl_html_escape(f, r->consultation);
    fprintf(f, "</h1>\n<p class=\"status\">%s</p>\n<div class=\"box\">\n",
            r->official ? "Resultados oficiales" : "Resultados provisionales");
    ctl_hex(r->head, 32, hex);
    fprintf(f,
            "<p>Cadena del registro: punto de control %" PRIu64 ", hash <span "
            "class=\"hash\">%s</span></p>\n",
            r->checkpoint, hex);
    if (r->certified_by) {
        fputs("<p>Certificado por ", f);
        ctl_html_escape(f, r->certified_by);
        fputs(" el ", f);
        html_time(f, r->certified_us);
        fputs(".</p>\n", f);
    }
    if (r->has_lot) {
        ctl_hex(r->seed_hash, 32, hex);
        fprintf(f,
                "<p>Regla de desempate: sorteo. Hash de la semilla (BLAKE2b-256): <span "
                "class=\"hash\">%s</span></p>\n",
                hex);
        if (r->seed) {
            char seed[2 * 64 + 1];
            ctl_hex(r->seed, r->seed_len > 64 ? 64 : r->seed_len, seed);
            fprintf(f,
                    "<p>Semilla (revelada en la certificaci\xc3\xb3n): <span "
                    "class=\"hash\">%s</span></p>\n",
                    seed);
        }
    } else {
        fputs("<p>Regla de desempate: ninguna (un empate en el \xc3\xbaltimo esca\xc3\xb1o "
              "queda se\xc3\xb1"
              "alado y sin decidir).</p>\n",
              f);
    }
    fputs("</div>\n", f);
}

int ctl_report_html(FILE *f, const struct ctl_report *r)
{
    html_header(f, r);
    struct ctl_rep_state all = {.name = "Total"};
    for (size_t i = 0; i < r->n_states; i++) {
        all.circuits += r->states[i].circuits;
        all.tables += r->states[i].tables;
        all.tables_reported += r->states[i].tables_reported;
        all.electors += r->states[i].electors;
        all.electors_reported += r->states[i].electors_reported;
        all.ballots += r->states[i].ballots;
    }
    fputs("<h2>Participaci\xc3\xb3n por estado</h2>\n<table><tr><th>Estado</th>"
          "<th>Circuitos</th>",
          f);
    fputs(html_progress_head, f);
    fputs("</tr>\n", f);
    for (size_t i = 0; i <= r->n_states; i++) {
        const struct ctl_rep_state *s = i < r->n_states ? &r->states[i] : &all;
        fputs(i < r->n_states ? "<tr><td>" : "<tr class=\"win\"><td>", f);
        ctl_html_escape(f, s->name);
        fputs("</td><td class=\"n\">", f);
        html_num(f, s->circuits);
        fputs("</td>", f);
        html_progress_cells(f, s->tables, s->tables_reported, s->electors, s->electors_reported,
                            s->ballots);
        fputs("</tr>\n", f);
    }
    fputs("</table>\n", f);
    for (size_t i = 0; i < r->n_states; i++) {
        fputs("<h2>Estado: ", f);
        ctl_html_escape(f, r->states[i].name);
        fputs("</h2>\n", f);
        for (size_t k = 0; k < r->n_circuits; k++)
            if (strcmp(r->circuits[k].state ? r->circuits[k].state : "", r->states[i].name) == 0)
                html_circuit(f, &r->circuits[k]);
    }
    html_corrections(f, r);
    fputs("<p class=\"small\">Documento generado por tallyctl certify a partir del registro "
          "verificado; su SHA-256 queda guardado con la certificaci\xc3\xb3n.</p>\n"
          "</body>\n</html>\n",
          f);
    return stream_ok(f);
}
