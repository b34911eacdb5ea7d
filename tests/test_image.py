"""Role images built with diskimage-builder, booted under QEMU (software emulation), checked
from inside the guest through qemu-guest-agent. The VMs' NICs sit on an empty QEMU hub: no
packet leaves them. Every VM is stopped by PID, also when a check fails."""

from __future__ import annotations

import contextlib
import re
import subprocess
import tarfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from builder import image, spec
from builder.errors import ToolError
from builder.firmware import VmFirmware
from builder.model import Role
from builder.qemu import Vm

from .conftest import BuiltImages, printer

pytestmark = pytest.mark.slow

BOOT_TIMEOUT = 600  # software emulation on a loaded 2-core machine


@pytest.fixture
def images(built_images: BuiltImages) -> Path:
    return built_images.out


# The three machines the boot tests look at, started together (each boots alone in ~90 s under
# emulation; three at once on two cores take less than three in a row), each powered off once
# its test is done, each through its firmware and the image's boot loader: name -> (role, MAC,
# firmware). The images are hybrid (build-image's default): the two nodes boot them on UEFI with
# Secure Boot on (OVMF with Microsoft's keys, as servers ship), the stranger on BIOS (SeaBIOS).
MACHINES = {
    "director": ("director", "52:54:00:00:01:04", VmFirmware.UEFI_SECURE),    # loadb2's MAC
    "realserver": ("realserver", "52:54:00:00:01:02", VmFirmware.UEFI_SECURE),  # webserver2's
    "stranger": ("director", "52:54:00:99:99:99", VmFirmware.BIOS),           # in no node of the spec
}
# Inside a guest: what the firmware says of Secure Boot, and which loader booted it.
SECURE_BOOT_FACTS = r"""
    echo sb=$(mokutil --sb-state 2>&1)
    echo efi=$(test -d /sys/firmware/efi && echo uefi || echo bios)
    echo lockdown=$(cat /sys/kernel/security/lockdown 2>/dev/null | grep -o '\[[a-z]*\]')
"""


@dataclass
class Booted:
    vms: dict[str, Vm]
    started: float
    show: Callable[[str], None]

    @contextlib.contextmanager
    def up(self, key: str, settle: bool = True) -> Iterator[Vm]:
        """The machine, once its guest agent answers (and, with settle, systemd is done);
        powered off when the test is done with it, so the machines still booting get its CPU
        (the tests run quickest first: the stranger, the real server, the director)."""
        vm = self.vms[key]
        try:
            vm.wait_agent(BOOT_TIMEOUT)
            if settle:
                state = vm.sh("systemctl is-system-running --wait", timeout=BOOT_TIMEOUT).stdout.strip()
                self.show(f"\n{vm.name} from its disk image: {state} after {time.monotonic() - self.started:.0f} s "
                          "under emulation (booted beside the others)")
            yield vm
        finally:
            vm.stop()


@pytest.fixture(scope="module")
def booted(built_images: BuiltImages, tmp_path_factory: pytest.TempPathFactory,
           pytestconfig: pytest.Config) -> Iterator[Booted]:
    show = printer(pytestconfig)  # conftest's `show`, for a fixture that outlives one test
    images = built_images.out
    work = tmp_path_factory.mktemp("boots")
    vms = {}
    for key, (role, mac, firmware) in MACHINES.items():
        name = f"lvs-{role}-trixie"
        vms[key] = Vm(name=f"{key}-{mac.replace(':', '')}", image=images / f"{name}.qcow2", workdir=work, mac=mac,
                      firmware=firmware)
    started = time.monotonic()
    try:
        for vm in vms.values():
            vm.start()
        yield Booted(vms, started, show)
    finally:
        for vm in vms.values():
            vm.stop()


def facts(vm: Vm, script: str) -> dict[str, str]:
    r = vm.sh(script)
    assert r.exitcode == 0, r.stderr
    return dict(line.split("=", 1) for line in r.stdout.splitlines() if "=" in line)


def test_a_machine_with_no_identity_stays_out(booted: Booted) -> None:
    # Not settled: with no address, systemd-networkd-wait-online would hold the boot for 2 min.
    with booted.up("stranger", settle=False) as vm:
        console = vm.wait_console("this machine stays out of the reference cluster", BOOT_TIMEOUT)
        assert "no lvs.node= on the kernel command line, no MAC of this machine (52:54:00:99:99:99 ) in the spec" \
            in console
        assert "this machine stays out of the reference cluster" in console
        f = facts(vm, """
            echo heartbeat=$(systemctl is-active heartbeat.service || true)
            echo address=$(ip -4 -o address show dev eth0 | awk '{print $4}')
            echo efi=$(test -d /sys/firmware/efi && echo uefi || echo bios)
        """)
        assert f["heartbeat"] == "inactive"
        assert f["address"] == ""
        assert f["efi"] == "bios"  # the hybrid image's other path: SeaBIOS, GRUB in its BIOS boot partition


def test_realserver_image_boots_on_uefi_with_secure_boot_as_the_node_its_mac_names(booted: Booted) -> None:
    with booted.up("realserver") as vm:
        f = facts(vm, SECURE_BOOT_FACTS + r"""
            echo hostname=$(hostname)
            echo address=$(ip -4 -o address show dev eth0 | awk '{print $4}')
            echo vip=$(ip -4 -o address show dev lo | awk '{print $4}' | grep -x 192.168.1.105/32)
            echo arp=$(sysctl -n net.ipv4.conf.all.arp_ignore net.ipv4.conf.all.arp_announce \
                       net.ipv4.conf.eth0.arp_ignore net.ipv4.conf.eth0.arp_announce | tr '\n' ' ')
            get() { bash -c "exec 3<>/dev/tcp/127.0.0.1/80
                             printf 'GET $2 HTTP/1.0\r\nHost: $1\r\n\r\n' >&3; cat <&3"; }
            echo check=$(get 192.168.1.102 /ldirector.html | tail -n 1)    # as ldirectord asks
            echo index=$(get 192.168.1.105 / | grep -o 'real server [a-z0-9]*')   # as a client of the VIP
            echo other=$(get www.example.org / | grep -c 'real server')    # another name: apache2's own site
        """)
        assert (f["sb"], f["efi"], f["lockdown"]) == ("SecureBoot enabled", "uefi", "[integrity]"), f
        assert f["hostname"] == "webserver2"
        assert f["address"] == "192.168.1.102/24"
        assert f["vip"] == "192.168.1.105/32"
        assert f["arp"].split() == ["1", "2", "1", "2"]
        assert f["check"] == "Test Page"
        assert f["index"] == "real server webserver2"
        assert f["other"] == "0"


def test_director_image_boots_on_uefi_with_secure_boot_as_the_node_its_mac_names(booted: Booted) -> None:
    with booted.up("director") as vm:
        f = facts(vm, SECURE_BOOT_FACTS + r"""
            echo hostname=$(hostname)
            echo resolves=$(getent ahostsv4 "$(hostname)" | awk '{print $1}' | sort -u | tr '\n' ' ')
            echo address=$(ip -4 -o address show dev eth0 | awk '{print $4}')
            echo ip_vs=$(awk '$1 ~ /^ip_vs/ {print $1}' /proc/modules | sort | tr '\n' ' ')
            echo ip_forward=$(cat /proc/sys/net/ipv4/ip_forward)
            echo ipvs_sysctl=$(cd /proc/sys/net/ipv4/vs && cat expire_nodest_conn expire_quiescent_template)
            echo neigh=$(cd /proc/sys/net/ipv4/neigh/eth0 && cat base_reachable_time_ms delay_first_probe_time \
                         retrans_time_ms)
            echo heartbeat=$(systemctl is-enabled heartbeat.service)
            echo ldirectord=$(systemctl is-enabled ldirectord.service || true)
            echo authkeys=$(stat -c '%a %U:%G' /etc/ha.d/authkeys)
            echo keyowner=$(dpkg-query -S /etc/ha.d/authkeys | cut -d: -f1)
            echo keydebs=$(find / -xdev -name 'lvs-cluster-key*.deb' | wc -l)
            echo hafiles=$(cd /etc/ha.d && ls ha.cf haresources ldirectord.cf resource.d/LVSSyncDaemonSwap | wc -l)
            echo harc=$(readlink /etc/ha.d/harc)
            echo diverted=$(cd /etc/ha.d && ls ldirectord.cf.lvs-director-orig harc.lvs-director-orig | wc -l)
            echo "stop=$(systemctl show -p ExecStop --value heartbeat.service | grep -o 'argv\[\]=[^;]*' \
                         | sed 's/^argv\[\]=//; s/ *$//' | paste -sd,)"
            echo dpkg_new=$(find /etc -name '*.dpkg-new' | tr '\n' ' ')
        """)
        # Microsoft-signed shim, Debian-signed GRUB and kernel: the firmware says Secure Boot is
        # on, and the kernel locked itself down for it.
        assert (f["sb"], f["efi"], f["lockdown"]) == ("SecureBoot enabled", "uefi", "[integrity]"), f
        assert f["hostname"] == "loadb2"
        assert "192.168.1.104" in f["resolves"].split()  # sudo and heartbeat want their own name to resolve
        assert f["address"] == "192.168.1.104/24"
        assert set(f["ip_vs"].split()) >= {"ip_vs", "ip_vs_rr", "ip_vs_wlc", "ip_vs_ftp", "ip_vs_sh"}
        assert f["ip_forward"] == "1"
        assert f["ipvs_sysctl"] == "1 1"  # the IPVS modules were loaded before systemd-sysctl applied ours
        assert f["neigh"] == "1000 1 500"  # eth0's, from the same drop-in
        assert (f["heartbeat"], f["ldirectord"]) == ("enabled", "enabled")
        assert f["authkeys"] == "600 root:root"
        # the keys are lvs-cluster-key's, installed with the image; no copy of the package stays in it
        assert (f["keyowner"], f["keydebs"]) == ("lvs-cluster-key", "0")
        assert f["hafiles"] == "4"
        # heartbeat's and ldirectord's diverted conffiles are where the diversions say (installed in
        # one apt transaction, as an operator does: Pre-Depends configure them before our preinst)
        assert (f["harc"], f["diverted"], f["dpkg_new"]) == ("harc.lvs-director", "2", "")
        # heartbeat's stop hands the VIPs over first (the drop-in puts ours before heartbeat's own)
        assert f["stop"] == ("/usr/libexec/lvs-director/heartbeat-stop before,"
                             "/usr/libexec/heartbeat/heartbeat -k"), f["stop"]
        assert "lvs-identity: this machine is loadb2, director of the reference cluster (MAC 52:54:00:00:01:04)" \
            in vm.console_text()

        # Alone, the director takes over after initdead: lvs-director's harc claims the VIP as soon
        # as heartbeat says loadb1 is dead, then heartbeat takes the group (LVSSyncDaemonSwap master,
        # the VIP found held); ldirectord has run since boot. The check is read once the sync daemon
        # is master (a few seconds after the claim under emulation), for at most a minute.
        deadline = time.monotonic() + BOOT_TIMEOUT
        while "192.168.1.105/24" not in vm.sh("ip -4 -o address show dev eth0").stdout:
            assert time.monotonic() < deadline, "heartbeat never took the VIP"
            time.sleep(5)
        # The director package's check command, alone in the cluster: it is the active director
        # and says what is missing: its peer, and real servers to send to (the fallback serves).
        sync_master = re.compile(r"^LVSSyncDaemonSwap master status\s+master running\s+"
                                 r"master running: master sync daemon \(mcast=eth0, syncid=0", re.M)
        deadline = time.monotonic() + 60
        while not sync_master.search((r := vm.sh("lvs-cluster-check; echo exit=$?")).stdout) \
                and time.monotonic() < deadline:
            time.sleep(2)
        table = r.stdout.splitlines()
        assert table[0] == "loadb2: active director"
        assert table[-1] == "exit=1", r.stdout
        assert re.search(r"^peer loadb1\s+active\s+dead\s+FAIL$", r.stdout, re.M), r.stdout
        assert re.search(r"^VIP 192.168.1.105/24 on eth0\s+present\s+present\s+ok$", r.stdout, re.M), r.stdout
        assert re.search(r"^ipvsadm: -> 192.168.1.101:80 Route\s+Route, weight > 0\s+Route, weight 0\s+FAIL$",
                         r.stdout, re.M), r.stdout
        assert re.search(r"^ipvsadm: fallback 127.0.0.1:80\s+listed \(no real server serves\)\s+listed, weight 1\s+ok$",
                         r.stdout, re.M), r.stdout
        assert sync_master.search(r.stdout), r.stdout
        assert re.search(r"^heartbeat's ha.cf, haresources\s+in use\s+in use\s+ok$", r.stdout, re.M), r.stdout
        assert table[-2] == "3 of 11 checks FAILED"

        swap = "/etc/ha.d/resource.d/LVSSyncDaemonSwap"
        r = vm.sh(f"{swap} master status; {swap} master stop; {swap} master status; {swap} backup status; "
                  "ldirectord ldirectord.cf status 2>&1; ipvsadm -L -n")
        lines = r.stdout.splitlines()
        assert lines[0].startswith("master running: master sync daemon (mcast=eth0, syncid=0"), r.stdout
        assert lines[1] == "master stopped"
        assert lines[2].startswith("backup running: backup sync daemon (mcast=eth0, syncid=0"), r.stdout
        assert re.search(r"ldirectord for /etc/ha.d/ldirectord.cf is running with pid: \d+", lines[3])
        assert re.search(r"TCP\s+192\.168\.1\.105:80 rr", r.stdout)
        for real in ("192.168.1.101:80", "192.168.1.102:80", "127.0.0.1:80"):  # no web servers here: quiesced
            assert re.search(rf"->\s+{re.escape(real)}\s+Route", r.stdout), r.stdout

        # An upgrade's ha.cf, put in place as dpkg does, while heartbeat runs what it read at start.
        r = vm.sh("cd /etc/ha.d && cp -p ha.cf ha.cf.dpkg-new && mv ha.cf.dpkg-new ha.cf && lvs-cluster-check")
        assert re.search(r"^heartbeat's ha.cf, haresources\s+in use\s+configuration pending: hand over and restart "
                         r"\(ha.cf changed since heartbeat started\)\s+FAIL$", r.stdout, re.M), r.stdout

        # Removed (not purged), the director leaves the cluster for good: heartbeat stopped and
        # disabled (the ha.cf that stays would have it rejoin at the next boot), the VIP given up,
        # no sync daemon, ldirectord back on its own configuration with none of our services, our
        # fallback page gone from apache2; heartbeat is not started again by anything.
        r = vm.sh("DEBIAN_FRONTEND=noninteractive apt-get remove -y -q lvs-director >/tmp/remove.log 2>&1; "
                  "echo rc=$?; echo state=$(dpkg-query -W -f '${Status}' lvs-director); "
                  "echo heartbeat=$(systemctl is-active heartbeat.service),$(systemctl is-enabled heartbeat.service); "
                  "echo mark=$(cat /var/lib/lvs-director/heartbeat.disabled); "
                  "echo vip=$(ip -4 -o address show dev eth0 to 192.168.1.105/32 | wc -l); "
                  "echo services=$(ipvsadm -L -n | grep -c '^TCP'); echo daemons=$(ipvsadm -L --daemon | wc -l); "
                  "echo ldirectord=$(readlink -f /etc/ha.d/ldirectord.cf); "
                  "echo conf=$(ls /etc/apache2/conf-enabled | grep -c lvs); echo hacf=$(ls /etc/ha.d/ha.cf)",
                  timeout=600)
        f = dict(line.split("=", 1) for line in r.stdout.splitlines() if "=" in line)
        assert (f["rc"], f["state"]) == ("0", "deinstall ok config-files"), vm.sh("cat /tmp/remove.log").stdout
        assert f["heartbeat"] == "inactive,disabled" and f["hacf"] == "/etc/ha.d/ha.cf", f
        assert f["mark"] == "lvs-director disabled heartbeat on remove: a reinstall enables it"
        assert (f["vip"], f["services"], f["daemons"]) == ("0", "0", "0"), f
        assert f["ldirectord"] == "/etc/ha.d/ldirectord.cf" and f["conf"] == "0", f


def test_the_director_image_is_its_owners_only(images: Path) -> None:
    """It holds the cluster key; the real server's image does not."""
    assert (images / "lvs-director-trixie.qcow2").stat().st_mode & 0o777 == 0o600
    assert (images / "lvs-realserver-trixie.qcow2").stat().st_mode & 0o777 == 0o644


def test_a_failed_build_names_its_step_and_leaves_no_image(images: Path, tmp_path: Path) -> None:
    cluster, _ = spec.load(None)
    out = tmp_path / "out"
    wrong_deb = images / "lvs-realserver_1.0_all.deb"  # the director element refuses it
    with pytest.raises(ToolError) as err:
        image.build(cluster, Role.DIRECTOR, wrong_deb, out, image.ImageFormat.QCOW2,
                    extra=[images / "lvs-cluster-key_1_all.deb"])
    assert err.value.cmd.startswith("disk-image-create (failed in extra-data.d/50-lvs-director-deb; full log: ")
    assert "is not an lvs-director package" in err.value.tail
    assert [p.name for p in out.iterdir()] == ["lvs-director-trixie.qcow2.log"]
    # What this build made: the temporary dirs its log names (another build on this machine,
    # or one killed before it could clean up, is not this build's leftover).
    log = (out / "lvs-director-trixie.qcow2.log").read_text()
    made = set(image.DIB_TMP_DIR.findall(log))
    assert made, "the log names no temporary dir of diskimage-builder's"
    loops = subprocess.run(["losetup", "--list", "--noheadings", "--output", "BACK-FILE"],
                           capture_output=True, text=True).stdout.split()
    mounts = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()]
    for d in made:
        assert not Path(d).exists(), d
        assert not [m for m in mounts + loops if m == d or m.startswith(d + "/")], d


def test_an_image_of_a_spec_with_a_repository_carries_its_sources_entry(built_images: BuiltImages,
                                                                        tmp_path: Path) -> None:
    """A spec naming its repository: build-image installs lvs-apt-source beside the role package,
    so the image holds the repository's sources entry, owned by that package (the upgrade path of
    a node booted from it; a PXE tree's root filesystem is a copy of the image's: test_pxe.py).
    Built `--format tar`: the same elements install the same packages, and no disk is made."""
    from click.testing import CliRunner

    from builder.cli import cli

    from .conftest import write_spec

    data = spec.parse(spec.reference_text())
    data["repository"] = {"url": "http://192.168.1.10:8080/"}  # unsigned: no key to make here
    spec_path = write_spec(tmp_path, data)
    out = tmp_path / "out"
    r = CliRunner().invoke(cli, ["build-image", "realserver", "--spec", str(spec_path), "--out", str(out),
                                 "--format", "tar"], env={"XDG_DATA_HOME": str(built_images.data_home)})
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in out.glob("*.deb")) == ["lvs-apt-source_1.0_all.deb", "lvs-realserver_1.0_all.deb"]
    assert f"built {out}/lvs-realserver-trixie.tar" in r.stdout
    with tarfile.open(out / "lvs-realserver-trixie.tar") as root:
        def read(path: str) -> str:
            f = root.extractfile(f"./{path}")
            assert f is not None, path
            return f.read().decode()
        entry = read("etc/apt/sources.list.d/lvs-reference.sources")
        owned = read("var/lib/dpkg/info/lvs-apt-source.list")
        assert root.getmember("./usr/share/lvs-realserver/www/ldirector.html").isfile()  # the role package too
    assert "\nURIs: http://192.168.1.10:8080/\nSuites: ./\nTrusted: yes\n" in entry
    assert "/etc/apt/sources.list.d/lvs-reference.sources" in owned.splitlines()
