#include "CKVM.h"
#include <errno.h>
#include <string.h>
#include <sys/ioctl.h>

int ckvm_ioctl(int fd, unsigned long request, void *argument) { return ioctl(fd, request, argument); }
int ckvm_ioctl_value(int fd, unsigned long request, unsigned long argument) { return ioctl(fd, request, argument); }
int ckvm_errno(void) { return errno; }

unsigned long ckvm_get_api_version(void) { return KVM_GET_API_VERSION; }
unsigned long ckvm_create_vm(void) { return KVM_CREATE_VM; }
unsigned long ckvm_get_vcpu_mmap_size(void) { return KVM_GET_VCPU_MMAP_SIZE; }
unsigned long ckvm_get_supported_cpuid(void) { return KVM_GET_SUPPORTED_CPUID; }
unsigned long ckvm_create_vcpu(void) { return KVM_CREATE_VCPU; }
unsigned long ckvm_set_user_memory_region(void) { return KVM_SET_USER_MEMORY_REGION; }
unsigned long ckvm_set_tss_addr(void) { return KVM_SET_TSS_ADDR; }
unsigned long ckvm_run(void) { return KVM_RUN; }
unsigned long ckvm_get_regs(void) { return KVM_GET_REGS; }
unsigned long ckvm_set_regs(void) { return KVM_SET_REGS; }
unsigned long ckvm_get_sregs(void) { return KVM_GET_SREGS; }
unsigned long ckvm_set_sregs(void) { return KVM_SET_SREGS; }
unsigned long ckvm_set_cpuid2(void) { return KVM_SET_CPUID2; }

struct ckvm_io_exit ckvm_run_io(const struct kvm_run *run) {
  struct ckvm_io_exit io = {run->io.direction, run->io.size, run->io.port, run->io.count, run->io.data_offset};
  return io;
}
unsigned int ckvm_run_internal_suberror(const struct kvm_run *run) { return run->internal.suberror; }
unsigned long long ckvm_run_fail_entry_reason(const struct kvm_run *run) {
  return run->fail_entry.hardware_entry_failure_reason;
}
unsigned long long ckvm_run_mmio_address(const struct kvm_run *run, int *is_write) {
  *is_write = run->mmio.is_write;
  return run->mmio.phys_addr;
}

int ckvm_get_msr(int vcpu, unsigned int index, unsigned long long *value) {
  unsigned long long buffer[(sizeof(struct kvm_msrs) + sizeof(struct kvm_msr_entry)) / 8 + 1];
  memset(buffer, 0, sizeof buffer);
  struct kvm_msrs *request = (struct kvm_msrs *)buffer;
  request->nmsrs = 1;
  request->entries[0].index = index;
  int n = ioctl(vcpu, KVM_GET_MSRS, request);
  if (n == 1) *value = request->entries[0].data;
  return n;
}
