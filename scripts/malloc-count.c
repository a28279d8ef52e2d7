/*
 * malloc-count.c - an LD_PRELOAD allocation counter for scripts/bench-counts.sh.
 *
 * Counts calls to malloc, calloc, realloc, posix_memalign, aligned_alloc and
 * memalign in the process it is preloaded into (every thread), and appends one
 * line with the counts so far to the file named by $MALLOC_COUNT_FILE (stderr
 * when unset) on SIGUSR1 and at exit:
 *
 *   malloc_count pid=123 malloc=… calloc=… realloc=… memalign=… total=…
 *
 * The allocations themselves go to glibc (__libc_malloc and friends), so the
 * counts are those of the real program; free is not counted. The dump writes
 * with write(2) only: it is async-signal-safe.
 *
 * Build: cc -O2 -shared -fPIC -o malloc-count.so scripts/malloc-count.c
 * Use:   MALLOC_COUNT_FILE=counts.txt LD_PRELOAD=./malloc-count.so piglix serve …
 *        kill -USR1 PID   # a line with the counts so far
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);

static atomic_ulong count_malloc, count_calloc, count_realloc, count_memalign;
/* $MALLOC_COUNT_FILE, read once at start (getenv is not async-signal-safe). */
static const char *dump_path;

void *malloc(size_t size) {
    atomic_fetch_add_explicit(&count_malloc, 1, memory_order_relaxed);
    return __libc_malloc(size);
}

void *calloc(size_t n, size_t size) {
    atomic_fetch_add_explicit(&count_calloc, 1, memory_order_relaxed);
    return __libc_calloc(n, size);
}

void *realloc(void *pointer, size_t size) {
    atomic_fetch_add_explicit(&count_realloc, 1, memory_order_relaxed);
    return __libc_realloc(pointer, size);
}

int posix_memalign(void **out, size_t alignment, size_t size) {
    if (alignment % sizeof(void *) != 0 || (alignment & (alignment - 1)) != 0) return EINVAL;
    atomic_fetch_add_explicit(&count_memalign, 1, memory_order_relaxed);
    void *pointer = __libc_memalign(alignment, size);
    if (!pointer && size) return ENOMEM;
    *out = pointer;
    return 0;
}

void *aligned_alloc(size_t alignment, size_t size) {
    atomic_fetch_add_explicit(&count_memalign, 1, memory_order_relaxed);
    return __libc_memalign(alignment, size);
}

void *memalign(size_t alignment, size_t size) {
    atomic_fetch_add_explicit(&count_memalign, 1, memory_order_relaxed);
    return __libc_memalign(alignment, size);
}

/* Appends " name=value" to line at *used (no stdio: async-signal-safe). */
static void put(char *line, size_t *used, const char *name, unsigned long value) {
    char digits[24];
    int n = 0;
    do { digits[n++] = (char)('0' + value % 10); value /= 10; } while (value);
    size_t length = strlen(name);
    line[(*used)++] = ' ';
    memcpy(line + *used, name, length);
    *used += length;
    line[(*used)++] = '=';
    while (n) line[(*used)++] = digits[--n];
}

static void dump(void) {
    int saved = errno;
    unsigned long m = atomic_load(&count_malloc), c = atomic_load(&count_calloc);
    unsigned long r = atomic_load(&count_realloc), a = atomic_load(&count_memalign);
    char line[256];
    size_t used = 0;
    memcpy(line, "malloc_count", 12);
    used = 12;
    put(line, &used, "pid", (unsigned long)getpid());
    put(line, &used, "malloc", m);
    put(line, &used, "calloc", c);
    put(line, &used, "realloc", r);
    put(line, &used, "memalign", a);
    put(line, &used, "total", m + c + r + a);
    line[used++] = '\n';
    const char *path = dump_path;
    int fd = path ? open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644) : 2;
    if (fd >= 0) {
        ssize_t ignored = write(fd, line, used);
        (void)ignored;
        if (path) close(fd);
    }
    errno = saved;
}

static void on_signal(int signal_number) {
    (void)signal_number;
    dump();
}

__attribute__((constructor)) static void start(void) {
    dump_path = getenv("MALLOC_COUNT_FILE");
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = on_signal;
    action.sa_flags = SA_RESTART;
    sigaction(SIGUSR1, &action, NULL);
}

__attribute__((destructor)) static void finish(void) { dump(); }
