/*
 * odp-nic: placeholder, replaced shortly by the real model.
 */
#include "qemu/osdep.h"
#include "hw/pci/pci_device.h"
#include "qom/object.h"

#define TYPE_ODP_NIC "odp-nic"

static void odp_nic_class_init(ObjectClass *klass, void *data)
{
    PCIDeviceClass *k = PCI_DEVICE_CLASS(klass);

    k->vendor_id = 0x1234;
    k->device_id = 0x0d1c;
    k->class_id = 0x0207;
}

static const TypeInfo odp_nic_info = {
    .name = TYPE_ODP_NIC,
    .parent = TYPE_PCI_DEVICE,
    .instance_size = sizeof(PCIDevice),
    .class_init = odp_nic_class_init,
    .interfaces = (InterfaceInfo[]) {
        { INTERFACE_PCIE_DEVICE },
        { }
    },
};

static void odp_nic_register_types(void)
{
    type_register_static(&odp_nic_info);
}

type_init(odp_nic_register_types)
