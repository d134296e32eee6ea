#include "util/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

strata_status err_set(strata_error *err, strata_status status, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->message, sizeof err->message, fmt, ap);
        va_end(ap);
        err->status = status;
    }
    return status;
}

void err_clear(strata_error *err)
{
    if (err) {
        err->status = STRATA_OK;
        err->message[0] = '\0';
    }
}

const char *strata_status_name(strata_status status)
{
    switch (status) {
    case STRATA_OK: return "ok";
    case STRATA_E_INVALID: return "invalid argument";
    case STRATA_E_IO: return "I/O error";
    case STRATA_E_FORMAT: return "format error";
    case STRATA_E_UNSUPPORTED: return "unsupported";
    case STRATA_E_NOMEM: return "out of memory";
    }
    return "unknown status";
}

const char *strata_version(void) { return STRATA_VERSION_STRING; }

void err_prefix_path(strata_error *err, const char *path)
{
    if (!err) return;
    size_t pl = strlen(path), ml = strlen(err->message);
    if (pl + 2 + ml >= sizeof err->message) return;
    memmove(err->message + pl + 2, err->message, ml + 1);
    memcpy(err->message, path, pl);
    memcpy(err->message + pl, ": ", 2);
}
