/* libmicrohttpd, loaded when `strata serve` starts (dlopen), not linked:
 * linking it maps it and GnuTLS with its dependencies (p11-kit, nettle,
 * gmp, ...) into every strata process, whose constructors run at start
 * and cost each run about a MiB of memory it would account nowhere. The
 * calls go through `mhd`, a table of the functions the server uses, with
 * the prototypes of <microhttpd.h>. */
#ifndef STRATA_SERVE_MHD_H
#define STRATA_SERVE_MHD_H

#include <microhttpd.h>

#include "strata.h"

#define MHD_API_FN(name) __typeof__(MHD_##name) *name;
typedef struct mhd_api {
    MHD_API_FN(start_daemon)
    MHD_API_FN(stop_daemon)
    MHD_API_FN(quiesce_daemon)
    MHD_API_FN(get_daemon_info)
    MHD_API_FN(get_connection_info)
    MHD_API_FN(lookup_connection_value)
    MHD_API_FN(create_response_from_buffer)
    MHD_API_FN(create_response_from_callback)
    MHD_API_FN(add_response_header)
    MHD_API_FN(queue_response)
    MHD_API_FN(destroy_response)
} mhd_api;
#undef MHD_API_FN

extern mhd_api mhd;

/* Loads the library (once); an error names what is missing. */
strata_status mhd_load(strata_error *err);

#endif
