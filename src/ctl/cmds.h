/* Internal to tallyctl: the commands kept out of tallyctl.c (load_cmd.c, collector_cmd.c,
 * ca_cmd.c) and the error reporting they share with it. Each command returns tallyctl's exit
 * status. */
#ifndef CTL_CMDS_H
#define CTL_CMDS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct store;

enum { EXIT_OK = 0, EXIT_RUNTIME = 1, EXIT_USAGE = 2, EXIT_NOT_APPLIED = 3 };

/* "tallyctl: <message>" on stderr (tallyctl.c). */
void ctl_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* load-registry / load-tables FILE.csv (path "-": stdin), all or nothing; a malformed or
 * conflicting row is reported as FILE:LINE: reason (EXIT_RUNTIME), the summary printed on
 * stdout (load_cmd.c). */
int cmd_load_registry(struct store *s, const char *path);
int cmd_load_tables(struct store *s, const char *path);

/* What add-collector was asked for, checked as far as no database is needed. */
struct ctl_add_collector {
    const char *id;
    const char *cert;   /* --cert FILE, or NULL */
    uint32_t *circuits; /* --circuits LIST, parsed (malloc'd), when restrict_circuits */
    size_t n_circuits;
    bool restrict_circuits;
    bool every_circuit; /* --circuits all */
    const char *state;  /* --state NAME, or NULL */
};

int cmd_add_collector(struct store *s, const struct ctl_add_collector *a, const uint8_t *pin);
int cmd_set_disabled(struct store *s, const char *id, bool disabled);
/* format: "text" or "json" */
int cmd_collectors(struct store *s, const char *format);

/* ---- the organiser's commands (consult_cmd.c, certify.c, export.c) ---- */

/* retract, close, set tie-rule, embargo, certify, export as parsed (strings borrowed from
 * argv). */
struct ctl_consult_args {
    const char *db;  /* --db, NULL: the PG* environment */
    const char *cmd; /* the command word */
    size_t words;    /* words after it */
    const char *collector, *reason, *actor;
    uint64_t seq;
    bool seq_given;
    int wait_ms;      /* --wait-ms, default 30,000 */
    uint8_t seed[64]; /* --seed, decoded */
    size_t seed_len;
    bool embargo_given, embargo_on; /* embargo on|off */
    const char *out;                /* --out DIR */
    bool force;                     /* certify --force */
    const char *format;             /* export --format */
    const char *country;            /* export --country (Pabulib META) */
};

/* The index in argv of the command word when it is one of the organiser's commands (only
 * --db, --help and --version may stand before it), else 0. */
int ctl_consult_command(int argc, char **argv);
/* Parses the whole command line for that command, connects and runs it: tallyctl's exit
 * status (3: a request not applied in time). */
int cmd_consult(int argc, char **argv, int at);
int cmd_certify(struct store *s, const struct ctl_consult_args *a);
int cmd_export(struct store *s, const struct ctl_consult_args *a);

/* No database: the private CA (ca_cmd.c). */
int cmd_ca_init(const char *dir, const char *const *names, size_t n_names);
int cmd_ca_issue(const char *dir, const char *id);

#endif
