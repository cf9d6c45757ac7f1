/* Helpers shared by tls.c and ca.c only: one-line error messages and OpenSSL's reasons. */
#ifndef TLS_INTERNAL_H
#define TLS_INTERNAL_H

#include <stdarg.h>
#include <stddef.h>

/* PEM passphrase callback that never prompts (an encrypted key is an error). */
int tls_no_passphrase_cb(char *buf, int size, int rwflag, void *u);
/* snprintf into err (NULL or err_len 0: nothing). */
void tls_errf(char *err, size_t err_len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* ERR_reason_error_string of the most specific queued error; clears the queue. */
const char *tls_ssl_reason(void);
/* strerror(errnum) with a lower-case first letter, as the messages read. */
void tls_lower_strerror(int errnum, char *buf, size_t len);

#endif
