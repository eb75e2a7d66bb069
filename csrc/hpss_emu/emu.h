/* Internals of libhpss_emu, the HPSS client API over a local directory.
 *
 * The namespace is the local subtree PYAI_HPSS_EMU_ROOT (read at login; more
 * trees may follow, ":"-separated): an HPSS path is the local path, and must
 * lie inside a root.  Beside the files, ROOT/.hpss-emu/ (in the first root)
 * holds what a real HPSS keeps in its servers:
 *   levels/<dev>-<ino>   which levels hold a file's bytes, and when a stage
 *                        in progress completes ("<levels> <ready_at>\n");
 *                        no record means "on disk only" (new data);
 *   uda/<dev>-<ino>      the file's user-defined attributes, "<key>\t<value>\n"
 *                        lines (by inode, so they follow a rename or link and
 *                        go with the last name's unlink, as HPSS's do);
 *   stage_delay          seconds a stage takes (default 1);
 *   ping_latency         seconds hpss_PingCore takes (default 0);
 *   down                 present: the core server is down;
 *   deny-login           present: hpss_SetLoginCred fails.
 * Every process and thread reads them afresh, so `pyai-hpss-emu` changes a
 * running server.  Bytes are never copied between levels: a level is
 * bookkeeping, a stage is a delay.
 */
#ifndef HPSS_EMU_H
#define HPSS_EMU_H

#include <sys/stat.h>

#include "hpss_api.h"

#define EMU_STATE_DIR ".hpss-emu"
#define EMU_ON_DISK 0x1u /* level 0 holds the bytes */
#define EMU_ON_TAPE 0x2u /* level 1 holds the bytes */

struct emu_meta {
    unsigned levels;
    double ready_at; /* a stage to disk completes at this time; 0: none running */
    unsigned stages; /* stages queued for the file so far: `pyai-hpss-emu stages` shows a test what was asked */
};

/* Called first by every API entry: 0, or the HPSS code to return
 * (not logged in in this process, core server down). */
int emu_enter(int check_down);
/* Checks an HPSS path and returns the local path (the same string) in out;
 * follow: the call follows a symbolic link in the last component. */
int emu_local_path(const char *path, char *out, size_t size, int follow);
int emu_rc(int err);
/* The first root (the archive's prefix, which holds the state directory). */
const char *emu_root(void);
double emu_now(void);
void emu_sleep(double seconds);
double emu_setting(const char *name, double fallback);

/* The level record of the file st, completing a stage whose time has come.
 * With change != NULL, change(meta, arg) may edit it under the record's lock
 * and returns nonzero when it did. */
int emu_meta(const struct stat *st, int (*change)(struct emu_meta *, void *), void *arg, struct emu_meta *out);
int emu_meta_remove(const struct stat *st);
/* The stages queued so far for the file at the local path `local` (what no HPSS call tells;
 * `pyai-hpss-emu stages` shows it to tests), or a negative HPSS code. */
int emu_stages(const char *local);
/* The record of kind ("levels", "uda") of the file st in the state directory. */
void emu_record_path(char *out, size_t size, const char *kind, const struct stat *st);
/* Forget the user-defined attributes of st (its last name is gone). */
int emu_uda_remove(const struct stat *st);
/* Block until a stage of st started earlier has landed on disk. */
int emu_meta_wait_disk(const struct stat *st);

#endif
