/*
 * disk.c - `tern sink --store DIR` (see disk.h).
 *
 * Files are named by the message id in decimal: ID.eml (the raw message)
 * and ID.json (the envelope, written second: when it parses and names its
 * id, it commits the pair).  Both are written in place; spares (below) and
 * any other .tmp file are removed at start.  Everything runs on the sink's event loop through
 * a directory fd; every I/O result is checked, and a failure costs the disk copy only (logged),
 * never the message in memory or the SMTP reply.
 */
#include "sink/disk.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/fdio.h"
#include "core/header.h"
#include "core/log.h"
#include "core/num.h"
#include "core/address.h"

#define DISK_JSON_MAX (1024 * 1024) /* a sidecar larger than this is damaged */
#define DISK_EML_MAX (4ULL << 30)   /* the largest --max-size */
#define DISK_RCPTS_MAX 100000       /* the largest --max-rcpts */

/* Removed files are kept as spares (N.spare.tmp) and written over by later
 * messages: creating and freeing an inode per message costs about 1 ms of
 * CPU on a journal-less ext4, whose inode allocator scans recently deleted
 * inodes (perf: recently_deleted); reusing one costs a rename. */
#define DISK_SPARES_MAX 256

struct sink_disk {
    char *path;
    int dirfd;
    uint64_t spares[DISK_SPARES_MAX], spare_seq;
    size_t nspares;
};

struct sink_disk *disk_open(const char *dir, char *why, size_t whysize)
{
    if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
        snprintf(why, whysize, "%s: %s", dir, strerror(errno));
        return NULL;
    }
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(why, whysize, "%s: %s", dir, strerror(errno));
        return NULL;
    }
    struct sink_disk *d = calloc(1, sizeof(*d));
    if (!d || !(d->path = strdup(dir)))
        fatal("out of memory");
    d->dirfd = fd;
    return d;
}

void disk_close(struct sink_disk *d)
{
    if (!d)
        return;
    close(d->dirfd);
    free(d->path);
    free(d);
}

/* ---- writing ----------------------------------------------------------------- */

/* Write name in place, over a spare when there is one.  No tmp + rename: the
 * .json is written last and a message is loaded only when its .json parses
 * and names its id, which a torn write (cut short, or followed by the tail
 * of the spare's old content) or a spare never does.  -1 with errno set. */
static int disk_put(struct sink_disk *d, const char *name, const char *data, size_t len)
{
    char spare[48];
    bool reused = false;
    if (d->nspares) {
        snprintf(spare, sizeof(spare), "%llu.spare.tmp",
                 (unsigned long long)d->spares[--d->nspares]);
        reused = renameat(d->dirfd, spare, d->dirfd, name) == 0; /* else a new file */
    }
    /* no O_TRUNC on a spare: ext4 flushes a file cut to 0 and rewritten at
     * close (auto_da_alloc); write over it, then cut it to length */
    int fd = openat(d->dirfd, name, O_WRONLY | O_CREAT | O_CLOEXEC | (reused ? 0 : O_TRUNC), 0600);
    if (fd < 0)
        return -1;
    if (write_all(fd, data, len) < 0 || (reused && ftruncate(fd, (off_t)len) < 0)) {
        int e = errno;
        close(fd);
        unlinkat(d->dirfd, name, 0);
        errno = e;
        return -1;
    }
    if (close(fd) < 0) {
        int e = errno;
        unlinkat(d->dirfd, name, 0);
        errno = e;
        return -1;
    }
    return 0;
}

/* A JSON string of s; bytes that are not valid UTF-8 become '?'. */
static json_t *disk_str(const char *s)
{
    size_t n = strlen(s);
    if (utf8_valid(s, n))
        return json_stringn(s, n);
    char *c = strdup(s);
    if (!c)
        return NULL;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)c[i] >= 0x80)
            c[i] = '?';
    json_t *j = json_stringn(c, n);
    free(c);
    return j;
}

int disk_save(struct sink_disk *d, const struct sink_msg *m)
{
    char name[48];
    unsigned long long id = (unsigned long long)m->id;
    json_t *to = json_array();
    for (size_t i = 0; to && i < m->nrcpt; i++)
        json_array_append_new(to, disk_str(m->rcpts[i]));
    json_t *j = json_pack("{s:I, s:I, s:o, s:o, s:o, s:o, s:o, s:b}", "id", (json_int_t)m->id,
                          "received_ms", (json_int_t)m->received_ms, "from", disk_str(m->mail_from),
                          "to", to, "helo", disk_str(m->helo), "peer", disk_str(m->peer),
                          "auth_user", disk_str(m->auth_user), "tls", m->tls);
    char *js = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (!js) {
        log_warn("store: %s: message %llu not saved: out of memory", d->path, id);
        return -1;
    }
    snprintf(name, sizeof(name), "%llu.eml", id);
    int r = disk_put(d, name, m->raw, m->size);
    if (r == 0) {
        snprintf(name, sizeof(name), "%llu.json", id);
        r = disk_put(d, name, js, strlen(js));
    }
    free(js);
    if (r < 0) {
        log_warn("store: %s/%s: message %llu not saved: %s", d->path, name, id, strerror(errno));
        snprintf(name, sizeof(name), "%llu.eml", id);
        unlinkat(d->dirfd, name, 0);
        return -1;
    }
    return 0;
}

static void disk_unlink_id(struct sink_disk *d, uint64_t id)
{
    char name[48], spare[48];
    /* the .json first: without it, a left-over .eml is ignored at the next start */
    for (int i = 0; i < 2; i++) {
        snprintf(name, sizeof(name), "%llu.%s", (unsigned long long)id, i ? "eml" : "json");
        if (d->nspares < DISK_SPARES_MAX) {
            snprintf(spare, sizeof(spare), "%llu.spare.tmp", (unsigned long long)++d->spare_seq);
            if (renameat(d->dirfd, name, d->dirfd, spare) == 0) {
                d->spares[d->nspares++] = d->spare_seq;
                continue;
            }
        } else if (unlinkat(d->dirfd, name, 0) == 0) {
            continue;
        }
        if (errno != ENOENT)
            log_warn("store: cannot remove %s/%s: %s", d->path, name, strerror(errno));
    }
}

void disk_remove(void *ctx, const struct sink_msg *m)
{
    disk_unlink_id(ctx, m->id);
}

/* ---- loading ------------------------------------------------------------------- */

/* "123.json" -> 123 and kind 'j'; "123.eml" -> 'e'; "*.tmp" -> 't'; else 0. */
static int disk_name(const char *name, uint64_t *id)
{
    size_t n = strlen(name);
    if (n > 4 && strcmp(name + n - 4, ".tmp") == 0)
        return 't';
    const char *dot = strrchr(name, '.');
    char num[24];
    if (!dot || dot == name || (size_t)(dot - name) >= sizeof(num))
        return 0;
    memcpy(num, name, (size_t)(dot - name));
    num[dot - name] = '\0';
    if (num[0] == '0' || num_parse_u64(num, UINT64_MAX - 1, id) < 0 || *id == 0)
        return 0;
    if (strcmp(dot, ".json") == 0)
        return 'j';
    if (strcmp(dot, ".eml") == 0)
        return 'e';
    return 0;
}

/* Read a whole file of at most max bytes; NULL with why. */
static char *disk_read(struct sink_disk *d, const char *name, uint64_t max, size_t *len,
                       const char **why)
{
    struct stat sb;
    int fd = openat(d->dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        *why = errno == ENOENT ? "missing" : strerror(errno);
        return NULL;
    }
    if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode) || (uint64_t)sb.st_size > max) {
        close(fd);
        *why = "not a regular file of an acceptable size";
        return NULL;
    }
    char *buf = malloc((size_t)sb.st_size + 1);
    if (!buf)
        fatal("out of memory");
    size_t got = 0;
    while (got < (size_t)sb.st_size) {
        ssize_t r = read(fd, buf + got, (size_t)sb.st_size - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    close(fd);
    if (got != (size_t)sb.st_size) {
        free(buf);
        *why = "short read";
        return NULL;
    }
    buf[got] = '\0';
    *len = got;
    return buf;
}

static char *disk_dup(const char *s)
{
    char *c = strdup(s ? s : "");
    if (!c)
        fatal("out of memory");
    return c;
}

struct sink_msg *disk_msg_parse(const char *json, size_t jlen, uint64_t id, char *raw,
                                size_t rawlen, const char **why)
{
    json_error_t jerr;
    json_t *j = json_loadb(json, jlen, JSON_REJECT_DUPLICATES, &jerr);
    json_t *to = j ? json_object_get(j, "to") : NULL;
    json_t *jid = j ? json_object_get(j, "id") : NULL,
           *jt = j ? json_object_get(j, "received_ms") : NULL;
    const char *from = j ? json_string_value(json_object_get(j, "from")) : NULL;
    if (!j || !json_is_integer(jid) || (uint64_t)json_integer_value(jid) != id ||
        !json_is_integer(jt) || !from || !json_is_array(to) ||
        json_array_size(to) > DISK_RCPTS_MAX) {
        json_decref(j);
        *why = "damaged envelope (.json)";
        return NULL;
    }
    for (size_t i = 0; i < json_array_size(to); i++) {
        if (!json_is_string(json_array_get(to, i))) {
            json_decref(j);
            *why = "damaged envelope (.json): recipient not a string";
            return NULL;
        }
    }
    struct sink_msg *m = calloc(1, sizeof(*m));
    if (!m)
        fatal("out of memory");
    m->id = id;
    m->received_ms = (int64_t)json_integer_value(jt);
    m->mail_from = disk_dup(from);
    m->nrcpt = json_array_size(to);
    m->rcpts = calloc(m->nrcpt ? m->nrcpt : 1, sizeof(char *));
    if (!m->rcpts)
        fatal("out of memory");
    for (size_t i = 0; i < m->nrcpt; i++)
        m->rcpts[i] = disk_dup(json_string_value(json_array_get(to, i)));
    m->helo = disk_dup(json_string_value(json_object_get(j, "helo")));
    m->peer = disk_dup(json_string_value(json_object_get(j, "peer")));
    m->auth_user = disk_dup(json_string_value(json_object_get(j, "auth_user")));
    m->tls = json_is_true(json_object_get(j, "tls"));
    json_decref(j);
    m->raw = raw;
    m->size = rawlen;
    char hv[1024];
    header_get(m->raw, m->size, "Subject", hv, sizeof(hv));
    m->subject = disk_dup(hv);
    header_get(m->raw, m->size, "From", hv, sizeof(hv));
    m->hdr_from = disk_dup(hv);
    header_get(m->raw, m->size, "To", hv, sizeof(hv));
    m->hdr_to = disk_dup(hv);
    return m;
}

/* The message with this id, or NULL with why. */
static struct sink_msg *disk_load_one(struct sink_disk *d, uint64_t id, uint64_t max_bytes,
                                      const char **why)
{
    char name[48];
    size_t jlen, elen;
    snprintf(name, sizeof(name), "%llu.json", (unsigned long long)id);
    char *js = disk_read(d, name, DISK_JSON_MAX, &jlen, why);
    if (!js)
        return NULL;
    snprintf(name, sizeof(name), "%llu.eml", (unsigned long long)id);
    char *raw = disk_read(d, name, max_bytes && max_bytes < DISK_EML_MAX ? max_bytes : DISK_EML_MAX,
                          &elen, why);
    if (!raw) {
        free(js);
        if (strcmp(*why, "missing") == 0)
            *why = "its .eml is missing";
        return NULL;
    }
    struct sink_msg *m = disk_msg_parse(js, jlen, id, raw, elen, why);
    free(js);
    if (!m)
        free(raw);
    return m;
}

static int disk_cmp_desc(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

long disk_load(struct sink_disk *d, struct sink_store *st)
{
    int fd = dup(d->dirfd);
    DIR *dir = fd >= 0 ? fdopendir(fd) : NULL;
    if (!dir) {
        log_warn("store: cannot read %s: %s", d->path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    rewinddir(dir);
    uint64_t *ids = NULL, max_id = 0, id;
    size_t nids = 0, cap = 0;
    struct dirent *de;
    while ((de = readdir(dir))) {
        if (de->d_name[0] == '.')
            continue;
        int kind = disk_name(de->d_name, &id);
        if (kind == 't') {
            if (unlinkat(d->dirfd, de->d_name, 0) < 0)
                log_warn("store: cannot remove %s/%s: %s", d->path, de->d_name, strerror(errno));
            continue;
        }
        if (kind == 0) {
            log_warn("store: skipping %s/%s: not a tern sink file", d->path, de->d_name);
            continue;
        }
        if (id > max_id)
            max_id = id;
        if (kind != 'j')
            continue;
        if (nids == cap) {
            cap = cap ? cap * 2 : 256;
            uint64_t *n = realloc(ids, cap * sizeof(*n));
            if (!n)
                fatal("out of memory");
            ids = n;
        }
        ids[nids++] = id;
    }
    closedir(dir);
    if (nids)
        qsort(ids, nids, sizeof(*ids), disk_cmp_desc);

    /* newest first, within the limits; then added oldest first */
    struct sink_msg **keep = calloc(nids ? nids : 1, sizeof(*keep));
    if (!keep)
        fatal("out of memory");
    size_t nkeep = 0, nold = 0;
    uint64_t bytes = 0;
    for (size_t i = 0; i < nids; i++) {
        if (nkeep >= st->max_count) {
            disk_unlink_id(d, ids[i]);
            nold++;
            continue;
        }
        const char *why = "";
        struct sink_msg *m = disk_load_one(d, ids[i], st->max_bytes, &why);
        if (!m) {
            log_warn("store: skipping message %llu in %s: %s", (unsigned long long)ids[i], d->path,
                     why);
            continue;
        }
        if (st->max_bytes && bytes + m->size > st->max_bytes && nkeep > 0) {
            store_msg_free(m);
            disk_unlink_id(d, ids[i]);
            nold++;
            continue;
        }
        bytes += m->size;
        keep[nkeep++] = m;
    }
    for (size_t i = nkeep; i-- > 0;)
        store_add(st, keep[i]);
    st->received -= nkeep; /* loaded, not received by this process */
    if (max_id >= st->next_id)
        st->next_id = max_id + 1;
    free(keep);
    free(ids);
    if (nold)
        log_info("store: removed %zu old messages beyond --max-messages/--max-memory from %s", nold,
                 d->path);
    return (long)nkeep;
}
