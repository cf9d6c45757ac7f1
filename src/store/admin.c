/* Small administrative writes used by tallyctl: registering collectors. The registry
 * import is in registry.c; nothing here runs on tallyd's hot path. */
#include "store/internal.h"

#include <string.h>

int store_collector_add(struct store *s, const char *id, bool *created)
{
    const char *params[1] = {id};
    int rc = -1;
    *created = false;
    PGresult *res = PQexecParams(s->conn,
                                 "INSERT INTO collectors (id) VALUES ($1)"
                                 " ON CONFLICT (id) DO NOTHING",
                                 1, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        store_classify(s, res, "adding collector");
        goto done;
    }
    *created = strcmp(PQcmdTuples(res), "1") == 0;
    rc = 0;
done:
    PQclear(res);
    return rc;
}
