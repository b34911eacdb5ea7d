#!/bin/bash
# lvs-builder set-up for a fresh Debian 12 (or 13) machine.
#
#   ./setup.sh                 install what the project needs, then build the role packages
#                              and the director image of the built-in reference cluster into out/
#   ./setup.sh test [ARGS...]  install what the project needs, then run the tests
#                              (ARGS go to pytest, e.g. -m "not slow" for the fast tier)
#
# Installs Debian packages with apt-get (through sudo unless root) and the Python package with
# its dependencies into .venv/. Safe to run again: it installs only what is missing.
set -eu -o pipefail
cd "$(dirname "$0")"

APT_PACKAGES=(
    python3 python3-venv      # the builder
    dpkg-dev lintian          # role packages and their verdict
    mmdebstrap debootstrap    # chroots for install tests (and images)
    shellcheck                # linting the shell we ship
    util-linux                # unshare, for the namespaced test chroots
    qemu-utils kpartx fdisk sudo squashfs-tools  # images (diskimage-builder's host tools)
    dosfstools gdisk mtools   # images: a hybrid (UEFI + BIOS) image's GPT (sgdisk) and EFI system partition (mtools: where the kernel has no vfat)
    ovmf                      # booting the hybrid images under UEFI (Secure Boot on) in tests and the lab
    qemu-system-x86           # booting images in tests and the lab
    iproute2                  # the lab's network namespace, bridge and taps
    pxelinux syslinux-common  # build-pxe: the network boot loader
    dnsmasq-base ipxe-qemu    # pxe serve (DHCP + TFTP; no system service); QEMU's PXE ROM
    equivs                    # bench/: the peer build-deb is measured against
    gpg gpgv                  # build-repo: signing the repository, checking it
    piuparts                  # the slow tier: Debian's install/remove/purge checker on the role packages
    debhelper dh-python       # debian/: lvs-builder's own package (dpkg-buildpackage -b)
    python3-click python3-debian python3-jinja2 python3-yaml  # what that package runs on
)

sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then
    sudo_cmd=(sudo)
fi

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
    if [ "$status" != "install ok installed" ]; then
        missing+=("$pkg")
    fi
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "setup: installing ${missing[*]}"
    "${sudo_cmd[@]}" apt-get update -q
    "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -q -y --no-install-recommends "${missing[@]}"
fi

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
stamp=.venv/.installed-$(cat setup.cfg pyproject.toml | sha256sum | cut -c1-16)
if [ ! -e "$stamp" ]; then
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e '.[test]'
    rm -f .venv/.installed-*
    touch "$stamp"
fi

case "${1:-build}" in
    build)
        # The built-in cluster's heartbeat key, made once (builds never make one): the demo's own act.
        .venv/bin/lvs-builder keygen --if-missing
        .venv/bin/build-deb director realserver --out out --lint
        .venv/bin/build-image director --out out
        echo "setup: done. Put the commands on your PATH with: . .venv/bin/activate"
        ;;
    test)
        shift
        exec .venv/bin/python -m pytest "$@"
        ;;
    *)
        echo "usage: ./setup.sh [build | test [PYTEST ARGS]]" >&2
        exit 2
        ;;
esac
