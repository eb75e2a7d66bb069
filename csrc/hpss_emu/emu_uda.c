/* User-defined attributes (UDAs): hpss_UserAttrSetAttrs, hpss_UserAttrGetAttrs,
 * hpss_ChompXMLHeader.
 *
 * A file's attributes are one record in the state directory, by inode (see
 * emu.h), so they follow the file through rename and link and go with its
 * last name.  Set merges the pairs into the record in one rewrite under an
 * exclusive flock; Get reads it under a shared one.  As HPSS: Get of a key
 * that is not set fails the whole call with -ENOENT; each value comes back
 * wrapped in XML.  The emulator's own limits: keys are /hpss/... paths of
 * [A-Za-z0-9_.-/], values are printable text without '<' or '&' (no XML
 * escaping), and a value wrapped for Get must fit HPSS_XML_SIZE.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "emu.h"
#include "hpss_xml.h"

#define UDA_MAX_RECORD 65536
#define UDA_MAX_PAIRS 256
#define XML_HEADER "<?xml version=\"1.0\"?>"

struct uda_record {
    char text[UDA_MAX_RECORD + 1];
    int count;
    char *keys[UDA_MAX_PAIRS];
    char *values[UDA_MAX_PAIRS];
};

static int valid_key(const char *key)
{
    if (!key || strncmp(key, "/hpss/", 6) != 0 || strlen(key) >= HPSS_XML_SIZE / 2 || strstr(key, "//"))
        return 0;
    size_t len = strlen(key);
    if (key[len - 1] == '/')
        return 0;
    for (const char *c = key; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') || strchr("_.-/", *c)))
            return 0;
    return 1;
}

static int valid_value(const char *value)
{
    if (!value || strlen(value) + sizeof XML_HEADER >= HPSS_XML_SIZE)
        return 0;
    for (const unsigned char *c = (const unsigned char *)value; *c; c++)
        if (*c < 0x20 || *c == 0x7f || *c == '<' || *c == '&')
            return 0;
    return 1;
}

/* Parse "<key>\t<value>\n" lines of rec->text in place. */
static void parse_record(struct uda_record *rec)
{
    rec->count = 0;
    char *save = NULL;
    for (char *line = strtok_r(rec->text, "\n", &save); line && rec->count < UDA_MAX_PAIRS;
         line = strtok_r(NULL, "\n", &save)) {
        char *tab = strchr(line, '\t');
        if (!tab)
            continue;
        *tab = '\0';
        rec->keys[rec->count] = line;
        rec->values[rec->count++] = tab + 1;
    }
}

static int read_record(int fd, struct uda_record *rec)
{
    ssize_t n = pread(fd, rec->text, UDA_MAX_RECORD, 0);
    if (n < 0)
        return emu_rc(errno);
    rec->text[n] = '\0';
    parse_record(rec);
    return 0;
}

static int find(const struct uda_record *rec, const char *key)
{
    for (int i = 0; i < rec->count; i++)
        if (strcmp(rec->keys[i], key) == 0)
            return i;
    return -1;
}

/* The local path of an existing object, and its stat (HPSS keeps UDAs on directories too). */
static int object(const char *Path, struct stat *st)
{
    char local[PATH_MAX];
    int rc = emu_enter(1);
    if (rc < 0 || (rc = emu_local_path(Path, local, sizeof local, 1)) < 0)
        return rc;
    return stat(local, st) < 0 ? emu_rc(errno) : 0;
}

int hpss_UserAttrSetAttrs(const char *Path, const hpss_userattr_list_t *Attr, const char *Schema)
{
    (void)Schema; /* the emulator validates against no schema */
    struct stat st;
    int rc = object(Path, &st);
    if (rc < 0)
        return rc;
    if (!Attr || Attr->len < 0 || (Attr->len > 0 && !Attr->Pair))
        return HPSS_EINVAL;
    for (int i = 0; i < Attr->len; i++)
        if (!valid_key(Attr->Pair[i].Key) || !valid_value(Attr->Pair[i].Value))
            return HPSS_EINVAL;
    char path[PATH_MAX];
    emu_record_path(path, sizeof path, "uda", &st);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return emu_rc(errno);
    struct uda_record *rec = malloc(sizeof *rec);
    char *out = malloc(UDA_MAX_RECORD + 1);
    if (!rec || !out) {
        rc = HPSS_ENOMEM;
        goto done;
    }
    if (flock(fd, LOCK_EX) < 0) {
        rc = emu_rc(errno);
        goto done;
    }
    if ((rc = read_record(fd, rec)) < 0)
        goto done;
    /* The record after: the old pairs with new values where set, then the new keys. */
    size_t len = 0;
    for (int i = 0; i < rec->count + Attr->len; i++) {
        const char *key, *value;
        if (i < rec->count) {
            key = rec->keys[i];
            value = rec->values[i];
            for (int j = 0; j < Attr->len; j++)
                if (strcmp(Attr->Pair[j].Key, key) == 0)
                    value = Attr->Pair[j].Value; /* the last of repeated keys wins */
        } else {
            int j = i - rec->count;
            key = Attr->Pair[j].Key;
            value = Attr->Pair[j].Value;
            int seen = find(rec, key) >= 0;
            for (int k = j + 1; k < Attr->len && !seen; k++)
                seen = strcmp(Attr->Pair[k].Key, key) == 0;
            if (seen)
                continue;
        }
        int n = snprintf(out + len, UDA_MAX_RECORD + 1 - len, "%s\t%s\n", key, value);
        if (n < 0 || (size_t)n >= UDA_MAX_RECORD + 1 - len) {
            rc = HPSS_ENOSPACE; /* more attributes than the emulator keeps per file */
            goto done;
        }
        len += n;
    }
    if (pwrite(fd, out, len, 0) != (ssize_t)len || ftruncate(fd, len) < 0)
        rc = emu_rc(errno);
done:
    free(rec);
    free(out);
    close(fd);
    return rc;
}

/* Append to a bounded buffer; the length it would have (snprintf's way), whatever fits. */
struct text {
    char *buf;
    size_t size;
    size_t len;
};

static void append(struct text *t, const char *prefix, const char *part, const char *suffix)
{
    size_t room = t->len < t->size ? t->size - t->len : 0;
    int n = snprintf(room ? t->buf + t->len : NULL, room, "%s%s%s", prefix, part, suffix);
    t->len += n > 0 ? (size_t)n : 0;
}

/* The value as Get returns it: the XML header, then the value (UDA_API_VALUE) or
 * the key as nested elements around it (UDA_API_XML); returns its length. */
static size_t wrap(char *out, size_t size, const char *key, const char *value, int xml)
{
    struct text t = {out, size, 0};
    append(&t, XML_HEADER, "", "");
    if (!xml) {
        append(&t, "", value, "");
        return t.len;
    }
    char copy[HPSS_XML_SIZE], *save = NULL;
    const char *names[HPSS_XML_SIZE / 2];
    int depth = 0;
    snprintf(copy, sizeof copy, "%s", key);
    for (char *name = strtok_r(copy, "/", &save); name; name = strtok_r(NULL, "/", &save))
        names[depth++] = name;
    for (int i = 0; i < depth; i++)
        append(&t, "<", names[i], ">");
    append(&t, "", value, "");
    for (int i = depth - 1; i >= 0; i--)
        append(&t, "</", names[i], ">");
    return t.len;
}

int hpss_UserAttrGetAttrs(const char *Path, hpss_userattr_list_t *Attr, int XMLFlag, int XMLSize)
{
    struct stat st;
    int rc = object(Path, &st);
    if (rc < 0)
        return rc;
    if (!Attr || Attr->len < 0 || (Attr->len > 0 && !Attr->Pair) || XMLSize <= 0)
        return HPSS_EINVAL;
    if (XMLFlag != UDA_API_VALUE && XMLFlag != UDA_API_XML)
        return HPSS_EINVAL;
    for (int i = 0; i < Attr->len; i++)
        if (!valid_key(Attr->Pair[i].Key) || !Attr->Pair[i].Value)
            return HPSS_EINVAL;
    char path[PATH_MAX];
    emu_record_path(path, sizeof path, "uda", &st);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? HPSS_ENOENT : emu_rc(errno); /* no record: no key is set */
    struct uda_record *rec = malloc(sizeof *rec);
    if (!rec) {
        close(fd);
        return HPSS_ENOMEM;
    }
    if (flock(fd, LOCK_SH) < 0)
        rc = emu_rc(errno);
    else
        rc = read_record(fd, rec);
    close(fd);
    /* Every key first: a missing one fails the call before any Value is written. */
    for (int i = 0; rc == 0 && i < Attr->len; i++) {
        int at = find(rec, Attr->Pair[i].Key);
        if (at < 0)
            rc = HPSS_ENOENT;
        else if (wrap(NULL, 0, rec->keys[at], rec->values[at], XMLFlag == UDA_API_XML) > (size_t)XMLSize)
            rc = HPSS_ERANGE;
    }
    for (int i = 0; rc == 0 && i < Attr->len; i++) {
        int at = find(rec, Attr->Pair[i].Key);
        wrap(Attr->Pair[i].Value, (size_t)XMLSize + 1, rec->keys[at], rec->values[at], XMLFlag == UDA_API_XML);
    }
    free(rec);
    return rc;
}

char *hpss_ChompXMLHeader(const char *XML, ...)
{
    if (!XML)
        return NULL;
    const char *start = XML;
    if (strncmp(start, "<?", 2) == 0) {
        const char *end = strstr(start, "?>");
        if (!end)
            return NULL;
        start = end + 2;
    }
    while (*start == ' ' || *start == '\n' || *start == '\r' || *start == '\t')
        start++;
    return strdup(start);
}

int emu_uda_remove(const struct stat *st)
{
    char path[PATH_MAX];
    emu_record_path(path, sizeof path, "uda", st);
    return unlink(path) == 0 || errno == ENOENT ? 0 : emu_rc(errno);
}
