/* Small text checks and encoders shared by tallyctl's commands: collector id syntax,
 * UTF-8 validation, JSON string escaping. Pure. */
#ifndef CTL_TEXT_H
#define CTL_TEXT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

/* True when s matches [A-Za-z0-9._-]{1,63}, the collector id syntax. */
bool ctl_collector_id_is_valid(const char *s);

/* True when the n bytes at s are well-formed UTF-8 (no overlong forms, no surrogates,
 * nothing past U+10FFFF). */
bool ctl_utf8_is_valid(const char *s, size_t n);

/* Writes s as a JSON string literal to out, quotes included, escaped exactly as the HTTP
 * API escapes (json_string_write in core/json.h). */
void ctl_json_write_string(FILE *out, const char *s);

#endif
