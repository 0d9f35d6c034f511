/* metabench: the timed part of bench/run.sh, in one small process so that process startup and
 * shell overhead never land inside a measurement.
 *
 * Every command prints exactly one number on stdout (the unit is given below) and exits 0, or
 * prints a message on stderr and exits 1. Times come from CLOCK_MONOTONIC around the loop only.
 *
 *   seqread  FILE THREADS PASSES       read the whole FILE PASSES times with 1 MiB pread()s;
 *                                      THREADS (1..8) each read their own contiguous slice -> MB/s
 *   seqwrite FILE MIB FSYNC            create/truncate FILE, write MIB MiB in 1 MiB write()s,
 *                                      fsync() first if FSYNC=1, close           -> MB/s
 *   openclose FILE N THREADS           open(O_RDONLY)+close() N times per thread; with THREADS>1
 *                                      thread i uses FILE.i                       -> us per op (wall / all ops)
 *   stat     FILE N                    stat() the same FILE N times              -> us per op
 *   statall  DIR N                     stat() DIR/f00000 .. DIR/f<N-1> once each -> us per file
 *   missing  PATH N                    stat() PATH, which does not exist, N times -> us per call
 *                                      (through a FUSE daemon that caches no negative entry:
 *                                      one LOOKUP round trip per call)
 *   create   DIR N                     open(O_CREAT|O_EXCL|O_WRONLY)+close DIR/c00000..  -> us per file
 *   unlink   DIR N                     unlink DIR/c00000..                       -> us per file
 *   readdir  DIR N                     list DIR with getdents64 (expects N entries + . and ..)
 *                                                                                -> ms per listing
 *   lsl      DIR N                     readdir + fstatat(AT_SYMLINK_NOFOLLOW) per entry, like ls -l
 *                                                                                -> ms per listing
 *   mkfiles  DIR N                     (setup, untimed output) create empty DIR/f00000.. -> N
 *   rss      PID                       VmRSS of PID                              -> KiB
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define MIB (1024L * 1024L)

static void die(const char *what, const char *path) {
    fprintf(stderr, "metabench: %s %s: %s\n", what, path ? path : "", strerror(errno));
    exit(1);
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static long num(const char *s, const char *what) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < 0) {
        fprintf(stderr, "metabench: bad %s: %s\n", what, s);
        exit(2);
    }
    return v;
}

static void *xalloc(size_t n) {
    void *p;
    if (posix_memalign(&p, 4096, n)) {
        fprintf(stderr, "metabench: out of memory\n");
        exit(1);
    }
    memset(p, 0x5a, n);
    return p;
}

/* ---- sequential read ---- */

struct rd {
    const char *path;
    off_t start, len;
    long long got;
};

static void *read_slice(void *arg) {
    struct rd *r = arg;
    int fd = open(r->path, O_RDONLY);
    if (fd < 0) die("open", r->path);
    char *buf = xalloc(MIB);
    off_t off = r->start, end = r->start + r->len;
    while (off < end) {
        size_t want = end - off < MIB ? (size_t)(end - off) : (size_t)MIB;
        ssize_t n = pread(fd, buf, want, off);
        if (n < 0) die("read", r->path);
        if (n == 0) break;
        off += n;
        r->got += n;
    }
    close(fd);
    free(buf);
    return NULL;
}

static int cmd_seqread(const char *path, int threads, int passes) {
    struct stat st;
    if (stat(path, &st)) die("stat", path);
    if (threads < 1 || threads > 8) threads = 1;
    pthread_t t[8];
    struct rd r[8];
    off_t slice = (st.st_size / threads + MIB - 1) / MIB * MIB;
    if (passes < 1) passes = 1;
    long long total = 0;
    double t0 = now();
    for (int p = 0; p < passes; p++) {
        for (int i = 0; i < threads; i++) {
            r[i] = (struct rd){path, i * slice, slice, 0};
            if (r[i].start + r[i].len > st.st_size) r[i].len = st.st_size - r[i].start;
            pthread_create(&t[i], NULL, read_slice, &r[i]);
        }
        for (int i = 0; i < threads; i++) {
            pthread_join(t[i], NULL);
            total += r[i].got;
        }
    }
    double dt = now() - t0;
    if (total != (long long)st.st_size * passes) {
        fprintf(stderr, "metabench: read %lld of %lld bytes\n", total, (long long)st.st_size);
        return 1;
    }
    printf("%.1f\n", total / dt / 1e6);
    return 0;
}

/* ---- sequential write ---- */

static int cmd_seqwrite(const char *path, long mib, int do_fsync) {
    char *buf = xalloc(MIB);
    double t0 = now();
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) die("create", path);
    for (long i = 0; i < mib; i++) {
        size_t done = 0;
        while (done < MIB) {
            ssize_t n = write(fd, buf + done, MIB - done);
            if (n <= 0) die("write", path);
            done += n;
        }
    }
    if (do_fsync && fsync(fd)) die("fsync", path);
    if (close(fd)) die("close", path);
    double dt = now() - t0;
    printf("%.1f\n", mib * (double)MIB / dt / 1e6);
    free(buf);
    return 0;
}

/* ---- open + close ---- */

struct oc {
    char path[4096];
    long n;
};

static void *openclose_loop(void *arg) {
    struct oc *o = arg;
    for (long i = 0; i < o->n; i++) {
        int fd = open(o->path, O_RDONLY);
        if (fd < 0) die("open", o->path);
        close(fd);
    }
    return NULL;
}

static int cmd_openclose(const char *path, long n, int threads) {
    if (threads < 1 || threads > 8) threads = 1;
    pthread_t t[8];
    struct oc o[8];
    for (int i = 0; i < threads; i++) {
        if (threads == 1)
            snprintf(o[i].path, sizeof o[i].path, "%s", path);
        else
            snprintf(o[i].path, sizeof o[i].path, "%s.%d", path, i);
        o[i].n = n;
        int fd = open(o[i].path, O_RDONLY); /* warm: one lookup before the clock starts */
        if (fd < 0) die("open", o[i].path);
        close(fd);
    }
    double t0 = now();
    for (int i = 0; i < threads; i++) pthread_create(&t[i], NULL, openclose_loop, &o[i]);
    for (int i = 0; i < threads; i++) pthread_join(t[i], NULL);
    double dt = now() - t0;
    printf("%.3f\n", dt * 1e6 / (n * threads));
    return 0;
}

/* ---- stat ---- */

static int cmd_stat(const char *path, long n) {
    struct stat st;
    if (stat(path, &st)) die("stat", path);
    double t0 = now();
    for (long i = 0; i < n; i++)
        if (stat(path, &st)) die("stat", path);
    double dt = now() - t0;
    printf("%.3f\n", dt * 1e6 / n);
    return 0;
}

static int cmd_missing(const char *path, long n) {
    struct stat st;
    double t0 = now();
    for (long i = 0; i < n; i++) {
        if (stat(path, &st) == 0) { errno = EEXIST; die("missing: exists:", path); }
        if (errno != ENOENT) die("missing: stat", path);
    }
    double dt = now() - t0;
    printf("%.3f\n", dt * 1e6 / n);
    return 0;
}

static void name_of(char *out, size_t cap, const char *dir, char prefix, long i) {
    snprintf(out, cap, "%s/%c%05ld", dir, prefix, i);
}

static int cmd_statall(const char *dir, long n) {
    char p[4096];
    struct stat st;
    double t0 = now();
    for (long i = 0; i < n; i++) {
        name_of(p, sizeof p, dir, 'f', i);
        if (stat(p, &st)) die("stat", p);
    }
    double dt = now() - t0;
    printf("%.3f\n", dt * 1e6 / n);
    return 0;
}

static int cmd_create(const char *dir, long n) {
    char p[4096];
    double t0 = now();
    for (long i = 0; i < n; i++) {
        name_of(p, sizeof p, dir, 'c', i);
        int fd = open(p, O_WRONLY | O_CREAT | O_EXCL, 0644);
        if (fd < 0) die("create", p);
        close(fd);
    }
    double dt = now() - t0;
    printf("%.3f\n", dt * 1e6 / n);
    return 0;
}

static int cmd_unlink(const char *dir, long n) {
    char p[4096];
    double t0 = now();
    for (long i = 0; i < n; i++) {
        name_of(p, sizeof p, dir, 'c', i);
        if (unlink(p)) die("unlink", p);
    }
    double dt = now() - t0;
    printf("%.3f\n", dt * 1e6 / n);
    return 0;
}

static int cmd_mkfiles(const char *dir, long n) {
    char p[4096];
    if (mkdir(dir, 0755) && errno != EEXIST) die("mkdir", dir);
    for (long i = 0; i < n; i++) {
        name_of(p, sizeof p, dir, 'f', i);
        int fd = open(p, O_WRONLY | O_CREAT, 0644);
        if (fd < 0) die("create", p);
        close(fd);
    }
    printf("%ld\n", n);
    return 0;
}

/* ---- listings ---- */

struct linux_dirent64 {
    uint64_t d_ino;
    int64_t d_off;
    unsigned short d_reclen;
    unsigned char d_type;
    char d_name[];
};

static int list(const char *dir, long expect, int with_stat) {
    static char buf[64 * 1024]; /* what glibc's readdir would use at most: 32 KiB */
    double t0 = now();
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd < 0) die("opendir", dir);
    long count = 0;
    for (;;) {
        long n = syscall(SYS_getdents64, fd, buf, 32 * 1024);
        if (n < 0) die("getdents64", dir);
        if (n == 0) break;
        for (long off = 0; off < n;) {
            struct linux_dirent64 *d = (struct linux_dirent64 *)(buf + off);
            off += d->d_reclen;
            count++;
            if (with_stat) {
                struct stat st;
                if (fstatat(fd, d->d_name, &st, AT_SYMLINK_NOFOLLOW)) die("fstatat", d->d_name);
            }
        }
    }
    close(fd);
    double dt = now() - t0;
    if (count != expect + 2) {
        fprintf(stderr, "metabench: %s listed %ld entries, expected %ld\n", dir, count, expect + 2);
        return 1;
    }
    printf("%.3f\n", dt * 1e3);
    return 0;
}

static int cmd_rss(const char *pid) {
    char p[64], line[256];
    snprintf(p, sizeof p, "/proc/%s/status", pid);
    FILE *f = fopen(p, "r");
    if (!f) die("open", p);
    while (fgets(line, sizeof line, f)) {
        long kb;
        if (sscanf(line, "VmRSS: %ld", &kb) == 1) {
            printf("%ld\n", kb);
            fclose(f);
            return 0;
        }
    }
    fclose(f);
    fprintf(stderr, "metabench: no VmRSS in %s\n", p);
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: metabench COMMAND ARGS... (see the comment at the top of metabench.c)\n");
        return 2;
    }
    const char *c = argv[1];
#define NEED(k)                                                               \
    if (argc != (k) + 2) {                                                    \
        fprintf(stderr, "metabench %s: needs %d arguments\n", c, (k));        \
        return 2;                                                             \
    }
    if (!strcmp(c, "seqread")) { NEED(3); return cmd_seqread(argv[2], num(argv[3], "threads"), num(argv[4], "passes")); }
    if (!strcmp(c, "seqwrite")) { NEED(3); return cmd_seqwrite(argv[2], num(argv[3], "MiB"), num(argv[4], "fsync")); }
    if (!strcmp(c, "openclose")) { NEED(3); return cmd_openclose(argv[2], num(argv[3], "N"), num(argv[4], "threads")); }
    if (!strcmp(c, "stat")) { NEED(2); return cmd_stat(argv[2], num(argv[3], "N")); }
    if (!strcmp(c, "statall")) { NEED(2); return cmd_statall(argv[2], num(argv[3], "N")); }
    if (!strcmp(c, "missing")) { NEED(2); return cmd_missing(argv[2], num(argv[3], "N")); }
    if (!strcmp(c, "create")) { NEED(2); return cmd_create(argv[2], num(argv[3], "N")); }
    if (!strcmp(c, "unlink")) { NEED(2); return cmd_unlink(argv[2], num(argv[3], "N")); }
    if (!strcmp(c, "readdir")) { NEED(2); return list(argv[2], num(argv[3], "N"), 0); }
    if (!strcmp(c, "lsl")) { NEED(2); return list(argv[2], num(argv[3], "N"), 1); }
    if (!strcmp(c, "mkfiles")) { NEED(2); return cmd_mkfiles(argv[2], num(argv[3], "N")); }
    if (!strcmp(c, "rss")) { NEED(1); return cmd_rss(argv[2]); }
    fprintf(stderr, "metabench: unknown command %s\n", c);
    return 2;
}
