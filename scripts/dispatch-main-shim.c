/*
 * dispatch-main-shim.c - lets valgrind run a Swift program with an async main
 * (scripts/bench-counts.sh runs `piglix serve` under callgrind with it).
 *
 * A Swift `static func main() async` ends its main thread in libdispatch's
 * dispatch_main(), which parks the main thread in sigsuspend from a
 * thread-specific-data destructor after pthread_exit; valgrind 3.19 (Debian
 * 12's) crashes there with an internal SIGSEGV, whatever the tool. Preloaded,
 * this dispatch_main keeps the main thread and drains the main queue itself,
 * the way CoreFoundation's run loop does on Linux: wait on the main queue's
 * eventfd, then run what is queued. Nothing else changes: the program's
 * other threads and its instructions are its own.
 *
 * Build: cc -O2 -shared -fPIC -o dispatch-main-shim.so scripts/dispatch-main-shim.c
 * Use:   LD_PRELOAD=./dispatch-main-shim.so valgrind --tool=callgrind piglix serve …
 */
#include <poll.h>
#include <stdint.h>
#include <unistd.h>

/* libdispatch's hooks for a run loop that drains the main queue (CF's). */
extern int _dispatch_get_main_queue_handle_4CF(void);
extern void _dispatch_main_queue_callback_4CF(void *message);

void dispatch_main(void) {
    int fd = _dispatch_get_main_queue_handle_4CF();
    for (;;) {
        struct pollfd wait = {fd, POLLIN, 0};
        if (poll(&wait, 1, -1) < 0) continue;
        uint64_t count;
        ssize_t ignored = read(fd, &count, sizeof count);
        (void)ignored;
        _dispatch_main_queue_callback_4CF(0);
    }
}
