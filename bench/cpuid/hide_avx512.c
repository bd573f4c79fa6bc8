/*
 * LD_PRELOAD shim: the process sees this CPU as an AVX2 one (no AVX-512, no VNNI, no AMX).
 *
 * onnxruntime's MLAS picks its int8 and fp32 kernels from the `cpuid` instruction, so a machine with
 * AVX-512 VNNI never runs the AVX2 kernels that AVX2-only hosts run. Linux can make `cpuid` fault in
 * user space where the CPU supports it (arch_prctl(ARCH_SET_CPUID, 0); /proc/cpuinfo flag
 * `cpuid_fault`): the kernel then sends SIGSEGV at each `cpuid`, and this handler answers it in place
 * of the hardware, with the AVX-512, VNNI and AMX bits cleared, so the AVX2 kernels run at native
 * speed on real silicon. The flag is per thread, inherited by threads created later and cleared by
 * execve, so the constructor below runs before the program's own threads exist.
 */
#define _GNU_SOURCE
#include <asm/prctl.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#define BIT(n) (1u << (n))

static int cpuid_faults(int faulting) {
    return (int)syscall(SYS_arch_prctl, ARCH_SET_CPUID, faulting ? 0 : 1);
}

/* Leaf 7 bits hidden (Intel SDM vol. 2A, CPUID): every AVX-512 subset, AVX-VNNI, AMX. */
static void hide(uint32_t leaf, uint32_t sub, uint32_t *a, uint32_t *b, uint32_t *c, uint32_t *d) {
    if (leaf != 7) return;
    if (sub == 0) {
        /* EBX: F 16, DQ 17, IFMA 21, PF 26, ER 27, CD 28, BW 30, VL 31 */
        *b &= ~(BIT(16) | BIT(17) | BIT(21) | BIT(26) | BIT(27) | BIT(28) | BIT(30) | BIT(31));
        /* ECX: VBMI 1, VBMI2 6, VNNI 11, BITALG 12, VPOPCNTDQ 14 */
        *c &= ~(BIT(1) | BIT(6) | BIT(11) | BIT(12) | BIT(14));
        /* EDX: 4VNNIW 2, 4FMAPS 3, VP2INTERSECT 8, AMX-BF16 22, FP16 23, AMX-TILE 24, AMX-INT8 25 */
        *d &= ~(BIT(2) | BIT(3) | BIT(8) | BIT(22) | BIT(23) | BIT(24) | BIT(25));
    } else if (sub == 1) {
        /* EAX: AVX-VNNI 4, AVX512-BF16 5, AVX-IFMA 23; EDX: AVX-VNNI-INT8 4, AVX-NE-CONVERT 5,
           AVX-VNNI-INT16 10 */
        *a &= ~(BIT(4) | BIT(5) | BIT(23));
        *d &= ~(BIT(4) | BIT(5) | BIT(10));
    }
}

static void on_fault(int sig, siginfo_t *info, void *context) {
    (void)info;
    greg_t *reg = ((ucontext_t *)context)->uc_mcontext.gregs;
    const unsigned char *ip = (const unsigned char *)reg[REG_RIP];
    if (ip[0] != 0x0F || ip[1] != 0xA2) {  /* not `cpuid`: a real fault, fail as usual */
        signal(sig, SIG_DFL);
        return;
    }
    uint32_t leaf = (uint32_t)reg[REG_RAX], sub = (uint32_t)reg[REG_RCX], a, b, c, d;
    cpuid_faults(0);
    __asm__ volatile("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(leaf), "c"(sub));
    cpuid_faults(1);
    hide(leaf, sub, &a, &b, &c, &d);
    reg[REG_RAX] = a;
    reg[REG_RBX] = b;
    reg[REG_RCX] = c;
    reg[REG_RDX] = d;
    reg[REG_RIP] += 2;  /* past the two-byte instruction */
}

__attribute__((constructor)) static void install(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_fault;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    int hiding = sigaction(SIGSEGV, &sa, NULL) == 0 && cpuid_faults(1) == 0;
    if (!hiding)
        signal(SIGSEGV, SIG_DFL);  /* this CPU or kernel cannot fault on cpuid: leave the process as it was */
    setenv("EMBED_CPUID_HIDDEN", hiding ? "1" : "0", 1);  /* read by common/machine.py's cpu_info() */
}
