// Exception entry for vectors 0-31: each stub makes the stack look the same (an error code,
// zero when the CPU pushes none, and the vector), then trap_common saves the general registers
// into a TrapFrame (Kernel/Support/KernelSupport.h) and calls kernel_trap(frame) in Swift. Swift
// may change the frame (the #PF handler moves RIP to a probe's recovery label); iretq resumes.
//
// Stack at the call: CPU frame (40 bytes, 16-aligned by the CPU) + error code + vector + 15
// registers = 176 bytes, so RSP is 16-byte aligned as the SysV ABI wants.

        .text
        .code64

.macro TRAP_NOERR vector
        .balign 16
trap_stub_\vector:
        pushq $0
        pushq $\vector
        jmp trap_common
.endm

.macro TRAP_ERR vector
        .balign 16
trap_stub_\vector:
        pushq $\vector
        jmp trap_common
.endm

        TRAP_NOERR 0
        TRAP_NOERR 1
        TRAP_NOERR 2
        TRAP_NOERR 3
        TRAP_NOERR 4
        TRAP_NOERR 5
        TRAP_NOERR 6
        TRAP_NOERR 7
        TRAP_ERR 8
        TRAP_NOERR 9
        TRAP_ERR 10
        TRAP_ERR 11
        TRAP_ERR 12
        TRAP_ERR 13
        TRAP_ERR 14
        TRAP_NOERR 15
        TRAP_NOERR 16
        TRAP_ERR 17
        TRAP_NOERR 18
        TRAP_NOERR 19
        TRAP_NOERR 20
        TRAP_ERR 21
        TRAP_NOERR 22
        TRAP_NOERR 23
        TRAP_NOERR 24
        TRAP_NOERR 25
        TRAP_NOERR 26
        TRAP_NOERR 27
        TRAP_NOERR 28
        TRAP_ERR 29
        TRAP_ERR 30
        TRAP_NOERR 31

trap_common:
        pushq %rax
        pushq %rbx
        pushq %rcx
        pushq %rdx
        pushq %rsi
        pushq %rdi
        pushq %rbp
        pushq %r8
        pushq %r9
        pushq %r10
        pushq %r11
        pushq %r12
        pushq %r13
        pushq %r14
        pushq %r15
        movq %rsp, %rdi
        cld
        call kernel_trap
        popq %r15
        popq %r14
        popq %r13
        popq %r12
        popq %r11
        popq %r10
        popq %r9
        popq %r8
        popq %rbp
        popq %rdi
        popq %rsi
        popq %rdx
        popq %rcx
        popq %rbx
        popq %rax
        addq $16, %rsp                      // vector and error code
        iretq

        .section .rodata
        .balign 8
        .globl trap_stub_table
trap_stub_table:
        .irp v, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
        .quad trap_stub_\v
        .endr

// Fault-recoverable accesses (NetBSD's pcb_onfault / copyin idea): the single instruction at
// probe_*_access may fault; if the #PF handler refuses the fault it resumes at probe_recover,
// which returns 0 to the caller. Otherwise they return 1.
//
//   int probe_read64(unsigned long long address, unsigned long long *value)
//   int probe_write64(unsigned long long address, unsigned long long value)
        .text
        .globl probe_read64, probe_write64, probe_read_access, probe_write_access, probe_recover
probe_read64:
probe_read_access:
        movq (%rdi), %rax
        movq %rax, (%rsi)
        movl $1, %eax
        ret
probe_write64:
probe_write_access:
        movq %rsi, (%rdi)
        movl $1, %eax
        ret
probe_recover:
        xorl %eax, %eax
        ret
