/* The export's file formats from a ranked struct ctl_report: per circuit CSV, JSON and
 * Pabulib (.pb: META, PROJECTS, VOTES with one anonymous line per counted vote), and the
 * index in CSV or JSON; each carries the chain head and the status. Under the embargo CSV
 * and JSON carry progress only, and Pabulib is refused. Pure: no database, no clock. */
#include "ctl/report.h"
#include "ctl/text.h"

#include "core/xalloc.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

static const char *tf(bool b)
{
    return b ? "true" : "false";
}

static int stream_ok(FILE *f)
{
    return ferror(f) ? -1 : 0;
}

/* status,head,checkpoint as the first three fields of a row. */
static void csv_lead(FILE *f, const struct ctl_report *r)
{
    char hex[65];
    ctl_hex(r->head, 32, hex);
    fprintf(f, "%s,%s,%" PRIu64 ",", ctl_report_status(r), hex, r->checkpoint);
}

/* circuit_id..turnout of circuit c. */
static void csv_circuit(FILE *f, const struct ctl_rep_circuit *c)
{
    char t[32];
    ctl_turnout_text(c->ballots, c->electors_reported, t);
    fprintf(f, "%" PRIu32 ",", c->id);
    ctl_csv_field(f, c->name, ',');
    fputc(',', f);
    ctl_csv_field(f, c->state, ',');
    fprintf(f, ",%" PRIu32 ",%" PRIu64 ",%" PRIu64 ",%" PRIu64 ",%" PRIu64 ",%s", c->seats,
            c->tables, c->tables_reported, c->electors, c->ballots, t);
}

static const char csv_circuit_head[] =
    "status,head,checkpoint,circuit_id,circuit_name,state,seats,tables,tables_reported,"
    "electors,ballots,turnout";

int ctl_export_circuit_csv(FILE *f, const struct ctl_report *r, size_t ci)
{
    const struct ctl_rep_circuit *c = &r->circuits[ci];
    fputs(csv_circuit_head, f);
    if (r->embargo) {
        fputc('\n', f);
        csv_lead(f, r);
        csv_circuit(f, c);
        fputc('\n', f);
        return stream_ok(f);
    }
    fputs(",project_id,project_name,votes,rank,winner,tie,by_lot\n", f);
    for (size_t k = 0; k < c->n_projects; k++) {
        const struct ctl_rep_project *p = &c->projects[k];
        csv_lead(f, r);
        csv_circuit(f, c);
        fprintf(f, ",%" PRIu32 ",", p->id);
        ctl_csv_field(f, p->name, ',');
        fprintf(f, ",%" PRIu64 ",%" PRIu32 ",%s,%s,%s\n", p->votes, p->out.rank, tf(p->out.winner),
                tf(p->out.tie), tf(p->out.by_lot));
    }
    return stream_ok(f);
}

int ctl_export_index_csv(FILE *f, const struct ctl_report *r, const char *ext)
{
    fputs(csv_circuit_head, f);
    fputs(r->embargo ? ",file\n" : ",winners,tie,decided,file\n", f);
    for (size_t i = 0; i < r->n_circuits; i++) {
        const struct ctl_rep_circuit *c = &r->circuits[i];
        csv_lead(f, r);
        csv_circuit(f, c);
        if (!r->embargo)
            fprintf(f, ",%" PRIu32 ",%s,%s", c->res.winners, tf(c->res.tie), tf(c->res.decided));
        fprintf(f, ",circuit-%" PRIu32 ".%s\n", c->id, ext);
    }
    return stream_ok(f);
}

/* ---- JSON --------------------------------------------------------------------------- */

static void json_lead(FILE *f, const struct ctl_report *r)
{
    char hex[65];
    ctl_hex(r->head, 32, hex);
    fputs("{\"consultation\": ", f);
    ctl_json_write_string(f, r->consultation ? r->consultation : "");
    fprintf(f,
            ", \"status\": \"%s\", \"head\": \"%s\", \"checkpoint\": %" PRIu64 ", \"embargo\": %s",
            ctl_report_status(r), hex, r->checkpoint, tf(r->embargo));
}

/* Circuit c as one object; with projects its ranked projects, with ext its file name. */
static void json_circuit(FILE *f, const struct ctl_report *r, const struct ctl_rep_circuit *c,
                         bool projects, const char *ext)
{
    char t[32];
    ctl_turnout_text(c->ballots, c->electors_reported, t);
    fprintf(f, "{\"id\": %" PRIu32 ", \"name\": ", c->id);
    ctl_json_write_string(f, c->name ? c->name : "");
    fputs(", \"state\": ", f);
    ctl_json_write_string(f, c->state ? c->state : "");
    fprintf(f,
            ", \"seats\": %" PRIu32 ", \"tables\": %" PRIu64 ", \"tables_reported\": %" PRIu64
            ", \"electors\": %" PRIu64 ", \"electors_reported\": %" PRIu64 ", \"ballots\": %" PRIu64
            ", \"turnout\": %s",
            c->seats, c->tables, c->tables_reported, c->electors, c->electors_reported, c->ballots,
            t[0] ? t : "null");
    if (ext)
        fprintf(f, ", \"file\": \"circuit-%" PRIu32 ".%s\"", c->id, ext);
    if (r->embargo) {
        fputc('}', f);
        return;
    }
    fprintf(f, ", \"winners\": %" PRIu32 ", \"tie\": %s, \"decided\": %s", c->res.winners,
            tf(c->res.tie), tf(c->res.decided));
    if (!projects) {
        fputc('}', f);
        return;
    }
    fputs(", \"projects\": [", f);
    for (size_t k = 0; k < c->n_projects; k++) {
        const struct ctl_rep_project *p = &c->projects[k];
        fprintf(f, "%s\n    {\"id\": %" PRIu32 ", \"name\": ", k ? "," : "", p->id);
        ctl_json_write_string(f, p->name ? p->name : "");
        fprintf(f,
                ", \"votes\": %" PRIu64 ", \"min_votes\": %" PRIu32 ", \"rank\": %" PRIu32
                ", \"eligible\": %s, \"winner\": %s, \"tie\": %s, \"by_lot\": %s}",
                p->votes, p->min_votes, p->out.rank, tf(p->out.eligible), tf(p->out.winner),
                tf(p->out.tie), tf(p->out.by_lot));
    }
    fputs(c->n_projects ? "\n  ]}" : "]}", f);
}

int ctl_export_circuit_json(FILE *f, const struct ctl_report *r, size_t ci)
{
    json_lead(f, r);
    fputs(",\n  \"circuit\": ", f);
    json_circuit(f, r, &r->circuits[ci], true, NULL);
    fputs("}\n", f);
    return stream_ok(f);
}

int ctl_export_index_json(FILE *f, const struct ctl_report *r, const char *ext)
{
    json_lead(f, r);
    fputs(", \"circuits\": [", f);
    for (size_t i = 0; i < r->n_circuits; i++) {
        const struct ctl_rep_circuit *c = &r->circuits[i];
        fputs(i ? ",\n  " : "\n  ", f);
        json_circuit(f, r, c, false, ext);
    }
    fputs(r->n_circuits ? "\n]}\n" : "]}\n", f);
    return stream_ok(f);
}

/* ---- Pabulib ------------------------------------------------------------------------ */

/* A META value on one line: line breaks become spaces (a key;value line holds one). */
static void pb_value(FILE *f, const char *s)
{
    char buf[512];
    size_t n = 0;
    for (; s && *s && n + 1 < sizeof(buf); s++)
        buf[n++] = (*s == '\n' || *s == '\r') ? ' ' : *s;
    buf[n] = '\0';
    ctl_csv_field(f, buf, ';');
}

static int pb_cmp_id(const void *a, const void *b)
{
    uint32_t x = (*(const struct ctl_rep_project *const *)a)->id;
    uint32_t y = (*(const struct ctl_rep_project *const *)b)->id;
    return x < y ? -1 : x > y;
}

int ctl_export_circuit_pabulib(FILE *f, const struct ctl_report *r, size_t ci,
                               ctl_export_tick_cb tick, void *arg)
{
    if (r->embargo)
        return -1;
    const struct ctl_rep_circuit *c = &r->circuits[ci];
    /* PROJECTS and VOTES in ascending project id. */
    size_t n = c->n_projects;
    const struct ctl_rep_project **by_id = xcalloc(n ? n : 1, sizeof(*by_id));
    uint64_t votes = 0;
    for (size_t k = 0; k < n; k++) {
        by_id[k] = &c->projects[k];
        votes += c->projects[k].votes;
    }
    qsort(by_id, n, sizeof(*by_id), pb_cmp_id);
    char hex[65], unit[64];
    ctl_hex(r->head, 32, hex);
    fputs("META\nkey;value\ndescription;", f);
    pb_value(f, r->consultation);
    fputs("\ncountry;", f);
    pb_value(f, r->country ? r->country : "unknown");
    fputs("\nunit;", f);
    snprintf(unit, sizeof(unit), "%" PRIu32 " ", c->id);
    fputs(unit, f); /* "<id> <name>": a name alone need not be unique */
    pb_value(f, c->name);
    fputs("\ninstance;", f);
    pb_value(f, r->instance ? r->instance : "");
    fprintf(f,
            "\nnum_projects;%zu\nnum_votes;%" PRIu64 "\nbudget;%" PRIu32
            "\nvote_type;choose-1\nrule;greedy\n",
            n, votes, c->seats);
    fprintf(f,
            "comment;#1: %s results, chain head %s at checkpoint %" PRIu64 " (tallyctl export)\n",
            ctl_report_status(r), hex, r->checkpoint);
    fputs("PROJECTS\nproject_id;cost;votes;name\n", f);
    for (size_t k = 0; k < n; k++) {
        fprintf(f, "%" PRIu32 ";1;%" PRIu64 ";", by_id[k]->id, by_id[k]->votes);
        pb_value(f, by_id[k]->name);
        fputc('\n', f);
    }
    fputs("VOTES\nvoter_id;vote\n", f);
    uint64_t line = 0;
    for (size_t k = 0; k < n && !ferror(f); k++) {
        for (uint64_t v = 0; v < by_id[k]->votes; v++) {
            fprintf(f, "%" PRIu64 ";%" PRIu32 "\n", ++line, by_id[k]->id);
            if (tick && (line & 0xffff) == 0)
                tick(arg, line);
            if ((line & 0xffff) == 0 && ferror(f))
                break;
        }
    }
    free(by_id);
    return stream_ok(f);
}
