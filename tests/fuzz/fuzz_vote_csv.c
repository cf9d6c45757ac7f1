/* Fuzz harness: tally-push's vote input, as its main loop reads it: core/csv.c's raw lines
 * (a buffer reader and an fd reader over the same bytes must hand over the same lines),
 * each parsed by push_line_parse (first line: BOM and header rules). A vote line re-quoted
 * and parsed again must give the same voter, project and table (a valid table id when
 * given). The same lines go through push_sheet_line_parse (tally-push --sheets) into a sheet
 * set: a row holds what the header promises. The key file and cursor parsers
 * (push_key_parse, push_cursor_decode) see the input too. */
#include "fuzz.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/csv.h"
#include "push/push.h"
#include "push/sheets.h"

static int memfd = -1;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    memfd = memfd_create("fuzz_vote_csv", MFD_CLOEXEC);
    FUZZ_ASSERT(memfd >= 0);
    return 0;
}

/* "voter",project[,table]\n with the voter quoted and '"' doubled, parsed back. */
static void requote(const struct push_line *pl)
{
    size_t cap = 2 * pl->voter_len + pl->table_len + 24;
    char *s = malloc(cap);
    size_t n = 0;
    s[n++] = '"';
    for (size_t i = 0; i < pl->voter_len; i++) {
        if (pl->voter[i] == '"')
            s[n++] = '"';
        s[n++] = pl->voter[i];
    }
    n += (size_t)snprintf(s + n, cap - n, "\",%u", pl->project);
    if (pl->table_len) {
        FUZZ_ASSERT(push_table_id_is_valid(pl->table, pl->table_len));
        s[n++] = ',';
        memcpy(s + n, pl->table, pl->table_len);
        n += pl->table_len;
    }
    s[n++] = '\n';
    struct push_line back;
    /* Not the first line: a voter starting with a BOM stays as it is. */
    enum push_line_kind k = push_line_parse(s, n, false, &back);
    FUZZ_ASSERT(k == PUSH_LINE_VOTE);
    FUZZ_ASSERT(back.voter_len == pl->voter_len && back.project == pl->project);
    FUZZ_ASSERT(memcmp(back.voter, pl->voter, pl->voter_len) == 0);
    FUZZ_ASSERT(back.table_len == pl->table_len);
    FUZZ_ASSERT(pl->table_len == 0 || memcmp(back.table, pl->table, pl->table_len) == 0);
    free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    FUZZ_ASSERT(ftruncate(memfd, 0) == 0);
    FUZZ_ASSERT(pwrite(memfd, data, size, 0) == (ssize_t)size);
    FUZZ_ASSERT(lseek(memfd, 0, SEEK_SET) == 0);
    static const struct csv_options opt = {0}; /* what tally-push passes */
    struct csv_reader *rb = csv_reader_new_buffer((const char *)data, size, &opt);
    struct csv_reader *rf = csv_reader_new_fd(memfd, &opt);
    uint64_t lineno = 0, votes = 0, total = 0;
    struct push_sheet_set sheets;
    push_sheet_set_init(&sheets);
    bool malformed = false;
    for (;;) {
        char *line, *fline;
        size_t len, flen;
        int got = csv_reader_line(rb, &line, &len);
        int fgot = csv_reader_line(rf, &fline, &flen);
        FUZZ_ASSERT(got == fgot && got >= 0);
        if (got == 0)
            break;
        FUZZ_ASSERT(len == flen && memcmp(line, fline, len) == 0);
        FUZZ_ASSERT(len > 0);
        /* A line ends at its "\n" or at the end of the input, nowhere else. */
        FUZZ_ASSERT(memchr(line, '\n', len) == NULL || memchr(line, '\n', len) == line + len - 1);
        total += len;
        lineno++;
        /* As a sheets line, on a copy: both parsers unquote in place. */
        char *copy = malloc(len);
        memcpy(copy, line, len);
        struct push_sheet_line sl;
        if (push_sheet_line_parse(copy, len, lineno == 1, &sl) == PUSH_SHEET_ROW) {
            FUZZ_ASSERT(sl.version >= 1 && sl.votes <= PUSH_SHEET_VOTES_MAX);
            FUZZ_ASSERT(push_table_id_is_valid(sl.table_id, strlen(sl.table_id)));
            char err[256];
            if (push_sheet_set_add(&sheets, &sl, lineno, err, sizeof(err)) < 0)
                FUZZ_ASSERT(strstr(err, "given twice"));
        }
        free(copy);
        struct push_line pl;
        enum push_line_kind k = push_line_parse(line, len, lineno == 1, &pl);
        switch (k) {
        case PUSH_LINE_VOTE:
            FUZZ_ASSERT(pl.voter_len > 0 && pl.voter >= line &&
                        pl.voter + pl.voter_len <= line + len);
            (void)push_token(push_demo_key, pl.voter, pl.voter_len);
            requote(&pl);
            votes++;
            break;
        case PUSH_LINE_MALFORMED:
            FUZZ_ASSERT(pl.reason && pl.reason[0]);
            malformed = true;
            break;
        case PUSH_LINE_HEADER:
            FUZZ_ASSERT(lineno == 1);
            break;
        case PUSH_LINE_BLANK:
            break;
        default:
            FUZZ_ASSERT(!"unknown line kind");
        }
    }
    FUZZ_ASSERT(total == size); /* every byte is in exactly one line */
    uint64_t rows = 0;
    for (size_t i = 0; i < sheets.n; i++)
        rows += sheets.sheets[i].n;
    FUZZ_ASSERT(rows == sheets.rows);
    for (size_t i = 0; i < sheets.n;) {
        size_t k = push_sheet_set_pack(&sheets, i, 8);
        FUZZ_ASSERT(k >= 1 && k <= PUSH_SHEETS_PER_BATCH);
        i += k;
    }
    push_sheet_set_cleanup(&sheets);
    csv_reader_free(rb);
    csv_reader_free(rf);

    uint8_t key[PUSH_KEY_BYTES];
    if (push_key_parse(data, size, key) == 0)
        FUZZ_ASSERT(size == PUSH_KEY_BYTES
                        ? memcmp(key, data, PUSH_KEY_BYTES) == 0
                        : size >= 2 * PUSH_KEY_BYTES && size <= 2 * PUSH_KEY_BYTES + 2);
    struct push_cursor cur;
    if (push_cursor_decode(data, size, &cur) == 0) {
        uint8_t again[PUSH_CURSOR_BYTES];
        push_cursor_encode(&cur, again);
        FUZZ_ASSERT(memcmp(again, data, PUSH_CURSOR_BYTES) == 0);
    }
    fuzz_verdict = malformed ? FUZZ_REFUSED : FUZZ_ACCEPTED;
    (void)votes;
    return 0;
}
