// Entry of the test kernel: a multiboot (v1) header for QEMU's -kernel loader, 32-bit protected
// mode -> long mode with static bootstrap page tables, then kernel_main(magic, info) in Swift.
//
// The bootstrap tables map the first 1 GiB twice with 2 MiB pages: identity (where the kernel
// is linked and runs) and at 0xffff_8000_0000_0000, the direct map the Swift code hands to
// the library. Swift replaces them with an address space built by NativePmap.

#define MULTIBOOT_MAGIC 0x1BADB002
#define MULTIBOOT_FLAGS 0x00000003          /* bit 0: page-align modules, bit 1: memory info */
#define KERNEL_CODE 0x08
#define KERNEL_DATA 0x10

        .section .multiboot, "a"
        .balign 4
        .long MULTIBOOT_MAGIC
        .long MULTIBOOT_FLAGS
        .long -(MULTIBOOT_MAGIC + MULTIBOOT_FLAGS)

        .section .text.boot, "ax"
        .code32
        .globl _start
_start:
        // The loader leaves EAX = 0x2BADB002 and EBX = the multiboot information's address.
        cli
        cld
        movl $boot_stack_top, %esp
        movl %eax, %edi                     // first argument of kernel_main (zero-extended)
        movl %ebx, %esi                     // second argument

        movl %cr4, %eax
        orl $(1 << 5), %eax                 // CR4.PAE
        movl %eax, %cr4
        movl $boot_pml4, %eax
        movl %eax, %cr3
        movl $0xC0000080, %ecx              // IA32_EFER
        rdmsr
        orl $((1 << 8) | (1 << 11)), %eax   // LME, NXE (the library sets XD in non-executable leaves)
        wrmsr
        movl %cr0, %eax
        // PG | WP | PE: WP makes read-only pages read-only for ring 0 too (the write-protect checks).
        orl $((1 << 31) | (1 << 16) | 1), %eax
        movl %eax, %cr0

        lgdt gdt_pointer
        ljmp $KERNEL_CODE, $long_mode

        .code64
long_mode:
        movw $KERNEL_DATA, %ax
        movw %ax, %ds
        movw %ax, %es
        movw %ax, %ss
        xorw %ax, %ax
        movw %ax, %fs
        movw %ax, %gs
        movabsq $boot_stack_top, %rsp
        xorl %ebp, %ebp
        call kernel_main
1:      cli
        hlt
        jmp 1b

        .data
        // GDT: null, 64-bit code, data, and a 16-byte TSS descriptor that Swift fills in
        // (its base is only known at run time in the split form the descriptor needs).
        .balign 16
        .globl gdt
gdt:
        .quad 0
        .quad 0x00AF9A000000FFFF            // 0x08: code, long mode (L), DPL 0
        .quad 0x00CF92000000FFFF            // 0x10: data
        .quad 0, 0                          // 0x18: TSS
gdt_end:
        .balign 4
gdt_pointer:
        .word gdt_end - gdt - 1
        .long gdt

        // Bootstrap page tables (static: every entry is a link-time constant).
        .balign 4096
boot_pml4:
        .quad boot_pdpt + 3                 // [0]: identity
        .fill 255, 8, 0
        .quad boot_pdpt + 3                 // [256]: 0xffff_8000_0000_0000, the direct map
        .fill 255, 8, 0
boot_pdpt:
        .quad boot_pd + 3
        .fill 511, 8, 0
boot_pd:
        .set i, 0
        .rept 512
        .quad (i << 21) | 0x83              // present, writable, 2 MiB
        .set i, i + 1
        .endr

        .bss
        .balign 16
        .globl boot_stack_bottom
boot_stack_bottom:
        .space 64 * 1024
        .globl boot_stack_top
boot_stack_top:

        // The double-fault stack (IST1 in the TSS): a #DF gets a known-good stack.
        .balign 16
        .space 16 * 1024
        .globl double_fault_stack_top
double_fault_stack_top:

        // The kernel heap under posix_memalign / free (Kernel/Sources/KernelHeap.swift).
        .balign 4096
        .globl kernel_heap
kernel_heap:
        .space 4 * 1024 * 1024
        .globl kernel_heap_end
kernel_heap_end:
