/* The wording of core/csv.h's syntax errors and the integer fields shared by tallyctl's CSV
 * readers. Each reader keeps its own header, field checks and error state; this file only
 * words what is the same for all of them. */
#include "ctl/csv_common.h"

#include <stdio.h>
#include <string.h>

void ctl_csv_syntax_reason(const struct csv_error *e, size_t max_record, char *buf, size_t len)
{
    switch (e->code) {
    case CSV_ERR_UNTERMINATED:
        snprintf(buf, len, "unterminated quoted field (quote opened here)");
        return;
    case CSV_ERR_AFTER_QUOTE:
        snprintf(buf, len, "unexpected character after closing quote in field %zu", e->field);
        return;
    case CSV_ERR_BARE_QUOTE:
        snprintf(buf, len,
                 "quote inside unquoted field %zu (quote the whole field and double the quote)",
                 e->field);
        return;
    case CSV_ERR_LONE_CR:
        snprintf(buf, len, "carriage return not followed by a line feed");
        return;
    case CSV_ERR_NUL:
        snprintf(buf, len, "NUL byte in field %zu", e->field);
        return;
    case CSV_ERR_TOO_LONG:
        snprintf(buf, len, "record longer than %zu bytes%s", max_record,
                 e->in_quote ? " (unterminated quote on this line?)" : "");
        return;
    case CSV_ERR_READ:
        snprintf(buf, len, "read error: %s", strerror(e->sys));
        return;
    case CSV_ERR_NONE:
        break;
    }
    snprintf(buf, len, "malformed record");
}

int ctl_csv_uint(const char *s, uint64_t max, uint64_t *out)
{
    if (!*s)
        return -1;
    uint64_t v = 0;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        v = v * 10 + (uint64_t)(*p - '0');
        if (v > max)
            return -1;
    }
    *out = v;
    return 0;
}
