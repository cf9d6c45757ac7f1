/* Internal to the store module: the connection struct and helpers shared by its files.
 * Nothing outside src/store includes this. */
#ifndef STORE_INTERNAL_H
#define STORE_INTERNAL_H

#include "core/endian.h"
#include <libpq-fe.h>
#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

#define STORE_ERR_LEN 512

/* Advisory lock keys (pg_advisory_xact_lock), one per serialised operation. They share
 * PostgreSQL's single lock space with tallyd's HA lock, so they are spelled out here. */
#define STORE_LOCK_MIGRATE 0x74616c6c7901LL  /* "tally" 01 */
#define STORE_LOCK_REGISTRY 0x74616c6c7902LL /* "tally" 02 */

struct store {
    PGconn *conn;
    char err[STORE_ERR_LEN]; /* last error, one line */
};

/* One embedded migration (generated from src/store/migrations/NNN_name.sql). */
struct store_migration {
    int version;
    const char *name;
    const char *sql;
};
extern const struct store_migration store_migrations[];
extern const size_t store_n_migrations;

/* Records a formatted one-line error as the connection's last error. */
void store_set_error(struct store *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Classifies a failed result (res may be NULL) as STORE_RETRY (connection lost, or
 * SQLSTATE class 08, 40, 53, 57) or STORE_FATAL, records the message as the last
 * error prefixed by what, and logs nothing. Does not clear res. */
enum store_result store_classify(struct store *s, const PGresult *res, const char *what);

/* Runs a parameterless command that returns no rows; on failure records the error
 * (classified as above) and returns STORE_RETRY or STORE_FATAL. */
enum store_result store_exec_cmd(struct store *s, const char *sql);

/* Rolls back the open transaction, if the connection still works; errors are ignored
 * because the caller is already failing. */
void store_rollback(struct store *s);

/* Runs a parameterless query expected to return rows; NULL on failure, with the error
 * recorded (what names the step in the message). */
PGresult *store_query_rows(struct store *s, const char *sql, const char *what);

/* Parses an unsigned decimal column value; returns 0 or -1. */
int store_parse_u64(const char *text, uint64_t max, uint64_t *out);

#endif
