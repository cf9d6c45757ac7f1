/* JSON string literals, the one escaper behind every JSON writer (the HTTP API, tallyctl).
 * Writes through a caller's sink, so it allocates nothing and knows no buffer type. */
#ifndef CORE_JSON_H
#define CORE_JSON_H

#include <stddef.h>

/* Receives the next len bytes of output (len may be 0); arg is the caller's. */
typedef void (*json_sink_cb)(void *arg, const char *data, size_t len);

/* Writes s (NULL as "") as a JSON string literal, quotes included, to sink: '"' and '\\'
 * backslashed, \n \r \t by name, every other byte below 0x20 as \u00XX (lowercase hex);
 * all else, DEL and non-ASCII bytes included, passes through unchanged (RFC 8259 §7).
 * Unescaped runs go to sink in one call each. */
void json_string_write(const char *s, json_sink_cb sink, void *arg);

#endif
