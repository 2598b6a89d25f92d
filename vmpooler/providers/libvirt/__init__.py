"""The libvirt provider: pools of linked-clone QEMU/KVM domains on any libvirt hypervisor."""
