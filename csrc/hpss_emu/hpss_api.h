/* The subset of the HPSS client API that pyai binds, implemented by
 * libhpss_emu over a local directory (see emu.h for how).
 *
 * Names, prototypes and struct field names follow what public code compiled
 * against the real hpss_api.h uses (shared/reference/hpss-api.md).  Numeric
 * flag values and struct layouts are the emulator's own: the real ones are
 * not public, so pyai's binding only ever refers to them by name.
 */
#ifndef HPSS_EMU_API_H
#define HPSS_EMU_API_H

#include <stdint.h>
#include <sys/types.h>
#include <utime.h>

#include "hpss_errno.h"
#include "hpss_version.h"

typedef uint32_t unsigned32;
typedef int32_t signed32;
typedef uint16_t unsigned16;
typedef uint64_t u_signed64; /* an integer on LP64 builds, as callers assume */
typedef int64_t hpss_off_t;
typedef int64_t timestamp_sec_t;
typedef uint64_t hpss_srvr_id_t;

typedef enum {
    hpss_authn_mech_invalid = 0,
    hpss_authn_mech_krb5 = 1,
    hpss_authn_mech_unix = 2,
    hpss_authn_mech_gsi = 3,
    hpss_authn_mech_spkm = 4
} hpss_authn_mech_t;

typedef enum { hpss_rpc_cred_server = 1, hpss_rpc_cred_client = 2, hpss_rpc_cred_both = 3 } hpss_rpc_cred_type_t;

typedef enum {
    hpss_rpc_auth_type_invalid = 0,
    hpss_rpc_auth_type_none = 1,
    hpss_rpc_auth_type_keytab = 2,
    hpss_rpc_auth_type_keyfile = 3,
    hpss_rpc_auth_type_key = 4,
    hpss_rpc_auth_type_passwd = 5
} hpss_rpc_auth_type_t;

#define HPSS_MAX_STORAGE_LEVELS 5
#define BFS_MAX_VV_TO_RETURN_AT_LEVEL 10

/* hpss_FileGetXAttributes flags */
#define API_GET_STATS_FOR_LEVEL 0x1u
#define API_GET_STATS_FOR_ALL_LEVELS 0x2u
#define API_GET_XATTRS_NO_BLOCK 0x4u
/* SCAttrib[i].Flags */
#define BFS_BFATTRS_DATAEXISTS_AT_LEVEL 0x1u
#define BFS_BFATTRS_LEVEL_IS_DISK 0x2u
#define BFS_BFATTRS_LEVEL_IS_TAPE 0x4u
/* hpss_Stage / hpss_Purge flags */
#define BFS_STAGE_ALL 0x1u
#define BFS_ASYNCH_CALL 0x2u
#define BFS_PURGE_ALL 0x1u

#define NS_OBJECT_TYPE_FILE 1
#define NS_OBJECT_TYPE_DIRECTORY 2

typedef struct {
    unsigned32 dummy;
} hpss_cos_hints_t;

typedef struct {
    unsigned32 dummy;
} hpss_cos_priorities_t;

typedef struct {
    char Name[32];
    unsigned32 Flags;
} pv_list_element_t;

typedef struct {
    struct {
        unsigned int List_len;
        pv_list_element_t *List_val;
    } List;
} pv_list_t;

typedef struct {
    signed32 RelPosition;
    u_signed64 RelPositionOffset;
    u_signed64 BytesOnVV;
    pv_list_t *PVList; /* allocated by the API, freed by the caller */
} bf_vv_attrib_t;

typedef struct {
    bf_vv_attrib_t VVAttrib[BFS_MAX_VV_TO_RETURN_AT_LEVEL];
    unsigned32 NumberOfVVs;
    u_signed64 BytesAtLevel;
    unsigned32 OptimumAccessSize;
    unsigned32 StripeWidth;
    u_signed64 StripeLength;
    unsigned32 Flags;
} bf_sc_attrib_t;

typedef struct {
    unsigned32 Type;
    unsigned32 ModePerms;
    unsigned32 UID;
    unsigned32 GID;
    u_signed64 DataLength;
    timestamp_sec_t TimeModified;
    timestamp_sec_t TimeCreated;
} hpss_Attrs_t;

typedef struct {
    unsigned32 Type;
    u_signed64 FileId;
} ns_ObjHandle_t;

typedef struct {
    ns_ObjHandle_t ObjectHandle;
    hpss_Attrs_t Attrs;
} hpss_fileattr_t;

typedef struct {
    ns_ObjHandle_t ObjectHandle;
    hpss_Attrs_t Attrs;
    bf_sc_attrib_t SCAttrib[HPSS_MAX_STORAGE_LEVELS];
} hpss_xfileattr_t;

typedef struct {
    unsigned32 st_dev;
    u_signed64 st_ino;
    unsigned16 st_nlink;
    unsigned32 st_uid;
    unsigned32 st_gid;
    u_signed64 st_size;
    unsigned32 st_mode;
    timestamp_sec_t hpss_st_atime;
    timestamp_sec_t hpss_st_mtime;
    timestamp_sec_t hpss_st_ctime;
    unsigned32 st_blksize;
} hpss_stat_t;

/* User-defined attributes: XPath-like keys under /hpss/ with text values (the
 * XML helpers and sizes are in hpss_xml.h).  The caller owns every Key and Value
 * buffer; hpss_UserAttrGetAttrs writes at most XMLSize bytes and a NUL into each
 * Value (HPSS_XML_SIZE - 1 fits a buffer of HPSS_XML_SIZE). */
#define UDA_API_VALUE 0x1
#define UDA_API_XML 0x2

typedef struct {
    char *Key;
    char *Value;
} hpss_userattr_t;

typedef struct {
    int len;
    hpss_userattr_t *Pair;
} hpss_userattr_list_t;

/* hpss_Statfs: the capacity of a class of service, counted in blocks of f_bsize
 * bytes.  f_bsize is 64-bit and the counts 32-bit, as IBM's Python binding of the
 * client API reads them (shared/reference/hpss-api.md 1.5, S3 attr.c); the real
 * struct has more fields (f_fsid, f_namemax, ...) that pyai does not read. */
typedef struct {
    u_signed64 f_bsize;
    unsigned32 f_blocks;
    unsigned32 f_bfree;
    unsigned32 f_bavail;
    unsigned32 f_files;
    unsigned32 f_ffree;
} hpss_statfs_t;

typedef struct hpss_dirent {
    u_signed64 d_offset;
    ns_ObjHandle_t d_handle;
    unsigned16 d_reclen;
    unsigned16 d_namelen;
    char d_name[256];
} hpss_dirent_t;

int hpss_SetLoginCred(char *PrincipalName, hpss_authn_mech_t Mechanism, hpss_rpc_cred_type_t CredType,
                      hpss_rpc_auth_type_t AuthType, void *Authenticator);
void hpss_PurgeLoginCred(void);
void hpss_ClientAPIReset(void);

int hpss_LookupRootCS(char *SiteName, hpss_srvr_id_t *ServerId);
int hpss_PingCore(hpss_srvr_id_t *ServerId, unsigned32 *Secs, unsigned32 *USecs);

int hpss_Open(const char *Path, int Oflag, mode_t Mode, const hpss_cos_hints_t *HintsIn,
              const hpss_cos_priorities_t *HintsPri, hpss_cos_hints_t *HintsOut);
int hpss_Close(int Fildes);
ssize_t hpss_Read(int Fildes, void *Buf, size_t Nbyte);
ssize_t hpss_Write(int Fildes, const void *Buf, size_t Nbyte);
hpss_off_t hpss_Lseek(int Fildes, hpss_off_t Offset, int Whence);
int hpss_Stage(int Fildes, u_signed64 Offset, u_signed64 Length, unsigned32 StorageLevel, unsigned32 Flags);
int hpss_Purge(int Fildes, u_signed64 Offset, u_signed64 Length, unsigned32 StorageLevel, unsigned32 Flags,
               u_signed64 *BytesPurged);

int hpss_Stat(const char *Path, hpss_stat_t *Buf);
int hpss_Lstat(const char *Path, hpss_stat_t *Buf);
int hpss_FileGetAttributes(const char *Path, hpss_fileattr_t *AttrOut);
int hpss_FileGetXAttributes(const char *Path, uint32_t Flags, uint32_t StorageLevel, hpss_xfileattr_t *AttrOut);
int hpss_Statfs(unsigned32 CosId, hpss_statfs_t *Buf);

int hpss_Utime(const char *Path, const struct utimbuf *Times);
int hpss_Chmod(const char *Path, mode_t Mode);
int hpss_Mkdir(const char *Path, mode_t Mode);
int hpss_Rmdir(const char *Path);
int hpss_Rename(const char *Old, const char *New);
int hpss_Link(const char *Existing, const char *New);
int hpss_Unlink(const char *Path);

int hpss_UserAttrSetAttrs(const char *Path, const hpss_userattr_list_t *Attr, const char *Schema);
int hpss_UserAttrGetAttrs(const char *Path, hpss_userattr_list_t *Attr, int XMLFlag, int XMLSize);

int hpss_Opendir(const char *DirName);
int hpss_Readdir(int DirDes, hpss_dirent_t *Dirent);
int hpss_Closedir(int DirDes);

#endif
