/* Files by descriptor: open, read, write, seek, close, stage, purge.
 *
 * An HPSS descriptor is an index into a table of local descriptors.  Data
 * is read and written in place; what the levels change is whether a read may
 * proceed: a file whose bytes are on tape only must be staged first.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <string.h>
#include <unistd.h>

#include "emu.h"

#define EMU_MAX_FILES 4096

struct emu_file {
    int used;
    int fd;
    int no_stage;      /* opened with O_NONBLOCK: never stage implicitly */
    int resident;      /* bytes known to be on disk: reads go straight through */
    int written;       /* level record already reset by a write */
    int stage_pending; /* an asynchronous stage was started on it: close waits */
};

static pthread_mutex_t table_lock = PTHREAD_MUTEX_INITIALIZER;
static struct emu_file files[EMU_MAX_FILES];

static int slot_alloc(int fd)
{
    pthread_mutex_lock(&table_lock);
    for (int i = 0; i < EMU_MAX_FILES; i++) {
        if (!files[i].used) {
            memset(&files[i], 0, sizeof files[i]);
            files[i].used = 1;
            files[i].fd = fd;
            pthread_mutex_unlock(&table_lock);
            return i;
        }
    }
    pthread_mutex_unlock(&table_lock);
    return HPSS_EMFILE;
}

/* The slot of an open descriptor; the caller owns it (one thread per
 * descriptor, as for POSIX descriptors), so no lock is held after the lookup. */
static struct emu_file *slot_get(int fildes)
{
    if (fildes < 0 || fildes >= EMU_MAX_FILES)
        return NULL;
    pthread_mutex_lock(&table_lock);
    struct emu_file *file = files[fildes].used ? &files[fildes] : NULL;
    pthread_mutex_unlock(&table_lock);
    return file;
}

static int set_disk_only(struct emu_meta *meta, void *arg)
{
    meta->levels = EMU_ON_DISK;
    meta->ready_at = 0;
    return 1;
}

int hpss_Open(const char *Path, int Oflag, mode_t Mode, const hpss_cos_hints_t *HintsIn,
              const hpss_cos_priorities_t *HintsPri, hpss_cos_hints_t *HintsOut)
{
    char local[PATH_MAX];
    int rc = emu_enter(1);
    if (rc < 0)
        return rc;
    if ((HintsIn == NULL) != (HintsPri == NULL))
        return HPSS_EINVAL; /* the client library refuses hints without priorities */
    if ((rc = emu_local_path(Path, local, sizeof local, 1)) < 0)
        return rc;
    int fd = open(local, (Oflag & ~O_NONBLOCK) | O_CLOEXEC, Mode);
    if (fd < 0)
        return emu_rc(errno);
    struct stat st;
    if (fstat(fd, &st) < 0 || S_ISDIR(st.st_mode)) {
        rc = S_ISDIR(st.st_mode) ? HPSS_EISDIR : emu_rc(errno);
        close(fd);
        return rc;
    }
    struct emu_meta meta;
    int truncated = (Oflag & O_TRUNC) && (Oflag & O_ACCMODE) != O_RDONLY;
    rc = emu_meta(&st, truncated ? set_disk_only : NULL, NULL, &meta);
    if (rc < 0) {
        close(fd);
        return rc;
    }
    int slot = slot_alloc(fd);
    if (slot < 0) {
        close(fd);
        return slot;
    }
    files[slot].no_stage = (Oflag & O_NONBLOCK) != 0;
    files[slot].resident = (meta.levels & EMU_ON_DISK) || st.st_size == 0;
    files[slot].written = truncated;
    return slot;
}

static int stage_start(struct emu_meta *meta, void *arg)
{
    if ((meta->levels & EMU_ON_DISK) || meta->ready_at > 0)
        return 0; /* on disk, or a stage is already on its way: don't queue another */
    meta->ready_at = emu_now() + *(double *)arg;
    meta->stages++;
    return 1;
}

static int stage(int fd, int wait)
{
    struct stat st;
    if (fstat(fd, &st) < 0)
        return emu_rc(errno);
    double delay = emu_setting("stage_delay", 1.0);
    struct emu_meta meta;
    int rc = emu_meta(&st, stage_start, &delay, &meta);
    if (rc < 0 || !wait)
        return rc;
    return emu_meta_wait_disk(&st);
}

/* The common start of a call on a descriptor: emu_enter's checks (login, and
 * the core server when check_down), then the slot.  0 or an HPSS code. */
static int enter_file(int fildes, int check_down, struct emu_file **file)
{
    int rc = emu_enter(check_down);
    if (rc < 0)
        return rc;
    *file = slot_get(fildes);
    return *file ? 0 : HPSS_EBADF;
}

ssize_t hpss_Read(int Fildes, void *Buf, size_t Nbyte)
{
    struct emu_file *file;
    int rc = enter_file(Fildes, 0, &file);
    if (rc < 0)
        return rc;
    if (!file->resident) {
        if (file->no_stage)
            return HPSS_EAGAIN; /* on tape only, and the caller asked not to stage */
        if ((rc = stage(file->fd, 1)) < 0)
            return rc;
        file->resident = 1;
    }
    ssize_t n = read(file->fd, Buf, Nbyte);
    return n < 0 ? emu_rc(errno) : n;
}

ssize_t hpss_Write(int Fildes, const void *Buf, size_t Nbyte)
{
    struct emu_file *file;
    int rc = enter_file(Fildes, 0, &file);
    if (rc < 0)
        return rc;
    if (!file->written) {
        /* New data lands on the disk level; any tape copy is stale now. */
        struct stat st;
        struct emu_meta meta;
        if (fstat(file->fd, &st) < 0)
            return emu_rc(errno);
        if ((rc = emu_meta(&st, set_disk_only, NULL, &meta)) < 0)
            return rc;
        file->written = file->resident = 1;
    }
    ssize_t n = write(file->fd, Buf, Nbyte);
    return n < 0 ? emu_rc(errno) : n;
}

hpss_off_t hpss_Lseek(int Fildes, hpss_off_t Offset, int Whence)
{
    struct emu_file *file;
    int rc = enter_file(Fildes, 0, &file);
    if (rc < 0)
        return rc;
    off_t at = lseek(file->fd, Offset, Whence);
    return at < 0 ? emu_rc(errno) : at;
}

int hpss_Close(int Fildes)
{
    struct emu_file *file = slot_get(Fildes);
    if (!file)
        return HPSS_EBADF;
    int rc = 0;
    if (file->stage_pending) {
        /* As with the real library: close waits for a stage started on the descriptor. */
        struct stat st;
        rc = fstat(file->fd, &st) < 0 ? emu_rc(errno) : emu_meta_wait_disk(&st);
    }
    if (close(file->fd) < 0 && rc == 0)
        rc = emu_rc(errno);
    pthread_mutex_lock(&table_lock);
    file->used = 0;
    pthread_mutex_unlock(&table_lock);
    return rc;
}

int hpss_Stage(int Fildes, u_signed64 Offset, u_signed64 Length, unsigned32 StorageLevel, unsigned32 Flags)
{
    struct emu_file *file;
    int rc = enter_file(Fildes, 1, &file);
    if (rc < 0)
        return rc;
    if (StorageLevel != 0)
        return HPSS_EINVAL; /* only the disk level is a stage target here */
    int async = (Flags & BFS_ASYNCH_CALL) != 0;
    if ((rc = stage(file->fd, !async)) < 0)
        return rc;
    if (async)
        file->stage_pending = 1;
    else
        file->resident = 1;
    return 0;
}

struct purge_args {
    struct stat *st;
    u_signed64 purged;
};

static int purge_disk(struct emu_meta *meta, void *arg)
{
    struct purge_args *args = arg;
    if (!(meta->levels & EMU_ON_DISK))
        return 0;
    /* The emulator migrates on demand: purging leaves the bytes on tape. */
    meta->levels = EMU_ON_TAPE;
    meta->ready_at = 0;
    args->purged = args->st->st_size;
    return 1;
}

int hpss_Purge(int Fildes, u_signed64 Offset, u_signed64 Length, unsigned32 StorageLevel, unsigned32 Flags,
               u_signed64 *BytesPurged)
{
    struct emu_file *file;
    int rc = enter_file(Fildes, 1, &file);
    if (rc < 0)
        return rc;
    if (StorageLevel != 0)
        return HPSS_EINVAL;
    struct stat st;
    if (fstat(file->fd, &st) < 0)
        return emu_rc(errno);
    struct purge_args args = {&st, 0};
    struct emu_meta meta;
    if ((rc = emu_meta(&st, purge_disk, &args, &meta)) < 0)
        return rc;
    file->resident = st.st_size == 0;
    if (BytesPurged)
        *BytesPurged = args.purged;
    return 0;
}
