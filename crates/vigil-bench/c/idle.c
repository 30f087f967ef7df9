/* The long-lived process of vigil-bench's scale metric: it waits for signals and does nothing else.
 *
 * Built without a C library (gcc -static -nostdlib): its start is the exec and nothing more. A dynamically
 * linked program such as sleep(1) spends most of its start in the dynamic loader and in glibc's CPU feature
 * detection (cpuid, which traps in a virtual machine); ten thousand of them would measure that rather than
 * vigild. A signal whose default action is to terminate (SIGTERM, SIGKILL) ends it. */
#include <asm/unistd.h>

#if defined(__x86_64__)
static long wait_for_signal(void)
{
    long r;
    __asm__ volatile("syscall" : "=a"(r) : "a"((long)__NR_pause) : "rcx", "r11", "memory");
    return r;
}
#elif defined(__aarch64__)
/* No pause(2) here: ppoll with no descriptor and no timeout waits for a signal the same way. */
static long wait_for_signal(void)
{
    register long x8 __asm__("x8") = __NR_ppoll;
    register long x0 __asm__("x0") = 0;
    register long x1 __asm__("x1") = 0;
    register long x2 __asm__("x2") = 0;
    register long x3 __asm__("x3") = 0;
    __asm__ volatile("svc 0" : "+r"(x0) : "r"(x8), "r"(x1), "r"(x2), "r"(x3) : "memory");
    return x0;
}
#else
#error "idle.c knows the system calls of x86-64 and aarch64 only"
#endif

void _start(void)
{
    for (;;)
        wait_for_signal();
}
