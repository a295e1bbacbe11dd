// What the Swift code of the test kernel needs from the machine: port I/O, control registers,
// INVLPG, volatile memory accesses, descriptor-table loads, and the symbols of the assembly and
// the linker script. Everything is `static inline` with inline assembly, so Swift's Clang
// importer compiles it into the Swift module (with the same -mno-red-zone / -mno-sse flags):
// there is no separate C object. Only builtin C types are used (no libc headers on bare metal).
#ifndef KERNEL_SUPPORT_H
#define KERNEL_SUPPORT_H

typedef unsigned long long ks_u64;

/// The registers the trap entry (Kernel/Boot/traps.S) saves, in stack order.
typedef struct TrapFrame {
  ks_u64 r15, r14, r13, r12, r11, r10, r9, r8, rbp, rdi, rsi, rdx, rcx, rbx, rax;
  ks_u64 vector, errorCode;
  ks_u64 rip, cs, rflags, rsp, ss;
} TrapFrame;

static inline void ks_outb(unsigned short port, unsigned char value) {
  __asm__ volatile("outb %0, %1" : : "a"(value), "Nd"(port));
}
static inline void ks_outl(unsigned short port, unsigned int value) {
  __asm__ volatile("outl %0, %1" : : "a"(value), "Nd"(port));
}
static inline unsigned char ks_inb(unsigned short port) {
  unsigned char value;
  __asm__ volatile("inb %1, %0" : "=a"(value) : "Nd"(port));
  return value;
}

static inline ks_u64 ks_read_cr0(void) {
  ks_u64 v;
  __asm__ volatile("mov %%cr0, %0" : "=r"(v));
  return v;
}
static inline ks_u64 ks_read_cr2(void) {
  ks_u64 v;
  __asm__ volatile("mov %%cr2, %0" : "=r"(v));
  return v;
}
static inline ks_u64 ks_read_cr3(void) {
  ks_u64 v;
  __asm__ volatile("mov %%cr3, %0" : "=r"(v));
  return v;
}
/// Loads CR3: switches address space and flushes every non-global TLB entry.
static inline void ks_write_cr3(ks_u64 v) { __asm__ volatile("mov %0, %%cr3" : : "r"(v) : "memory"); }
static inline ks_u64 ks_read_cr4(void) {
  ks_u64 v;
  __asm__ volatile("mov %%cr4, %0" : "=r"(v));
  return v;
}
/// Invalidates the TLB entries (and paging-structure caches) for the page containing `address`.
static inline void ks_invlpg(ks_u64 address) { __asm__ volatile("invlpg (%0)" : : "r"(address) : "memory"); }

static inline ks_u64 ks_rdtsc(void) {
  unsigned int lo, hi;
  __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
  return ((ks_u64)hi << 32) | lo;
}
static inline void ks_cpuid(unsigned int leaf, unsigned int *a, unsigned int *b, unsigned int *c, unsigned int *d) {
  __asm__ volatile("cpuid" : "=a"(*a), "=b"(*b), "=c"(*c), "=d"(*d) : "a"(leaf), "c"(0));
}
__attribute__((noreturn)) static inline void ks_halt_forever(void) {
  for (;;) __asm__ volatile("cli; hlt");
}

/// A load and a store the compiler must perform exactly once, in order: the test accesses whose
/// effect on the page tables (A/D bits, faults) the checks observe. Each is also a full compiler
/// barrier ("memory" clobber): the access may fault, and the #PF handler then changes kernel
/// memory (the pager's counters, the page tables) behind the compiler's back. A plain volatile
/// access is not enough: the compiler may move ordinary loads across it (it did: a fault counter
/// read after the access was loaded before it).
static inline ks_u64 ks_load64(ks_u64 address) {
  ks_u64 value;
  __asm__ volatile("movq (%1), %0" : "=r"(value) : "r"(address) : "memory");
  return value;
}
static inline void ks_store64(ks_u64 address, ks_u64 value) {
  __asm__ volatile("movq %1, (%0)" : : "r"(address), "r"(value) : "memory");
}
/// A compiler barrier.
static inline void ks_barrier(void) { __asm__ volatile("" : : : "memory"); }

struct __attribute__((packed)) ks_table_pointer {
  unsigned short limit;
  ks_u64 base;
};
/// LIDT with the 10-byte operand of 64-bit mode.
static inline void ks_lidt(ks_u64 base, unsigned short limit) {
  struct ks_table_pointer p = {limit, base};
  __asm__ volatile("lidt %0" : : "m"(p));
}
/// LTR: loads the task register (the TSS descriptor must be in the GDT, type "available").
static inline void ks_ltr(unsigned short selector) { __asm__ volatile("ltr %0" : : "r"(selector)); }
static inline unsigned short ks_read_cs(void) {
  unsigned short v;
  __asm__ volatile("mov %%cs, %0" : "=r"(v));
  return v;
}

// Symbols of the linker script and the assembly, as addresses.
#define KS_SYMBOL_ADDRESS(fn, sym)                                                                                     \
  static inline ks_u64 fn(void) {                                                                                      \
    extern char sym[];                                                                                                 \
    return (ks_u64)sym;                                                                                                \
  }
KS_SYMBOL_ADDRESS(ks_kernel_start, _kernel_start)
KS_SYMBOL_ADDRESS(ks_text_end, _text_end)
KS_SYMBOL_ADDRESS(ks_rodata_end, _rodata_end)
KS_SYMBOL_ADDRESS(ks_kernel_end, _kernel_end)
KS_SYMBOL_ADDRESS(ks_gdt, gdt)
KS_SYMBOL_ADDRESS(ks_boot_stack_bottom, boot_stack_bottom)
KS_SYMBOL_ADDRESS(ks_boot_stack_top, boot_stack_top)
KS_SYMBOL_ADDRESS(ks_double_fault_stack_top, double_fault_stack_top)
KS_SYMBOL_ADDRESS(ks_kernel_heap, kernel_heap)
KS_SYMBOL_ADDRESS(ks_kernel_heap_end, kernel_heap_end)
KS_SYMBOL_ADDRESS(ks_probe_read_access, probe_read_access)
KS_SYMBOL_ADDRESS(ks_probe_write_access, probe_write_access)
KS_SYMBOL_ADDRESS(ks_probe_recover, probe_recover)

/// The address of the entry stub of exception `vector` (0-31).
static inline ks_u64 ks_trap_stub(int vector) {
  extern const ks_u64 trap_stub_table[];
  return trap_stub_table[vector];
}

/// Fault-recoverable accesses (Kernel/Boot/traps.S): 1 when the access completed, 0 when it
/// faulted and the #PF handler refused the fault.
int probe_read64(ks_u64 address, ks_u64 *value);
int probe_write64(ks_u64 address, ks_u64 value);

#endif
