/* HOST:PORT parsing shared by every program. */
#ifndef CORE_ADDR_H
#define CORE_ADDR_H

#include <stddef.h>
#include <stdint.h>

/* Splits "host:port" (or "[v6]:port") into host and port. Returns 0, or -1 with
 * nothing written when the text is not of that form or the port is not 1..65535. */
int addr_split(const char *text, char *host, size_t host_len, uint16_t *port);

/* Parses an unsigned decimal that must fill the whole string and be <= max. */
int parse_u64(const char *text, uint64_t max, uint64_t *out);

#endif
