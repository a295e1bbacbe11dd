// CKVM: the Linux KVM API as Swift sees it (host-only; used by PmapKVM).
//
// Swift imports the structures of <linux/kvm.h> but not its ioctl request macros (function-like
// _IO/_IOW macros), nor variadic ioctl(2) with a pointer argument in a convenient form. This
// header exposes the request numbers as functions and one non-variadic ioctl wrapper.
#ifndef CKVM_H
#define CKVM_H

#include <linux/kvm.h>

/// ioctl(2) with a pointer (or NULL) argument; returns its result (-1 with errno on failure).
int ckvm_ioctl(int fd, unsigned long request, void *argument);
/// ioctl(2) with an integer argument.
int ckvm_ioctl_value(int fd, unsigned long request, unsigned long argument);
/// errno of the calling thread.
int ckvm_errno(void);

unsigned long ckvm_get_api_version(void);
unsigned long ckvm_create_vm(void);
unsigned long ckvm_get_vcpu_mmap_size(void);
unsigned long ckvm_get_supported_cpuid(void);
unsigned long ckvm_create_vcpu(void);
unsigned long ckvm_set_user_memory_region(void);
unsigned long ckvm_set_tss_addr(void);
unsigned long ckvm_run(void);
unsigned long ckvm_get_regs(void);
unsigned long ckvm_set_regs(void);
unsigned long ckvm_get_sregs(void);
unsigned long ckvm_set_sregs(void);
unsigned long ckvm_set_cpuid2(void);

/// Reads one MSR of a vCPU with KVM_GET_MSRS; returns 1 when read, 0 when KVM does not know it,
/// -1 with errno on failure.
int ckvm_get_msr(int vcpu, unsigned int index, unsigned long long *value);

/// The I/O exit of a kvm_run area: port, size, direction, and the first data byte's offset.
struct ckvm_io_exit {
  unsigned char direction;
  unsigned char size;
  unsigned short port;
  unsigned int count;
  unsigned long long data_offset;
};
/// Reads the KVM_EXIT_IO details of `run`.
struct ckvm_io_exit ckvm_run_io(const struct kvm_run *run);
/// KVM_EXIT_MMIO's guest-physical address (and, through `is_write`, its direction).
unsigned long long ckvm_run_mmio_address(const struct kvm_run *run, int *is_write);
/// KVM_EXIT_INTERNAL_ERROR's suberror.
unsigned int ckvm_run_internal_suberror(const struct kvm_run *run);
/// KVM_EXIT_FAIL_ENTRY's hardware reason.
unsigned long long ckvm_run_fail_entry_reason(const struct kvm_run *run);

#endif
