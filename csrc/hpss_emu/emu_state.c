/* Login, the namespace root, run-time settings and the level records. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#include "emu.h"

static pthread_mutex_t login_lock = PTHREAD_MUTEX_INITIALIZER;
/* The namespace: the first root holds the state directory; more roots
 * (":"-separated) are further trees the namespace includes, such as the
 * archive's PATCH roots.  Room is left for state and record names. */
#define EMU_MAX_ROOTS 16
static char root[PATH_MAX - 128];
static size_t root_len;
static char extra_roots[EMU_MAX_ROOTS][PATH_MAX - 128];
static size_t extra_root_len[EMU_MAX_ROOTS];
static int extra_count;
/* A session belongs to the process that logged in: a forked child must log
 * in again, as with the real client library whose threads do not survive fork. */
static volatile pid_t login_pid;

int emu_rc(int err)
{
    switch (err) {
    case 0: return HPSS_EIO; /* a failure that set no errno */
    case ENAMETOOLONG: return HPSS_ENAMETOOLONG;
    case ENOTEMPTY: return HPSS_ENOTEMPTY;
    case EDQUOT: return HPSS_EDQUOT;
    case ETIMEDOUT: return HPSS_ETIMEDOUT;
    case ESTALE: return HPSS_ESTALE;
    case EOPNOTSUPP: return HPSS_EOPNOTSUPP;
    case EDEADLK: return HPSS_EDEADLK;
    case ENOLCK: return HPSS_ENOLCK;
    case EROFS: return HPSS_EWRPROTECT;
    case ECONNREFUSED: return HPSS_ECONN;
    default: return err <= 34 ? -err : HPSS_EIO; /* above 34 HPSS numbers differ from Linux */
    }
}

double emu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

void emu_sleep(double seconds)
{
    if (seconds <= 0)
        return;
    struct timespec ts = {(time_t)seconds, (long)((seconds - (time_t)seconds) * 1e9)};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
    }
}

static void state_path(char *out, size_t size, const char *name)
{
    snprintf(out, size, "%s/%s/%s", root, EMU_STATE_DIR, name);
}

double emu_setting(const char *name, double fallback)
{
    char path[PATH_MAX], text[64];
    state_path(path, sizeof path, name);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return fallback;
    ssize_t n = read(fd, text, sizeof text - 1);
    close(fd);
    if (n <= 0)
        return fallback;
    text[n] = '\0';
    char *end;
    double value = strtod(text, &end);
    return end == text || value < 0 ? fallback : value;
}

static int state_flag(const char *name)
{
    char path[PATH_MAX];
    state_path(path, sizeof path, name);
    return access(path, F_OK) == 0;
}

int emu_enter(int check_down)
{
    if (login_pid != getpid())
        return HPSS_EPERM;
    if (check_down && state_flag("down"))
        return HPSS_ECONN;
    return 0;
}

static int mkdir_if_missing(const char *path)
{
    return mkdir(path, 0700) == 0 || errno == EEXIST ? 0 : emu_rc(errno);
}

int hpss_SetLoginCred(char *PrincipalName, hpss_authn_mech_t Mechanism, hpss_rpc_cred_type_t CredType,
                      hpss_rpc_auth_type_t AuthType, void *Authenticator)
{
    if (!PrincipalName || !*PrincipalName)
        return HPSS_EINVAL;
    if (Mechanism != hpss_authn_mech_unix && Mechanism != hpss_authn_mech_krb5)
        return HPSS_EINVAL;
    if (CredType != hpss_rpc_cred_client && CredType != hpss_rpc_cred_both)
        return HPSS_EINVAL;
    /* There is no KDC to ask: a keytab that exists must at least be readable. */
    if (AuthType == hpss_rpc_auth_type_keytab && Authenticator && access(Authenticator, F_OK) == 0 &&
        access(Authenticator, R_OK) != 0)
        return HPSS_EACCES;
    const char *dir = getenv("PYAI_HPSS_EMU_ROOT");
    if (!dir || !*dir)
        return HPSS_EINVAL;
    pthread_mutex_lock(&login_lock);
    int rc = 0;
    char resolved[PATH_MAX], path[PATH_MAX], list[PATH_MAX * 4];
    if (strlen(dir) >= sizeof list) {
        rc = HPSS_ENAMETOOLONG;
        goto out;
    }
    strcpy(list, dir);
    char *save = NULL;
    extra_count = 0;
    root_len = 0;
    for (char *part = strtok_r(list, ":", &save); part; part = strtok_r(NULL, ":", &save)) {
        if (!realpath(part, resolved)) {
            rc = emu_rc(errno);
            goto out;
        }
        if (strlen(resolved) >= sizeof root) {
            rc = HPSS_ENAMETOOLONG;
            goto out;
        }
        if (root_len == 0) {
            strcpy(root, resolved);
            root_len = strlen(root);
        } else if (extra_count < EMU_MAX_ROOTS) {
            strcpy(extra_roots[extra_count], resolved);
            extra_root_len[extra_count++] = strlen(resolved);
        }
    }
    if (root_len == 0) {
        rc = HPSS_EINVAL;
        goto out;
    }
    state_path(path, sizeof path, "");
    if ((rc = mkdir_if_missing(path)) < 0)
        goto out;
    state_path(path, sizeof path, "levels");
    if ((rc = mkdir_if_missing(path)) < 0)
        goto out;
    state_path(path, sizeof path, "uda");
    if ((rc = mkdir_if_missing(path)) < 0)
        goto out;
    if (state_flag("deny-login")) {
        rc = HPSS_EPERM;
        goto out;
    }
    login_pid = getpid();
out:
    pthread_mutex_unlock(&login_lock);
    return rc;
}

void hpss_PurgeLoginCred(void)
{
    login_pid = 0;
}

void hpss_ClientAPIReset(void)
{
    login_pid = 0;
}

const char *emu_root(void)
{
    return root;
}

static int under(const char *path, const char *dir, size_t len)
{
    return strncmp(path, dir, len) == 0 && (path[len] == '/' || path[len] == '\0' || (len == 1 && dir[0] == '/'));
}

static int inside_roots(const char *path)
{
    if (under(path, root, root_len))
        return 1;
    for (int i = 0; i < extra_count; i++)
        if (under(path, extra_roots[i], extra_root_len[i]))
            return 1;
    return 0;
}

/* Symbolic links must not lead out of the namespace: the resolved path (of the
 * object itself when the call follows links, else of its directory) must lie
 * inside a root too. */
static int resolved_inside(const char *path, int follow)
{
    char copy[PATH_MAX], resolved[PATH_MAX];
    strcpy(copy, path);
    if (!follow || !realpath(copy, resolved)) {
        if (follow && errno != ENOENT)
            return emu_rc(errno);
        char *slash = strrchr(copy, '/');
        if (slash == copy)
            slash[1] = '\0';
        else
            *slash = '\0';
        if (!realpath(copy, resolved))
            return errno == ENOENT || errno == ENOTDIR ? 0 : emu_rc(errno); /* the call reports it */
    }
    return inside_roots(resolved) ? 0 : HPSS_EACCES;
}

int emu_local_path(const char *path, char *out, size_t size, int follow)
{
    if (!path || path[0] != '/')
        return HPSS_EINVAL;
    size_t len = strlen(path);
    if (len >= size)
        return HPSS_ENAMETOOLONG;
    /* Lexical confinement: inside a root, no "..", never the state directory. */
    if (!inside_roots(path))
        return HPSS_EACCES;
    if (strstr(path, "/../") || (len >= 3 && strcmp(path + len - 3, "/..") == 0))
        return HPSS_EACCES;
    const char *rest = path + root_len;
    if (under(path, root, root_len) && strncmp(rest, "/" EMU_STATE_DIR, sizeof EMU_STATE_DIR) == 0 &&
        (rest[sizeof EMU_STATE_DIR] == '/' || rest[sizeof EMU_STATE_DIR] == '\0'))
        return HPSS_EACCES;
    int rc = resolved_inside(path, follow);
    if (rc < 0)
        return rc;
    memcpy(out, path, len + 1);
    return 0;
}

void emu_record_path(char *out, size_t size, const char *kind, const struct stat *st)
{
    snprintf(out, size, "%s/%s/%s/%llx-%llx", root, EMU_STATE_DIR, kind, (unsigned long long)st->st_dev,
             (unsigned long long)st->st_ino);
}

static void meta_path(char *out, size_t size, const struct stat *st)
{
    emu_record_path(out, size, "levels", st);
}

int emu_meta(const struct stat *st, int (*change)(struct emu_meta *, void *), void *arg, struct emu_meta *out)
{
    char path[PATH_MAX], text[64];
    struct emu_meta meta = {EMU_ON_DISK, 0, 0};
    meta_path(path, sizeof path, st);
    int fd = open(path, O_RDWR | O_CLOEXEC | (change ? O_CREAT : 0), 0600);
    if (fd < 0) {
        if (errno != ENOENT)
            return emu_rc(errno);
        *out = meta; /* no record: written outside any stage or purge, on disk */
        return 0;
    }
    /* flock, not fcntl locks: it excludes threads of one process too. */
    if (flock(fd, LOCK_EX) < 0) {
        int rc = emu_rc(errno);
        close(fd);
        return rc;
    }
    int dirty = 0;
    ssize_t n = pread(fd, text, sizeof text - 1, 0);
    if (n > 0) {
        text[n] = '\0';
        sscanf(text, "%u %lf %u", &meta.levels, &meta.ready_at, &meta.stages);
    } else {
        dirty = 1;
    }
    if (meta.ready_at > 0 && meta.ready_at <= emu_now()) {
        meta.levels |= EMU_ON_DISK;
        meta.ready_at = 0;
        dirty = 1;
    }
    if (change && change(&meta, arg))
        dirty = 1;
    int rc = 0;
    if (dirty && (change || n > 0)) {
        int len = snprintf(text, sizeof text, "%u %.6f %u\n", meta.levels, meta.ready_at, meta.stages);
        if (pwrite(fd, text, len, 0) != len || ftruncate(fd, len) < 0)
            rc = emu_rc(errno);
    }
    close(fd);
    *out = meta;
    return rc;
}

int emu_stages(const char *local)
{
    struct stat st;
    struct emu_meta meta;
    if (stat(local, &st) < 0)
        return emu_rc(errno);
    int rc = emu_meta(&st, NULL, NULL, &meta);
    return rc < 0 ? rc : (int)meta.stages;
}

int emu_meta_remove(const struct stat *st)
{
    char path[PATH_MAX];
    meta_path(path, sizeof path, st);
    return unlink(path) == 0 || errno == ENOENT ? 0 : emu_rc(errno);
}

int emu_meta_wait_disk(const struct stat *st)
{
    for (;;) {
        struct emu_meta meta;
        int rc = emu_meta(st, NULL, NULL, &meta);
        if (rc < 0)
            return rc;
        if ((meta.levels & EMU_ON_DISK) || st->st_size == 0)
            return 0;
        if (meta.ready_at == 0)
            return HPSS_EIO; /* purged again while we waited: nobody will bring it */
        double left = meta.ready_at - emu_now();
        emu_sleep(left < 0.05 ? (left > 0 ? left : 0.001) : 0.05);
    }
}
