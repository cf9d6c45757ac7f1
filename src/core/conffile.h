/* Configuration files: `name = value` lines named like a program's long options, `#`
 * comments, blank lines. The reader knows no option: it hands each pair to the caller,
 * which validates it with the same code as the command line. */
#ifndef CORE_CONFFILE_H
#define CORE_CONFFILE_H

#include <stddef.h>

/* Called for each `name = value` (both trimmed; value may be empty; a value in double
 * quotes loses them). Returns 0, or -1 after writing a reason into err. */
typedef int (*conffile_set_cb)(void *arg, const char *name, const char *value, char *err,
                               size_t err_len);

/* Reads path and calls set for each pair, in file order. Returns 0, or -1 with err set to
 * "PATH:LINE: reason" (a line without '=', an unreadable file, or set's reason). */
int conffile_read(const char *path, conffile_set_cb set, void *arg, char *err, size_t err_len)
    __attribute__((warn_unused_result));

#endif
