"""cffi builder of ``pyai.hpss_client._hpss``, the binding to the HPSS client API (API mode).

Compiled against the real headers when ``$HPSS_ROOT`` (default ``/opt/hpss``)
holds ``include/hpss_api.h``, otherwise against pyai's emulator in
``csrc/hpss_emu`` (then linked with ``libhpss_emu.so``, installed next to the
module and found through an rpath of ``$ORIGIN``).

Structs are declared by the fields pyai reads followed by ``...;`` so the
compiler takes their layout from whichever header is used; integer typedefs
are ``int...`` for the same reason.  The version differences listed in
shared/reference/hpss-api.md 4.7 (const-ness, ``hpss_uuid_t`` vs
``hpss_srvr_id_t``) are decided by ``#if`` on ``hpss_version.h`` in small
shims below, never guessed at run time.  ``setup.py`` builds the extension;
``python csrc/hpss_build.py`` builds it in place on its own.
"""

import os
import shlex
import subprocess

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))
HPSS_ROOT = os.environ.get("HPSS_ROOT", "/opt/hpss")
EMULATOR_DIR = os.path.join(HERE, "hpss_emu")
EMULATOR_SOURCES = [os.path.join(EMULATOR_DIR, name) for name in ("emu_state.c", "emu_file.c", "emu_ns.c", "emu_uda.c")]
EMULATOR_LIBRARY = "hpss_emu"


def use_real_hpss():
    return os.path.exists(os.path.join(HPSS_ROOT, "include", "hpss_api.h"))


CDEF = """
typedef int... u_signed64;
typedef int... unsigned32;
typedef int... timestamp_sec_t;
typedef int... hpss_off_t;

#define HPSS_MAX_STORAGE_LEVELS ...
#define BFS_STAGE_ALL ...
#define BFS_ASYNCH_CALL ...
#define BFS_PURGE_ALL ...

typedef struct {
    u_signed64 st_ino;
    u_signed64 st_size;
    unsigned32 st_mode;
    timestamp_sec_t hpss_st_mtime;
    timestamp_sec_t hpss_st_ctime;
    ...;
} hpss_stat_t;

typedef struct {
    u_signed64 BytesAtLevel;
    ...;
} bf_sc_attrib_t;

typedef struct {
    u_signed64 DataLength;
    ...;
} hpss_Attrs_t;

typedef struct {
    hpss_Attrs_t Attrs;
    bf_sc_attrib_t SCAttrib[...];
    ...;
} hpss_xfileattr_t;

/* Which library this module was compiled against, and the HPSS codes that
   differ from Linux errno (0 when the header lacks the name). */
static const int PYAI_HPSS_EMULATOR;
static const int PYAI_HPSS_MAJOR_VERSION;
static const int PYAI_HPSS_MINOR_VERSION;
static const int PYAI_HPSS_EDEADLK, PYAI_HPSS_ENOLCK, PYAI_HPSS_EWRPROTECT, PYAI_HPSS_ECONN;
static const int PYAI_HPSS_ESTALE, PYAI_HPSS_EMSGSIZE, PYAI_HPSS_EOPNOTSUPP, PYAI_HPSS_EBADMSG;
static const int PYAI_HPSS_ETIMEDOUT, PYAI_HPSS_ENAMETOOLONG, PYAI_HPSS_ENOTEMPTY, PYAI_HPSS_EDQUOT;

/* Calls whose prototypes are the same in every version: bound directly. */
ssize_t hpss_Read(int Fildes, void *Buf, size_t Nbyte);
ssize_t hpss_Write(int Fildes, const void *Buf, size_t Nbyte);
hpss_off_t hpss_Lseek(int Fildes, hpss_off_t Offset, int Whence);
int hpss_Close(int Fildes);
int hpss_Stage(int Fildes, u_signed64 Offset, u_signed64 Length, unsigned32 StorageLevel, unsigned32 Flags);
int hpss_Purge(int Fildes, u_signed64 Offset, u_signed64 Length, unsigned32 StorageLevel, unsigned32 Flags,
               u_signed64 *BytesPurged);
void hpss_PurgeLoginCred(void);
void hpss_ClientAPIReset(void);

/* Shims over the calls that differ between versions (see the preamble). */
int pyai_login(const char *user, const char *keytab);
int pyai_ping(const char *site, uint32_t *secs, uint32_t *usecs);
int pyai_open(const char *path, int flags, int mode);
int pyai_stat(const char *path, hpss_stat_t *buf);
int pyai_lstat(const char *path, hpss_stat_t *buf);
int pyai_xattrs(const char *path, hpss_xfileattr_t *out);
int pyai_statfs(unsigned32 cos, uint64_t *bsize, uint64_t *blocks, uint64_t *bfree, uint64_t *bavail);
int pyai_utime(const char *path, double mtime);
int pyai_chmod(const char *path, int mode);
int pyai_mkdir(const char *path, int mode);
int pyai_rmdir(const char *path);
int pyai_rename(const char *old, const char *new);
int pyai_link(const char *existing, const char *new);
int pyai_unlink(const char *path);
int pyai_opendir(const char *path);
int pyai_readdir(int dirdes, char *name, size_t size);
int pyai_closedir(int dirdes);
int pyai_uda_get(const char *path, const char **keys, int count, char *values, int value_size);
int pyai_uda_set(const char *path, const char **keys, const char **values, int count);
static const int PYAI_UDA_VALUE_SIZE;
"""

PREAMBLE = r"""
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <utime.h>

#include "hpss_api.h"
#include "hpss_errno.h"
#include "hpss_version.h"
#include "hpss_xml.h" /* hpss_ChompXMLHeader, HPSS_XML_SIZE */

#if !defined(__LP64__) && !defined(_LP64)
#error "pyai binds HPSS on 64-bit builds only: u_signed64 must be a plain integer"
#endif

#ifdef HPSS_EMULATOR
#define PYAI_HPSS_EMULATOR 1
#else
#define PYAI_HPSS_EMULATOR 0
#endif
#define PYAI_HPSS_MAJOR_VERSION HPSS_MAJOR_VERSION
#define PYAI_HPSS_MINOR_VERSION HPSS_MINOR_VERSION

/* Up to 7.4 the prototypes take non-const pointers and the core server is a
   DCE uuid; from 7.5 on they are const-correct and use hpss_srvr_id_t (8.x and
   later keep that, unlike a test on the minor version alone would assume). */
#if HPSS_MAJOR_VERSION < 7 || (HPSS_MAJOR_VERSION == 7 && HPSS_MINOR_VERSION < 5)
typedef hpss_uuid_t pyai_core_id_t;
#define PYAI_PATH(p) ((char *)(p))
#else
typedef hpss_srvr_id_t pyai_core_id_t;
#define PYAI_PATH(p) (p)
#endif

#ifdef HPSS_EDEADLK
static const int PYAI_HPSS_EDEADLK = HPSS_EDEADLK;
#else
static const int PYAI_HPSS_EDEADLK = 0;
#endif
#ifdef HPSS_ENOLCK
static const int PYAI_HPSS_ENOLCK = HPSS_ENOLCK;
#else
static const int PYAI_HPSS_ENOLCK = 0;
#endif
#ifdef HPSS_EWRPROTECT
static const int PYAI_HPSS_EWRPROTECT = HPSS_EWRPROTECT;
#else
static const int PYAI_HPSS_EWRPROTECT = 0;
#endif
#ifdef HPSS_ECONN
static const int PYAI_HPSS_ECONN = HPSS_ECONN;
#else
static const int PYAI_HPSS_ECONN = 0;
#endif
#ifdef HPSS_ESTALE
static const int PYAI_HPSS_ESTALE = HPSS_ESTALE;
#else
static const int PYAI_HPSS_ESTALE = 0;
#endif
#ifdef HPSS_EMSGSIZE
static const int PYAI_HPSS_EMSGSIZE = HPSS_EMSGSIZE;
#else
static const int PYAI_HPSS_EMSGSIZE = 0;
#endif
#ifdef HPSS_EOPNOTSUPP
static const int PYAI_HPSS_EOPNOTSUPP = HPSS_EOPNOTSUPP;
#else
static const int PYAI_HPSS_EOPNOTSUPP = 0;
#endif
#ifdef HPSS_EBADMSG
static const int PYAI_HPSS_EBADMSG = HPSS_EBADMSG;
#else
static const int PYAI_HPSS_EBADMSG = 0;
#endif
#ifdef HPSS_ETIMEDOUT
static const int PYAI_HPSS_ETIMEDOUT = HPSS_ETIMEDOUT;
#else
static const int PYAI_HPSS_ETIMEDOUT = 0;
#endif
#ifdef HPSS_ENAMETOOLONG
static const int PYAI_HPSS_ENAMETOOLONG = HPSS_ENAMETOOLONG;
#else
static const int PYAI_HPSS_ENAMETOOLONG = 0;
#endif
#ifdef HPSS_ENOTEMPTY
static const int PYAI_HPSS_ENOTEMPTY = HPSS_ENOTEMPTY;
#else
static const int PYAI_HPSS_ENOTEMPTY = 0;
#endif
#ifdef HPSS_EDQUOT
static const int PYAI_HPSS_EDQUOT = HPSS_EDQUOT;
#else
static const int PYAI_HPSS_EDQUOT = 0;
#endif

/* Keytab login as a UNIX-mechanism client, as the original archive interface did. */
static int pyai_login(const char *user, const char *keytab)
{
    return hpss_SetLoginCred((char *)user, hpss_authn_mech_unix, hpss_rpc_cred_client, hpss_rpc_auth_type_keytab,
                             (void *)keytab);
}

static int pyai_ping(const char *site, uint32_t *secs, uint32_t *usecs)
{
    pyai_core_id_t id;
    unsigned32 s = 0, us = 0;
    memset(&id, 0, sizeof id);
    int rc = hpss_LookupRootCS((char *)site, &id);
    if (rc < 0)
        return rc;
    rc = hpss_PingCore(&id, &s, &us);
    *secs = s;
    *usecs = us;
    return rc;
}

static int pyai_open(const char *path, int flags, int mode)
{
    return hpss_Open(PYAI_PATH(path), flags, (mode_t)mode, NULL, NULL, NULL);
}

static int pyai_stat(const char *path, hpss_stat_t *buf)
{
    return hpss_Stat(PYAI_PATH(path), buf);
}

static int pyai_lstat(const char *path, hpss_stat_t *buf)
{
    return hpss_Lstat(PYAI_PATH(path), buf);
}

/* Per-level bytes without ever blocking on a file that is being staged; the
   PV lists the call allocates are freed at once (pyai reads only the counts). */
static int pyai_xattrs(const char *path, hpss_xfileattr_t *out)
{
    int rc = hpss_FileGetXAttributes(PYAI_PATH(path), API_GET_STATS_FOR_ALL_LEVELS | API_GET_XATTRS_NO_BLOCK, 0, out);
    if (rc < 0)
        return rc;
    for (int i = 0; i < HPSS_MAX_STORAGE_LEVELS; i++) {
        unsigned32 vvs = out->SCAttrib[i].NumberOfVVs;
        for (unsigned32 j = 0; j < vvs && j < BFS_MAX_VV_TO_RETURN_AT_LEVEL; j++) {
            free(out->SCAttrib[i].VVAttrib[j].PVList);
            out->SCAttrib[i].VVAttrib[j].PVList = NULL;
        }
    }
    return rc;
}

/* The capacity of a class of service, each field widened to 64 bits: only f_bsize's
   width is known from public code (hpss-api.md 1.5), the counts' may differ by version. */
static int pyai_statfs(unsigned32 cos, uint64_t *bsize, uint64_t *blocks, uint64_t *bfree, uint64_t *bavail)
{
    hpss_statfs_t buf;
    memset(&buf, 0, sizeof buf);
    int rc = hpss_Statfs(cos, &buf);
    if (rc < 0)
        return rc;
    *bsize = buf.f_bsize;
    *blocks = buf.f_blocks;
    *bfree = buf.f_bfree;
    *bavail = buf.f_bavail;
    return rc;
}

static int pyai_utime(const char *path, double mtime)
{
    struct utimbuf times;
    times.actime = times.modtime = (time_t)mtime;
    return hpss_Utime(PYAI_PATH(path), &times);
}

static int pyai_chmod(const char *path, int mode) { return hpss_Chmod(PYAI_PATH(path), (mode_t)mode); }
static int pyai_mkdir(const char *path, int mode) { return hpss_Mkdir(PYAI_PATH(path), (mode_t)mode); }
static int pyai_rmdir(const char *path) { return hpss_Rmdir(PYAI_PATH(path)); }
static int pyai_rename(const char *old, const char *new) { return hpss_Rename(PYAI_PATH(old), PYAI_PATH(new)); }
static int pyai_link(const char *existing, const char *new) { return hpss_Link(PYAI_PATH(existing), PYAI_PATH(new)); }
static int pyai_unlink(const char *path) { return hpss_Unlink(PYAI_PATH(path)); }
static int pyai_opendir(const char *path) { return hpss_Opendir(PYAI_PATH(path)); }
static int pyai_closedir(int dirdes) { return hpss_Closedir(dirdes); }

/* User-defined attributes.  The caller of hpss_UserAttrGetAttrs owns every Value
   buffer (HPSS_XML_SIZE bytes; the call writes at most XMLSize = HPSS_XML_SIZE - 1
   and a NUL), and hpss_ChompXMLHeader returns a malloc'd plain copy the caller
   frees: both are freed here, and pyai gets plain text in its own buffer. */
#define PYAI_UDA_VALUE_SIZE HPSS_XML_SIZE

/* The plain values of count keys into values (count slots of value_size bytes);
   0, or the call's code (-ENOENT when any key is not set). */
static int pyai_uda_get(const char *path, const char **keys, int count, char *values, int value_size)
{
    if (count <= 0 || value_size <= 0)
        return -EINVAL;
    hpss_userattr_t *pairs = calloc((size_t)count, sizeof *pairs);
    char *xml = calloc((size_t)count, HPSS_XML_SIZE);
    int rc = -ENOMEM;
    if (!pairs || !xml)
        goto out;
    for (int i = 0; i < count; i++) {
        pairs[i].Key = (char *)keys[i];
        pairs[i].Value = xml + (size_t)i * HPSS_XML_SIZE;
    }
    hpss_userattr_list_t list;
    list.len = count;
    list.Pair = pairs;
#if HPSS_MAJOR_VERSION < 7 || (HPSS_MAJOR_VERSION == 7 && HPSS_MINOR_VERSION < 5)
    rc = hpss_UserAttrGetAttrs(PYAI_PATH(path), &list, UDA_API_VALUE);
#else
    rc = hpss_UserAttrGetAttrs(PYAI_PATH(path), &list, UDA_API_VALUE, HPSS_XML_SIZE - 1);
#endif
    for (int i = 0; rc == 0 && i < count; i++) {
        pairs[i].Value[HPSS_XML_SIZE - 1] = '\0';
        char *plain = hpss_ChompXMLHeader(pairs[i].Value, NULL);
        char *slot = values + (size_t)i * value_size;
        if (!plain) {
            slot[0] = '\0';
            continue;
        }
        snprintf(slot, (size_t)value_size, "%s", plain);
        free(plain);
    }
out:
    free(pairs);
    free(xml);
    return rc;
}

static int pyai_uda_set(const char *path, const char **keys, const char **values, int count)
{
    if (count <= 0)
        return -EINVAL;
    hpss_userattr_t *pairs = calloc((size_t)count, sizeof *pairs);
    if (!pairs)
        return -ENOMEM;
    for (int i = 0; i < count; i++) {
        pairs[i].Key = (char *)keys[i];
        pairs[i].Value = (char *)values[i];
    }
    hpss_userattr_list_t list;
    list.len = count;
    list.Pair = pairs;
    int rc = hpss_UserAttrSetAttrs(PYAI_PATH(path), &list, NULL);
    free(pairs);
    return rc;
}

/* The next entry's name into name; returns its length, 0 at the end. */
static int pyai_readdir(int dirdes, char *name, size_t size)
{
    hpss_dirent_t entry;
    memset(&entry, 0, sizeof entry);
    int rc = hpss_Readdir(dirdes, &entry);
    if (rc < 0)
        return rc;
    size_t len = entry.d_namelen;
    if (len == 0 || len >= size)
        len = len == 0 ? 0 : size - 1;
    memcpy(name, entry.d_name, len);
    name[len] = '\0';
    return (int)len;
}
"""


def _pkg_config(root):
    """Flags from hpss.pc (HPSS 7.5 and later), or None when there is none."""
    env = dict(os.environ, PKG_CONFIG_PATH=os.path.join(root, "lib"))
    try:
        cflags = subprocess.run(["pkg-config", "--cflags", "hpss"], env=env, capture_output=True, text=True, check=True)
        libs = subprocess.run(["pkg-config", "--libs", "hpss"], env=env, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return shlex.split(cflags.stdout), shlex.split(libs.stdout)


def build_options():
    """The Extension keyword arguments for the library this build binds."""
    if not use_real_hpss():
        return {
            "include_dirs": [EMULATOR_DIR],
            "libraries": [EMULATOR_LIBRARY],
            # found next to the module at run time, without LD_LIBRARY_PATH
            "extra_link_args": ["-Wl,-rpath,$ORIGIN"],
        }
    options = {
        "include_dirs": [os.path.join(HPSS_ROOT, "include"), "/usr/include/tirpc"],
        "define_macros": [("LINUX", None), ("LITTLEEND", None)],
        "library_dirs": [os.path.join(HPSS_ROOT, "lib")],
        "libraries": ["tirpc", "hpsscs", "hpss"],
        "extra_link_args": [f"-Wl,-rpath,{os.path.join(HPSS_ROOT, 'lib')}"],
    }
    flags = _pkg_config(HPSS_ROOT)
    if flags is not None:
        cflags, libs = flags
        options["extra_compile_args"] = [f for f in cflags if not f.startswith("-I")]
        options["include_dirs"] = [f[2:] for f in cflags if f.startswith("-I")] + ["/usr/include/tirpc"]
        options["library_dirs"] = [f[2:] for f in libs if f.startswith("-L")]
        options["libraries"] = [f[2:] for f in libs if f.startswith("-l")] + ["tirpc"]
        options["extra_link_args"] += [f for f in libs if f.startswith("-Wl")]
    return options


ffibuilder = FFI()
ffibuilder.cdef(CDEF)
ffibuilder.set_source("pyai.hpss_client._hpss", PREAMBLE, **build_options())

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
