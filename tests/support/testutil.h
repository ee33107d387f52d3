/*
 * testutil.h - small file and folder helpers shared by the unit tests:
 * read a whole file, write one, make a fresh temporary folder under
 * $TMPDIR (or /tmp), remove a tree, count the entries of a folder.
 * Header-only on purpose (static inline functions, no CMake target); include it
 * after <cmocka.h>: the helpers that cannot go on fail the running test.
 */
#ifndef TERN_TESTS_TESTUTIL_H
#define TERN_TESTS_TESTUTIL_H

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The whole of path, NUL-terminated, in a malloc'd buffer (free it); its
 * size into *len when len is not NULL.  Fails the test if it cannot be read. */
static inline char *tu_slurp(const char *path, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        fail_msg("tu_slurp: cannot open %s: %s", path, strerror(errno));
    size_t cap = 4096, n = 0;
    char *p = malloc(cap);
    assert_non_null(p);
    for (;;) {
        if (n + 1 >= cap) {
            cap *= 2;
            p = realloc(p, cap);
            assert_non_null(p);
        }
        ssize_t r = read(fd, p + n, cap - 1 - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            fail_msg("tu_slurp: cannot read %s: %s", path, strerror(errno));
        if (r == 0)
            break;
        n += (size_t)r;
    }
    close(fd);
    p[n] = '\0';
    if (len)
        *len = n;
    return p;
}

/* Writes len bytes of data to path, created with mode (less the umask) or
 * truncated.  Fails the test if that does not work. */
static inline void tu_write(const char *path, const void *data, size_t len, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0)
        fail_msg("tu_write: cannot create %s: %s", path, strerror(errno));
    const char *p = data;
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            fail_msg("tu_write: cannot write %s: %s", path, strerror(errno));
        p += w;
        len -= (size_t)w;
    }
    assert_int_equal(close(fd), 0);
}

/* Writes the string text to path (see tu_write). */
static inline void tu_write_file(const char *path, const char *text, mode_t mode)
{
    tu_write(path, text, strlen(text), mode);
}

/* "dir/rel" into out; fails the test if it does not fit.  Returns out. */
static inline char *tu_join(char *out, size_t size, const char *dir, const char *rel)
{
    int n = snprintf(out, size, "%s/%s", dir, rel);
    if (n < 0 || (size_t)n >= size)
        fail_msg("tu_join: %s/%s is too long", dir, rel);
    return out;
}

/* A new, empty folder "$TMPDIR/prefix-XXXXXX" (/tmp without TMPDIR), its
 * name into out.  Returns out, or NULL (errno set) if it could not be made
 * or its name does not fit in size bytes. */
static inline char *tu_tmpdir(char *out, size_t size, const char *prefix)
{
    const char *tmp = getenv("TMPDIR");
    if (!tmp || !*tmp)
        tmp = "/tmp";
    int n = snprintf(out, size, "%s/%s-XXXXXX", tmp, prefix);
    if (n < 0 || (size_t)n >= size) {
        errno = ENAMETOOLONG;
        return NULL;
    }
    return mkdtemp(out);
}

static inline int tu_rmtree_open_(const char *path, const struct stat *st, int flag,
                                  struct FTW *ftw)
{
    (void)ftw;
    if (flag == FTW_D || flag == FTW_DNR)
        (void)chmod(path, (st->st_mode & 07777) | S_IRWXU);
    return 0;
}

static inline int tu_rmtree_remove_(const char *path, const struct stat *st, int flag,
                                    struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path) == 0 || errno == ENOENT ? 0 : -1;
}

/* Removes path and everything below it, like chmod -R u+rwx && rm -rf:
 * folders made read-only by a test are opened up first; symbolic links are
 * removed, never followed.  A path that does not exist is fine.  Returns 0,
 * or -1 with errno set. */
static inline int tu_rmtree(const char *path)
{
    struct stat st;
    if (lstat(path, &st) < 0)
        return errno == ENOENT ? 0 : -1;
    if (S_ISDIR(st.st_mode) && nftw(path, tu_rmtree_open_, 16, FTW_PHYS) < 0)
        return -1;
    return nftw(path, tu_rmtree_remove_, 16, FTW_DEPTH | FTW_PHYS);
}

/* The number of entries in dir other than . and .., the name of the last
 * one read into name (when name is not NULL).  -1 if dir cannot be opened. */
static inline int tu_count_entries(const char *dir, char *name, size_t size)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    int n = 0;
    if (!d)
        return -1;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        n++;
        if (name)
            snprintf(name, size, "%s", de->d_name);
    }
    closedir(d);
    return n;
}

#endif
