/* tally-push --sheets FILE: reads the whole sheets file (every bad line reported, and then
 * nothing sent), resumes after the sheets the spool's newest batch already covers when the
 * file is the same, and spools the rest in sheet batches through libtally. Owns that one
 * run; the options, the wait until durable and the summary stay with main.c, the lines and
 * the packing with sheets.c. */
#include "push/sheets_run.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "core/csv.h"
#include "core/xalloc.h"
#include "push/push.h"
#include "push/sheets.h"
#include "tally/client.h"

/* Reads and parses the file into set, hashing its bytes. Returns 0, or an exit status once
 * the reason was printed. */
static int sheets_read(const struct push_sheets_run *r, struct push_sheet_set *set,
                       uint8_t hash[PUSH_FILE_HASH_BYTES])
{
    crypto_generichash_state st;
    crypto_generichash_init(&st, NULL, 0, PUSH_FILE_HASH_BYTES);
    struct csv_reader *in = csv_reader_new_fd(r->fd, &(const struct csv_options){0});
    uint64_t line = 0, bad = 0;
    int rc = 0;
    for (;;) {
        if (*r->stop) {
            rc = PUSH_EXIT_FATAL;
            break;
        }
        char *text;
        size_t n;
        int got = csv_reader_line(in, &text, &n);
        if (got < 0 && csv_reader_error(in)->sys == EINTR)
            continue;
        if (got < 0) {
            fprintf(stderr, "tally-push: %s: %s\n", r->name, strerror(csv_reader_error(in)->sys));
            rc = PUSH_EXIT_FATAL;
            break;
        }
        if (got == 0)
            break;
        crypto_generichash_update(&st, (const uint8_t *)text, n);
        line++;
        struct push_sheet_line l;
        char err[256];
        switch (push_sheet_line_parse(text, n, line == 1, &l)) {
        case PUSH_SHEET_ROW:
            if (push_sheet_set_add(set, &l, line, err, sizeof(err)) < 0) {
                fprintf(stderr, "tally-push: %s:%" PRIu64 ": %s\n", r->name, line, err);
                bad++;
            }
            break;
        case PUSH_SHEET_MALFORMED:
            fprintf(stderr, "tally-push: %s:%" PRIu64 ": %s\n", r->name, line, l.reason);
            bad++;
            break;
        case PUSH_SHEET_HEADER:
        case PUSH_SHEET_BLANK:
            break;
        }
    }
    csv_reader_free(in);
    crypto_generichash_final(&st, hash, PUSH_FILE_HASH_BYTES);
    if (rc)
        return rc;
    if (line == 0) {
        fprintf(stderr, "tally-push: %s is empty: a sheets file starts with the header %s\n",
                r->name, PUSH_SHEETS_HEADER);
        return PUSH_EXIT_MALFORMED;
    }
    if (bad) {
        /* A sheet missing a row would count wrong figures: all or nothing. */
        fprintf(stderr, "tally-push: %s: %" PRIu64 " bad line%s: no sheet sent\n", r->name, bad,
                bad == 1 ? "" : "s");
        return PUSH_EXIT_MALFORMED;
    }
    return 0;
}

/* The sheets of this file the spool already holds: those of the newest cursor if it is this
 * file's (a resumed run), else none (another file, or a spool that only sent votes: a sheet
 * sent again is a duplicate, not counted twice). Returns 0, or an exit status. */
static int sheets_resume(const struct push_sheets_run *r, const uint8_t hash[PUSH_FILE_HASH_BYTES],
                         size_t total, size_t *done)
{
    uint8_t blob[TALLY_CLIENT_CURSOR_MAX];
    size_t len;
    uint64_t d;
    uint8_t h[PUSH_FILE_HASH_BYTES];
    *done = 0;
    if (tally_client_last_cursor(r->client, blob, sizeof(blob), &len) < 0)
        return PUSH_EXIT_FATAL;
    if (len == 0 || push_sheet_cursor_decode(blob, len, &d, h) < 0 ||
        memcmp(h, hash, sizeof(h)) != 0)
        return 0;
    if (d > total) {
        fprintf(stderr,
                "tally-push: spool %s says %" PRIu64 " sheets of %s were spooled, but it "
                "holds %zu\n",
                r->spool, d, r->name, total);
        return PUSH_EXIT_FATAL;
    }
    *done = (size_t)d;
    if (!r->quiet && d)
        fprintf(stderr, "tally-push: resuming %s after sheet %" PRIu64 " of %zu\n", r->name, d,
                total);
    return 0;
}

/* Spools sheets[first .. first + k) as one batch, pumping while the spool is full. */
static int sheets_spool(const struct push_sheets_run *r, const struct push_sheet_set *set,
                        size_t first, size_t k, const uint8_t hash[PUSH_FILE_HASH_BYTES])
{
    struct tally_client_sheet *sh = xcalloc(k, sizeof(*sh));
    for (size_t i = 0; i < k; i++) {
        const struct push_sheet *p = &set->sheets[first + i];
        sh[i] = (struct tally_client_sheet){
            .table_id = p->table_id,
            .version = p->version,
            .projects = p->projects,
            .votes = p->votes,
            .n = p->n,
            .blank = p->blank,
            .null_ballots = p->null_ballots,
        };
    }
    uint8_t cur[PUSH_SHEET_CURSOR_BYTES];
    push_sheet_cursor_encode(first + k, hash, cur);
    int e = 0;
    for (;;) {
        int rc = tally_client_spool_sheets(r->client, sh, k, cur, sizeof(cur), NULL);
        if (rc == 0)
            break;
        if (rc != TALLY_CLIENT_ERR_FULL) {
            e = r->check(r->arg, rc);
            if (!e)
                e = PUSH_EXIT_FATAL; /* INVALID: the packing is wrong */
            break;
        }
        if ((e = r->check(r->arg, tally_client_pump(r->client, 200))) != 0)
            break;
    }
    free(sh);
    if (!e)
        e = r->check(r->arg, tally_client_pump(r->client, 0));
    return e;
}

int push_sheets_run(const struct push_sheets_run *r)
{
    struct push_sheet_set set;
    push_sheet_set_init(&set);
    uint8_t hash[PUSH_FILE_HASH_BYTES];
    size_t done = 0;
    int rc = sheets_read(r, &set, hash);
    if (rc == 0)
        rc = sheets_resume(r, hash, set.n, &done);
    /* The server's row limit, from its Welcome. */
    struct tally_client_stats st;
    while (rc == 0) {
        tally_client_stats(r->client, &st);
        if (st.server_known)
            break;
        rc = r->check(r->arg, tally_client_pump(r->client, 250));
    }
    if (rc == 0 && set.n > done) {
        uint32_t max_rows = st.max_batch_votes ? st.max_batch_votes : TALLY_DEFAULT_MAX_BATCH_VOTES;
        const struct push_sheet *w = &set.sheets[push_sheet_set_widest(&set)];
        if (w->n > max_rows) {
            fprintf(stderr,
                    "tally-push: %s:%" PRIu64 ": sheet %s version %" PRIu32 " has %zu rows; "
                    "tallyd takes at most %" PRIu32 " in a batch: no sheet sent\n",
                    r->name, w->line, w->table_id, w->version, w->n, max_rows);
            rc = PUSH_EXIT_MALFORMED;
        }
        for (size_t i = done; rc == 0 && i < set.n;) {
            size_t k = push_sheet_set_pack(&set, i, max_rows);
            rc = sheets_spool(r, &set, i, k, hash);
            i += k;
        }
    }
    if (rc == 0 && !r->quiet)
        fprintf(stderr, "tally-push: %s: %zu sheets (%zu spooled by this run)\n", r->name, set.n,
                set.n - done);
    push_sheet_set_cleanup(&set);
    return rc;
}
