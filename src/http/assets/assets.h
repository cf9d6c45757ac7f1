/* The dashboard's static files (index.html, its scripts and style sheets: the list is in
 * CMakeLists.txt), embedded in the binary at build time by embed_assets.cmake, so tallyd
 * serves its page without a CDN or any file on disk. The table is generated; this header is
 * its only contract. */
#ifndef HTTP_ASSETS_ASSETS_H
#define HTTP_ASSETS_ASSETS_H

#include <stddef.h>

struct http_asset {
    const char *path;          /* URL path: "/index.html", "/app.js", ... */
    const char *content_type;  /* with charset for text */
    const unsigned char *data; /* the file's bytes; not NUL-terminated */
    size_t len;
};

extern const struct http_asset http_assets[];
extern const size_t http_assets_count;

#endif
