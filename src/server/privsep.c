/*
 * privsep.c - leaving root (see privsep.h).
 *
 * The hand-over of data_dir is careful about what the user may have put
 * there: every entry is opened with O_NOFOLLOW (a symbolic link is never
 * followed), and only folders and single-link regular files still owned
 * by root are given away, through the open descriptor (fchown/fchmod), so
 * a link planted towards a system file is never chowned.  The walk is
 * bounded in depth.  privsep_drop() fails rather than run half-dropped.
 */
#include "server/privsep.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/log.h"

#define PRIVSEP_DEPTH_MAX 4 /* queue/SUB/FILE is as deep as the spool goes */

int privsep_plan(const struct conf *c, struct privsep *ps, char *why, size_t whylen)
{
    memset(ps, 0, sizeof(*ps));
    uid_t uid = 0;
    gid_t gid = 0;
    bool known = conf_user_ids(c, &uid, &gid) == 0;
    if (geteuid() != 0) {
        if (c->user[0] && (!known || uid != geteuid()))
            log_info("[server] user = %s ignored: not started as root (running as uid %u)", c->user,
                     (unsigned)geteuid());
        return 0;
    }
    if (!c->user[0]) {
        snprintf(why, whylen,
                 "running as root needs [server] user = ... (deliveries never run as root)");
        return -1;
    }
    if (!known || uid == 0) {
        snprintf(why, whylen, "[server] user = %s: %s", c->user,
                 known ? "is root (deliveries never run as root)" : "no such user or group");
        return -1;
    }
    ps->drop = true;
    ps->uid = uid;
    ps->gid = gid;
    snprintf(ps->user, sizeof(ps->user), "%s", c->user);
    return 0;
}

/* Give the open entry fd (named name, for messages) to the user if root owns it. */
static int privsep_give(int fd, const char *name, const struct privsep *ps, struct stat *st,
                        char *why, size_t whylen)
{
    if (fstat(fd, st) < 0) {
        snprintf(why, whylen, "%s: %s", name, strerror(errno));
        return -1;
    }
    bool dir = S_ISDIR(st->st_mode);
    if (st->st_uid != 0 || (!dir && (!S_ISREG(st->st_mode) || st->st_nlink != 1)))
        return 0; /* the user's already, or nothing we hand over */
    if (fchown(fd, ps->uid, ps->gid) < 0 || fchmod(fd, dir ? 0700 : 0600) < 0) {
        snprintf(why, whylen, "%s: chown to %s: %s", name, ps->user, strerror(errno));
        return -1;
    }
    return 0;
}

/* fd0 is open on a folder already given; give what it holds, depth levels down.
   fd0 is consumed (closed). */
static int privsep_give_tree(int fd0, const char *name, const struct privsep *ps, int depth,
                             char *why, size_t whylen)
{
    DIR *d = fdopendir(fd0);
    if (!d) {
        snprintf(why, whylen, "%s: %s", name, strerror(errno));
        close(fd0);
        return -1;
    }
    int rc = 0, dfd = dirfd(d);
    struct dirent *de = NULL;
    while (rc == 0 && (errno = 0, de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        char sub[CONF_STR_MAX + 300];
        snprintf(sub, sizeof(sub), "%s/%s", name, de->d_name);
        /* one look first: a file the user already owns (every file after the first
           start) is not opened at all; what is handed over is checked again on its fd */
        struct stat pre;
        if (fstatat(dfd, de->d_name, &pre, AT_SYMLINK_NOFOLLOW) < 0) {
            if (errno == ENOENT)
                continue;
            snprintf(why, whylen, "%s: %s", sub, strerror(errno));
            rc = -1;
            break;
        }
        if (S_ISLNK(pre.st_mode) || (!S_ISDIR(pre.st_mode) && pre.st_uid != 0))
            continue;
        int fd = openat(dfd, de->d_name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
        if (fd < 0) {
            if (errno == ELOOP || errno == ENOENT || errno == ENXIO)
                continue; /* a symbolic link (never followed), gone, or a socket */
            snprintf(why, whylen, "%s: %s", sub, strerror(errno));
            rc = -1;
            break;
        }
        struct stat st;
        rc = privsep_give(fd, sub, ps, &st, why, whylen);
        if (rc == 0 && S_ISDIR(st.st_mode) && depth > 1) {
            rc = privsep_give_tree(fd, sub, ps, depth - 1, why, whylen);
            continue;
        }
        if (close(fd) < 0 && rc == 0) {
            snprintf(why, whylen, "%s: %s", sub, strerror(errno));
            rc = -1;
        }
    }
    if (rc == 0 && !de && errno != 0) {
        snprintf(why, whylen, "%s: %s", name, strerror(errno));
        rc = -1;
    }
    closedir(d);
    return rc;
}

/* data_dir/name: create it (0700) if missing, give it to the user, and what it
   holds if deep > 0. */
static int privsep_folder(const char *data_dir, const char *name, int deep,
                          const struct privsep *ps, char *why, size_t whylen)
{
    char path[CONF_STR_MAX + 16];
    snprintf(path, sizeof(path), "%s/%s", data_dir, name);
    if (mkdir(path, 0700) < 0 && errno != EEXIST) {
        snprintf(why, whylen, "mkdir %s: %s", path, strerror(errno));
        return -1;
    }
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        snprintf(why, whylen, "%s: %s", path, strerror(errno));
        return -1;
    }
    struct stat st;
    if (privsep_give(fd, path, ps, &st, why, whylen) < 0) {
        close(fd);
        return -1;
    }
    if (st.st_uid != 0 && st.st_uid != ps->uid) {
        snprintf(why, whylen, "%s: owned by uid %u, neither root nor %s", path, (unsigned)st.st_uid,
                 ps->user);
        close(fd);
        return -1;
    }
    if (deep > 0)
        return privsep_give_tree(fd, path, ps, deep, why, whylen);
    if (close(fd) < 0) {
        snprintf(why, whylen, "%s: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

int privsep_prepare(const struct conf *c, const struct privsep *ps, char *why, size_t whylen)
{
    if (!ps->drop)
        return 0;
    struct stat st;
    if (mkdir(c->data_dir, 0755) < 0 && errno != EEXIST) {
        snprintf(why, whylen, "mkdir %s: %s", c->data_dir, strerror(errno));
        return -1;
    }
    if (stat(c->data_dir, &st) < 0) {
        snprintf(why, whylen, "%s: %s", c->data_dir, strerror(errno));
        return -1;
    }
    bool enter = st.st_uid == ps->uid   ? (st.st_mode & S_IXUSR)
                 : st.st_gid == ps->gid ? (st.st_mode & S_IXGRP)
                                        : (st.st_mode & S_IXOTH);
    if (!enter) {
        snprintf(why, whylen, "%s: user %s cannot enter it (mode %04o): chmod o+x or chgrp it",
                 c->data_dir, ps->user, (unsigned)st.st_mode & 07777);
        return -1;
    }
    if (privsep_folder(c->data_dir, "queue", PRIVSEP_DEPTH_MAX, ps, why, whylen) < 0 ||
        privsep_folder(c->data_dir, "pickup", PRIVSEP_DEPTH_MAX, ps, why, whylen) < 0 ||
        privsep_folder(c->data_dir, "mail", 0, ps, why, whylen) < 0 ||
        privsep_folder(c->data_dir, "mta-sts", 1, ps, why, whylen) < 0) /* MTA-STS policies */
        return -1;
    return 0;
}

int privsep_pidfile(const char *path, const struct privsep *ps)
{
    int fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0)
        return -1;
    char buf[32];
    int n = snprintf(buf, sizeof(buf), "%ld\n", (long)getpid());
    if ((ps->drop && fchown(fd, ps->uid, ps->gid) < 0) || fchmod(fd, 0644) < 0 ||
        ftruncate(fd, 0) < 0 || write(fd, buf, (size_t)n) != n) {
        close(fd);
        return -1;
    }
    return fd;
}

int privsep_drop(const struct privsep *ps, char *why, size_t whylen)
{
    if (!ps->drop)
        return 0;
    if (setgroups(1, &ps->gid) < 0 || setresgid(ps->gid, ps->gid, ps->gid) < 0 ||
        setresuid(ps->uid, ps->uid, ps->uid) < 0) {
        snprintf(why, whylen, "cannot become user %s: %s", ps->user, strerror(errno));
        return -1;
    }
    uid_t ru, eu, su;
    gid_t rg, eg, sg;
    if (getresuid(&ru, &eu, &su) < 0 || getresgid(&rg, &eg, &sg) < 0 || ru != ps->uid ||
        eu != ps->uid || su != ps->uid || rg != ps->gid || eg != ps->gid || sg != ps->gid ||
        setuid(0) == 0 || seteuid(0) == 0) {
        snprintf(why, whylen, "user %s: root privileges are still there after the switch",
                 ps->user);
        return -1;
    }
    log_info("running as user %s (uid %u, gid %u)", ps->user, (unsigned)ps->uid, (unsigned)ps->gid);
    return 0;
}

int privsep_become_owner(const char *dir, char *why, size_t whylen)
{
    struct stat st;
    if (geteuid() != 0 || stat(dir, &st) < 0 || st.st_uid == 0)
        return 0;
    struct privsep ps = {.drop = true, .uid = st.st_uid, .gid = st.st_gid};
    snprintf(ps.user, sizeof(ps.user), "uid %u", (unsigned)st.st_uid);
    if (setgroups(1, &ps.gid) < 0 || setresgid(ps.gid, ps.gid, ps.gid) < 0 ||
        setresuid(ps.uid, ps.uid, ps.uid) < 0) {
        snprintf(why, whylen, "cannot become the owner of %s (uid %u): %s", dir,
                 (unsigned)st.st_uid, strerror(errno));
        return -1;
    }
    return 0;
}
