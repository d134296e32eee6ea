/* Loading libmicrohttpd at run time (mhd.h). */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>

#include "serve/mhd.h"
#include "util/error.h"

mhd_api mhd;

static const char *const LIB = "libmicrohttpd.so.12"; /* Debian's libmicrohttpd12 */

/* The table's entries in its order, by symbol name. */
static const char *const NAMES[] = {
    "MHD_start_daemon",        "MHD_stop_daemon",
    "MHD_quiesce_daemon",      "MHD_get_daemon_info",
    "MHD_get_connection_info", "MHD_lookup_connection_value",
    "MHD_create_response_from_buffer", "MHD_create_response_from_callback",
    "MHD_add_response_header", "MHD_queue_response",
    "MHD_destroy_response",
};

_Static_assert(sizeof NAMES / sizeof NAMES[0] == sizeof(mhd_api) / sizeof(void (*)(void)),
               "one name per entry of mhd_api");

static pthread_mutex_t load_lock = PTHREAD_MUTEX_INITIALIZER;

strata_status mhd_load(strata_error *err)
{
    pthread_mutex_lock(&load_lock);
    strata_status st = STRATA_OK;
    if (!mhd.destroy_response) {
        void *h = dlopen(LIB, RTLD_NOW | RTLD_LOCAL);
        if (!h) st = err_set(err, STRATA_E_UNSUPPORTED, "cannot load %s (install the Debian package "
                             "libmicrohttpd12): %s", LIB, dlerror());
        mhd_api api;
        void **slot = (void **)&api; /* the entries are function pointers of one size, in NAMES' order */
        for (size_t i = 0; h && !st && i < sizeof NAMES / sizeof NAMES[0]; i++)
            if (!(slot[i] = dlsym(h, NAMES[i])))
                st = err_set(err, STRATA_E_UNSUPPORTED, "%s lacks %s", LIB, NAMES[i]);
        if (!st) mhd = api; /* stays loaded for the process */
        else if (h) dlclose(h);
    }
    pthread_mutex_unlock(&load_lock);
    return st;
}
