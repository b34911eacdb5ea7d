# Appended to the bootloader element's command line (its environment file runs first):
# classic interface names, so the spec's eth0 is the first NIC.
export DIB_LVS_KERNEL_CMDLINE=${DIB_LVS_KERNEL_CMDLINE:-"net.ifnames=0"}
export DIB_BOOTLOADER_DEFAULT_CMDLINE="${DIB_BOOTLOADER_DEFAULT_CMDLINE:-nofb nomodeset gfxpayload=text} ${DIB_LVS_KERNEL_CMDLINE}"
