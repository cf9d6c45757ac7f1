/* The pure parts of tallyctl's collector commands: circuit lists as operators type them
 * (--circuits 5,7,9) and as tallyctl prints them. No database, no global state. */
#ifndef CTL_COLLECTORS_H
#define CTL_COLLECTORS_H

#include <stddef.h>
#include <stdint.h>

/* Parses a comma-separated list of circuit ids ("5,7, 9"; spaces around an id allowed)
 * into *out (malloc'd, ascending, repeats dropped; the caller frees it) and *n. "all"
 * alone means every circuit: returns 1 with *out NULL and *n 0. Returns 0 for a list, or
 * -1 with a one-line reason in err naming the offending item (e.g. "'7x' is not a circuit
 * id"), and nothing allocated. */
int ctl_circuits_parse(const char *list, uint32_t **out, size_t *n, char *err, size_t err_len);

/* Writes ids (ascending) as "5,7,9", showing at most max_shown of them and then
 * ",... (N more)"; "every" when restricted is 0. Always NUL-terminates buf (len > 0). */
void ctl_circuits_format(int restricted, const uint32_t *ids, size_t n, size_t max_shown, char *buf,
                         size_t len);

#endif
