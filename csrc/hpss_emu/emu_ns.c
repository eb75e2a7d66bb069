/* Attributes and namespace operations by path, directories, capacity (Statfs), core-server ping. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdint.h>
#include <string.h>
#include <sys/statvfs.h>
#include <sys/time.h>
#include <unistd.h>

#include "emu.h"

#define EMU_MAX_DIRS 256

/* Resolve an HPSS path after the usual entry checks; on success rc is 0. */
#define ENTER_PATH(path, local, follow)                                                                                \
    char local[PATH_MAX];                                                                                              \
    int rc = emu_enter(1);                                                                                             \
    if (rc < 0 || (rc = emu_local_path((path), local, sizeof local, (follow))) < 0)                                    \
        return rc;

/* ENTER_PATH for the first of two paths, and `other` resolved (not followed) into `other_local`. */
#define ENTER_TWO_PATHS(path, local, other, other_local)                                                               \
    ENTER_PATH(path, local, 0);                                                                                        \
    char other_local[PATH_MAX];                                                                                        \
    if ((rc = emu_local_path((other), other_local, sizeof other_local, 0)) < 0)                                        \
        return rc;

/* ENTER_PATH, then lstat(2) the entry itself (a link is not followed) into `st`. */
#define ENTER_ENTRY(path, local, st)                                                                                   \
    ENTER_PATH(path, local, 0);                                                                                        \
    struct stat st;                                                                                                    \
    if (lstat(local, &st) < 0)                                                                                         \
        return emu_rc(errno);

static int local_stat(const char *local, struct stat *st)
{
    return stat(local, st) < 0 ? emu_rc(errno) : 0;
}

static int stat_path(const char *Path, hpss_stat_t *Buf, int follow)
{
    ENTER_PATH(Path, local, follow);
    struct stat st;
    if ((follow ? stat(local, &st) : lstat(local, &st)) < 0)
        return emu_rc(errno);
    memset(Buf, 0, sizeof *Buf);
    Buf->st_dev = st.st_dev;
    Buf->st_ino = st.st_ino;
    Buf->st_nlink = st.st_nlink;
    Buf->st_uid = st.st_uid;
    Buf->st_gid = st.st_gid;
    Buf->st_size = st.st_size;
    Buf->st_mode = st.st_mode;
    Buf->hpss_st_atime = st.st_atime;
    Buf->hpss_st_mtime = st.st_mtime;
    Buf->hpss_st_ctime = st.st_ctime;
    Buf->st_blksize = st.st_blksize;
    return 0;
}

int hpss_Stat(const char *Path, hpss_stat_t *Buf)
{
    return stat_path(Path, Buf, 1);
}

int hpss_Lstat(const char *Path, hpss_stat_t *Buf)
{
    return stat_path(Path, Buf, 0);
}

static void fill_attrs(const struct stat *st, ns_ObjHandle_t *handle, hpss_Attrs_t *attrs)
{
    handle->Type = attrs->Type = S_ISDIR(st->st_mode) ? NS_OBJECT_TYPE_DIRECTORY : NS_OBJECT_TYPE_FILE;
    handle->FileId = st->st_ino;
    attrs->ModePerms = st->st_mode & 07777;
    attrs->UID = st->st_uid;
    attrs->GID = st->st_gid;
    attrs->DataLength = st->st_size;
    attrs->TimeModified = st->st_mtime;
    attrs->TimeCreated = st->st_ctime;
}

int hpss_FileGetAttributes(const char *Path, hpss_fileattr_t *AttrOut)
{
    ENTER_PATH(Path, local, 1);
    struct stat st;
    if ((rc = local_stat(local, &st)) < 0)
        return rc;
    memset(AttrOut, 0, sizeof *AttrOut);
    fill_attrs(&st, &AttrOut->ObjectHandle, &AttrOut->Attrs);
    return 0;
}

int hpss_FileGetXAttributes(const char *Path, uint32_t Flags, uint32_t StorageLevel, hpss_xfileattr_t *AttrOut)
{
    ENTER_PATH(Path, local, 1);
    struct stat st;
    if ((rc = local_stat(local, &st)) < 0)
        return rc;
    if (StorageLevel >= HPSS_MAX_STORAGE_LEVELS)
        return HPSS_EINVAL;
    memset(AttrOut, 0, sizeof *AttrOut);
    fill_attrs(&st, &AttrOut->ObjectHandle, &AttrOut->Attrs);
    if (!S_ISREG(st.st_mode))
        return 0; /* no segments: SCAttrib stays zero */
    struct emu_meta meta;
    if ((rc = emu_meta(&st, NULL, NULL, &meta)) < 0)
        return rc;
    if (meta.ready_at > 0 && !(Flags & API_GET_XATTRS_NO_BLOCK)) {
        /* Without NO_BLOCK the real call hangs while a file moves between levels. */
        if ((rc = emu_meta_wait_disk(&st)) < 0 || (rc = emu_meta(&st, NULL, NULL, &meta)) < 0)
            return rc;
    }
    for (unsigned level = 0; level < 2; level++) {
        if ((Flags & API_GET_STATS_FOR_LEVEL) && level != StorageLevel)
            continue;
        if (!(Flags & API_GET_STATS_FOR_LEVEL) && level < StorageLevel)
            continue;
        bf_sc_attrib_t *sc = &AttrOut->SCAttrib[level];
        unsigned bit = level == 0 ? EMU_ON_DISK : EMU_ON_TAPE;
        sc->Flags = level == 0 ? BFS_BFATTRS_LEVEL_IS_DISK : BFS_BFATTRS_LEVEL_IS_TAPE;
        if (meta.levels & bit) {
            sc->Flags |= BFS_BFATTRS_DATAEXISTS_AT_LEVEL;
            sc->BytesAtLevel = st.st_size;
        }
    }
    return 0;
}

/* The emulator has one storage whatever CosId names: the file system of the
 * first root (the archive's prefix).  The counts are 32-bit in the vendor's
 * struct, so the block size doubles until the total fits, as a large class of
 * service reports large blocks; free and available round down. */
int hpss_Statfs(unsigned32 CosId, hpss_statfs_t *Buf)
{
    int rc = emu_enter(1);
    if (rc < 0)
        return rc;
    if (!Buf)
        return HPSS_EFAULT;
    struct statvfs st;
    if (statvfs(emu_root(), &st) < 0)
        return emu_rc(errno);
    unsigned shift = 0;
    while (((uint64_t)st.f_blocks >> shift) > UINT32_MAX)
        shift++;
    memset(Buf, 0, sizeof *Buf);
    Buf->f_bsize = (u_signed64)(st.f_frsize ? st.f_frsize : st.f_bsize) << shift;
    Buf->f_blocks = (unsigned32)((uint64_t)st.f_blocks >> shift);
    Buf->f_bfree = (unsigned32)((uint64_t)st.f_bfree >> shift);
    Buf->f_bavail = (unsigned32)((uint64_t)st.f_bavail >> shift);
    Buf->f_files = st.f_files > UINT32_MAX ? UINT32_MAX : (unsigned32)st.f_files;
    Buf->f_ffree = st.f_ffree > UINT32_MAX ? UINT32_MAX : (unsigned32)st.f_ffree;
    return 0;
}

int hpss_Utime(const char *Path, const struct utimbuf *Times)
{
    ENTER_PATH(Path, local, 1);
    return utime(local, Times) < 0 ? emu_rc(errno) : 0;
}

int hpss_Chmod(const char *Path, mode_t Mode)
{
    ENTER_PATH(Path, local, 1);
    return chmod(local, Mode) < 0 ? emu_rc(errno) : 0;
}

int hpss_Mkdir(const char *Path, mode_t Mode)
{
    ENTER_PATH(Path, local, 0);
    return mkdir(local, Mode) < 0 ? emu_rc(errno) : 0;
}

int hpss_Rmdir(const char *Path)
{
    ENTER_ENTRY(Path, local, st);
    if (rmdir(local) < 0)
        return emu_rc(errno);
    return emu_uda_remove(&st); /* a directory's attributes go with it */
}

int hpss_Rename(const char *Old, const char *New)
{
    ENTER_TWO_PATHS(Old, from, New, to);
    struct stat old_st, new_st;
    if ((rc = local_stat(from, &old_st)) < 0)
        return rc;
    int replaces = lstat(to, &new_st) == 0 && new_st.st_nlink == 1 && new_st.st_ino != old_st.st_ino;
    if (rename(from, to) < 0)
        return emu_rc(errno);
    if (!replaces)
        return 0;
    /* the replaced file's levels and attributes go with it */
    return (rc = emu_meta_remove(&new_st)) < 0 ? rc : emu_uda_remove(&new_st);
}

int hpss_Link(const char *Existing, const char *New)
{
    ENTER_TWO_PATHS(Existing, from, New, to);
    return link(from, to) < 0 ? emu_rc(errno) : 0;
}

int hpss_Unlink(const char *Path)
{
    ENTER_ENTRY(Path, local, st);
    if (S_ISDIR(st.st_mode))
        return HPSS_EISDIR;
    if (unlink(local) < 0)
        return emu_rc(errno);
    if (st.st_nlink != 1)
        return 0;
    return (rc = emu_meta_remove(&st)) < 0 ? rc : emu_uda_remove(&st);
}

static pthread_mutex_t dirs_lock = PTHREAD_MUTEX_INITIALIZER;
static DIR *dirs[EMU_MAX_DIRS];

int hpss_Opendir(const char *DirName)
{
    ENTER_PATH(DirName, local, 1);
    DIR *dir = opendir(local);
    if (!dir)
        return emu_rc(errno);
    pthread_mutex_lock(&dirs_lock);
    for (int i = 0; i < EMU_MAX_DIRS; i++) {
        if (!dirs[i]) {
            dirs[i] = dir;
            pthread_mutex_unlock(&dirs_lock);
            return i;
        }
    }
    pthread_mutex_unlock(&dirs_lock);
    closedir(dir);
    return HPSS_EMFILE;
}

static DIR *dir_get(int DirDes)
{
    if (DirDes < 0 || DirDes >= EMU_MAX_DIRS)
        return NULL;
    pthread_mutex_lock(&dirs_lock);
    DIR *dir = dirs[DirDes];
    pthread_mutex_unlock(&dirs_lock);
    return dir;
}

int hpss_Readdir(int DirDes, hpss_dirent_t *Dirent)
{
    int rc = emu_enter(1);
    if (rc < 0)
        return rc;
    DIR *dir = dir_get(DirDes);
    if (!dir)
        return HPSS_EBADF;
    memset(Dirent, 0, sizeof *Dirent);
    for (;;) {
        errno = 0;
        struct dirent *entry = readdir(dir);
        if (!entry)
            return errno ? emu_rc(errno) : 0; /* the end: success with an empty name */
        if (strcmp(entry->d_name, EMU_STATE_DIR) == 0)
            continue; /* not part of the namespace */
        size_t len = strlen(entry->d_name);
        if (len >= sizeof Dirent->d_name)
            continue;
        memcpy(Dirent->d_name, entry->d_name, len + 1);
        Dirent->d_namelen = len;
        Dirent->d_reclen = sizeof *Dirent;
        Dirent->d_handle.Type = entry->d_type == DT_DIR ? NS_OBJECT_TYPE_DIRECTORY : NS_OBJECT_TYPE_FILE;
        Dirent->d_handle.FileId = entry->d_ino;
        return 0;
    }
}

int hpss_Closedir(int DirDes)
{
    DIR *dir = dir_get(DirDes);
    if (!dir)
        return HPSS_EBADF;
    pthread_mutex_lock(&dirs_lock);
    dirs[DirDes] = NULL;
    pthread_mutex_unlock(&dirs_lock);
    return closedir(dir) < 0 ? emu_rc(errno) : 0;
}

int hpss_LookupRootCS(char *SiteName, hpss_srvr_id_t *ServerId)
{
    int rc = emu_enter(1);
    if (rc < 0)
        return rc;
    if (!SiteName || !*SiteName || !ServerId)
        return HPSS_EINVAL;
    *ServerId = 1;
    return 0;
}

int hpss_PingCore(hpss_srvr_id_t *ServerId, unsigned32 *Secs, unsigned32 *USecs)
{
    int rc = emu_enter(1);
    if (rc < 0)
        return rc;
    if (!ServerId || *ServerId != 1)
        return HPSS_EINVAL;
    emu_sleep(emu_setting("ping_latency", 0));
    if (emu_enter(1) < 0)
        return HPSS_ECONN; /* went down while we waited */
    struct timeval now;
    gettimeofday(&now, NULL);
    *Secs = now.tv_sec;
    *USecs = now.tv_usec;
    return 0;
}
