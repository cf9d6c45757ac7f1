/* The JSON string escaper. Owns the escaping rules only; where the bytes go is the
 * sink's business (an evbuffer for HTTP, a FILE for tallyctl). */
#include "core/json.h"

void json_string_write(const char *s, json_sink_cb sink, void *arg)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)(s ? s : "");
    sink(arg, "\"", 1);
    const unsigned char *run = p;
    for (; *p; p++) {
        if (*p >= 0x20 && *p != '"' && *p != '\\')
            continue;
        sink(arg, (const char *)run, (size_t)(p - run));
        run = p + 1;
        switch (*p) {
        case '"':
            sink(arg, "\\\"", 2);
            break;
        case '\\':
            sink(arg, "\\\\", 2);
            break;
        case '\n':
            sink(arg, "\\n", 2);
            break;
        case '\r':
            sink(arg, "\\r", 2);
            break;
        case '\t':
            sink(arg, "\\t", 2);
            break;
        default: {
            char u[6] = {'\\', 'u', '0', '0', hex[*p >> 4], hex[*p & 15]};
            sink(arg, u, sizeof(u));
        }
        }
    }
    sink(arg, (const char *)run, (size_t)(p - run));
    sink(arg, "\"", 1);
}
