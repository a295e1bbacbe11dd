// The C library functions the Swift code of the kernel (library modules included) calls, written
// in assembly so that no compiler can turn their loops back into calls to themselves. The rest of
// the runtime (the heap, putchar, arc4random_buf) is Swift: Kernel/Sources/Runtime.swift.

        .text
        .code64

// int posix_memalign(void **result, size_t alignment, size_t size) and void free(void *):
// Swift will not define these runtime names itself (@_cdecl("free") is rejected), so the names
// live here and jump to the Swift implementations.
        .globl posix_memalign
posix_memalign:
        jmp kernel_posix_memalign
        .globl free
free:
        jmp kernel_free

// void *memset(void *dst, int byte, size_t n)
        .globl memset
memset:
        movq %rdi, %r9
        movzbl %sil, %eax
        movq %rdx, %rcx
        rep stosb
        movq %r9, %rax
        ret

// void *memcpy(void *dst, const void *src, size_t n)
        .globl memcpy
memcpy:
        movq %rdi, %rax
        movq %rdx, %rcx
        rep movsb
        ret

// void *memmove(void *dst, const void *src, size_t n): copies backwards when dst overlaps the
// end of src.
        .globl memmove
memmove:
        movq %rdi, %rax
        movq %rdx, %rcx
        cmpq %rsi, %rdi
        jbe 1f                              // dst <= src: forwards is safe
        leaq (%rsi, %rdx), %r8
        cmpq %r8, %rdi
        jae 1f                              // dst >= src + n: no overlap
        leaq -1(%rdi, %rdx), %rdi
        leaq -1(%rsi, %rdx), %rsi
        std
        rep movsb
        cld
        ret
1:      rep movsb
        ret

// int memcmp(const void *a, const void *b, size_t n)
        .globl memcmp
memcmp:
        xorl %eax, %eax
        testq %rdx, %rdx
        jz 2f
1:      movzbl (%rdi), %eax
        movzbl (%rsi), %ecx
        subl %ecx, %eax
        jnz 2f
        incq %rdi
        incq %rsi
        decq %rdx
        jnz 1b
2:      ret
