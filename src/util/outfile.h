/* Output files that appear whole or not at all, and temporary files removed
 * when the process is stopped by a signal.
 *
 * outfile_open creates a fresh temporary file next to the target with
 * O_CREAT | O_EXCL (a name of its own, never an existing file or a symlink,
 * so two writers to one target never mix and nothing elsewhere is
 * overwritten); outfile_commit flushes, fsyncs and renames it over the
 * target; outfile_abort removes it. A target that exists and is not a
 * regular file is never replaced: a character device or a FIFO (/dev/null,
 * /dev/stdout, a pipe) is written directly, anything else (a directory, a
 * socket, a block device) is refused. A symlink at the target is replaced
 * by the file, not followed.
 *
 * While temporary files are registered (outfile does it for its own),
 * SIGINT, SIGTERM and SIGHUP unlink them and then end the process with the
 * same signal; the previous handlers come back when the last one is
 * unregistered. */
#ifndef STRATA_UTIL_OUTFILE_H
#define STRATA_UTIL_OUTFILE_H

#include <stdio.h>

#include "strata.h"

typedef struct outfile {
    FILE *fp;   /* write through this */
    char *path; /* the target */
    char *tmp;  /* the temporary file; NULL when the target is written directly */
    int slot;   /* in the signal cleanup list, or -1 */
} outfile;

/* Refuses a target that could never be written (a directory, a socket, a
 * block device), naming it; for callers that want to fail before long
 * work. outfile_open checks the same. */
strata_status outfile_check(const char *path, strata_error *err);
strata_status outfile_open(outfile *f, const char *path, strata_error *err);
/* Flushes, syncs and renames into place; on failure the temporary file is
 * removed. f is closed either way. */
strata_status outfile_commit(outfile *f, strata_error *err);
/* Closes and removes the temporary file (a no-op on a closed outfile). */
void outfile_abort(outfile *f);
/* Writes text and a newline as the whole file at path (outfile_open,
 * then commit; nothing is left behind on failure). */
strata_status outfile_write_text(const char *path, const char *text, strata_error *err);
/* The name writes go to (the temporary file or the target), for messages. */
const char *outfile_name(const outfile *f);

/* Adds a file to remove on SIGINT/SIGTERM/SIGHUP; returns its slot, or -1
 * when the list is full or the path too long (it is then not removed). */
int tempfile_register(const char *path);
/* Takes a slot (or -1) out of the list. */
void tempfile_unregister(int slot);

#endif
