"""Install, remove and purge the role packages in real trixie and bookworm chroots.

apt resolves heartbeat, ldirectord, ipvsadm and apache2 from the archive the machine's apt
configuration names. Like piuparts: the system after purge equals the system before install.
"""

from __future__ import annotations

import os
import shlex
import shutil
from pathlib import Path

import pytest
from debian.debfile import DebFile

from builder.run import run

from .chroot import Chroot
from .conftest import need_tool

pytestmark = pytest.mark.slow

RELEASES = ["trixie", "bookworm"]


@pytest.fixture
def chroot(request: pytest.FixtureRequest, tmp_path: Path) -> Chroot:
    if os.geteuid() != 0:
        pytest.fail("the install tests need root (chroot, namespaces)")
    for tool in ("mmdebstrap", "unshare"):
        need_tool(tool)
    return Chroot.create(request.param, tmp_path)


def _depends(deb: Path) -> list[str]:
    """The package's Pre-Depends and Depends, first alternative of each: what apt would pull in
    from the archive (lvs-cluster-key is ours, installed beside lvs-director)."""
    control = DebFile(str(deb)).debcontrol()
    fields = [control[f] for f in ("Pre-Depends", "Depends") if f in control]
    return [d.split("|")[0].strip() for field in fields for d in field.split(",")
            if d.strip() != "lvs-cluster-key"]


def _install_deps_then(ch: Chroot, deb: Path, *beside: Path) -> tuple[dict[str, str], str]:
    """Install the package's dependencies alone (the 'before' system), then the package itself
    with the packages of ours it needs (`beside`), as the README says: apt install ./a.deb ./b.deb."""
    ch.apt("install " + " ".join(_depends(deb)))
    before = ch.snapshot()
    for d in (*beside, deb):
        shutil.copy(d, ch.root / "tmp" / d.name)
    log = ch.apt("install " + " ".join(f"/tmp/{d.name}" for d in (*beside, deb)))
    for d in (*beside, deb):
        (ch.root / "tmp" / d.name).unlink()
    return before, log


def _status(ch: Chroot, pkg: str) -> str:
    return ch.sh(f"dpkg-query -W -f '${{Status}}' {pkg} 2>/dev/null || true").stdout.strip()


def _configure_again(ch: Chroot, pkg: str) -> None:
    """Run the postinst a second time, as dpkg would on a reinstall of the same version."""
    ch.sh(f"DPKG_MAINTSCRIPT_PACKAGE={pkg} DPKG_MAINTSCRIPT_NAME=postinst DPKG_MAINTSCRIPT_ARCH=all "
          f"/var/lib/dpkg/info/{pkg}.postinst configure 1.0")


def _reinstall(ch: Chroot, deb: Path) -> None:
    """apt install ./the.deb again, from the config-files state a remove left."""
    shutil.copy(deb, ch.root / "tmp" / deb.name)
    ch.apt(f"install /tmp/{deb.name}")
    (ch.root / "tmp" / deb.name).unlink()
    assert _status(ch, deb.name.split("_")[0]) == "install ok installed"


def _links(ch: Chroot, pattern: str) -> list[str]:
    return sorted(p.name for p in ch.root.glob(pattern))


def _assert_purged_like_before(ch: Chroot, before: dict[str, str], pkg: str) -> None:
    assert _status(ch, pkg) in ("", "unknown ok not-installed")
    assert ch.paths_naming(pkg) == []
    after = ch.snapshot()
    added = sorted(set(after) - set(before))
    removed = sorted(set(before) - set(after))
    changed = sorted(p for p in set(before) & set(after) if before[p] != after[p])
    assert (added, removed, changed) == ([], [], [])


def _vip_hooks_act(ch: Chroot) -> None:
    """The installed harc and heartbeat-stop, run as heartbeat and systemd would, as loadb2 with
    eth0 in the chroot's own network namespace (no heartbeat runs here: heartbeat's harc, which
    ours execs after, finds none of its environment and stops at once)."""
    script = r"""
        echo loadb2 > /proc/sys/kernel/hostname
        ip link add eth0 type bridge && ip link set eth0 up && ip address add 192.168.1.104/24 dev eth0
        vip() { echo "$1=$(ip -4 -o address show dev eth0 to 192.168.1.105/32 | wc -l)"; }
        HA_src=loadb1 HA_step=ask timeout 20 /etc/ha.d/harc lvs-handover
        vip asked                       # heartbeat here is not running: no claim
        HA_src=loadb1 HA_st=dead timeout 20 /etc/ha.d/harc status >/dev/null 2>&1 || true
        vip dead                        # the other director is dead: claimed
        # heartbeat takes its preferred node's group back through req_resource, which takes
        # nothing if `ResourceManager status KEY` (the group's first resource) says running:
        # the claim must not make it say so, or the sync daemon never turns master.
        key=$(/usr/share/heartbeat/ResourceManager listkeys loadb1)
        echo "key=$key"
        /usr/share/heartbeat/ResourceManager status "$key" >/dev/null 2>&1 && echo keyheld=yes || echo keyheld=no
        HA_src=loadb3 HA_st=dead timeout 20 /etc/ha.d/harc status >/dev/null 2>&1 || true
        HA_src=loadb1 HA_step=done timeout 20 /etc/ha.d/harc lvs-handover
        echo "answer=$(ls /run/lvs-builder/handed-over)"
        timeout 20 /usr/libexec/lvs-director/heartbeat-stop before  # no peer to ask: at once
        vip before
        timeout 20 /usr/libexec/lvs-director/heartbeat-stop after
        vip after                       # heartbeat stopped: no VIP stays
        # A healed partition: loadb1's heartbeat restarts, this one's does not (it logged no
        # "returning after partition"): this director keeps the VIPs and says so (step=kept).
        mkfifo /var/lib/heartbeat/fifo  # heartbeat's, read here as heartbeat would
        cat /var/lib/heartbeat/fifo > /tmp/told &
        HA_src=loadb1 HA_step=heal timeout 20 /etc/ha.d/harc lvs-handover
        vip healed
        wait
        rm /var/lib/heartbeat/fifo
        echo "told=$(grep -c '^step=kept$' /tmp/told)"
        # heartbeat's restart gives up every resource: a director that keeps the VIPs across it leaves them
        date +%s > /run/lvs-builder/keep-vips
        /etc/ha.d/resource.d/LVSVip 192.168.1.105/24/eth0/192.168.1.255 stop
        vip restarting
        HA_src=loadb1 HA_step=kept timeout 20 /etc/ha.d/harc lvs-handover
        vip released                    # the other keeps them: released here at once
        echo "mark=$(ls /run/lvs-builder/keep-vips 2>/dev/null)"
        # heartbeat's start on a machine without the serial port ha.cf names: one line saying so
        /usr/libexec/lvs-director/heartbeat-serial && echo "serial_ok=0"
        cp -p /etc/ha.d/ha.cf /tmp/ha.cf && echo "serial /dev/ttyS9" >> /etc/ha.d/ha.cf
        rc=0 && msg=$(/usr/libexec/lvs-director/heartbeat-serial 2>&1) || rc=$?
        cp -p /tmp/ha.cf /etc/ha.d/ha.cf  # as it was
        echo "serial_missing=$msg exit $rc"
    """
    out = ch.sh(f"unshare --uts /bin/sh -ec {shlex.quote(script)}").stdout
    facts = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    assert (facts["asked"], facts["dead"], facts["answer"], facts["before"], facts["after"]) == \
        ("0", "1", "/run/lvs-builder/handed-over", "1", "0"), out
    assert (facts["key"], facts["keyheld"]) == ("LVSSyncDaemonSwap::master", "no"), out
    assert (facts["healed"], facts["told"], facts["restarting"], facts["released"], facts["mark"]) == \
        ("1", "1", "1", "0", ""), out
    assert facts["serial_ok"] == "0" and facts["serial_missing"] == (
        "lvs-director: /etc/ha.d/ha.cf: serial /dev/ttyS9: no such device on this machine; heartbeat cannot start "
        "(a machine without that port, or the cable on another: name the port in the spec's heartbeat.media) exit 1"
    ), out


@pytest.mark.parametrize("chroot", RELEASES, indirect=True)
def test_director_install_remove_purge(chroot: Chroot, role_debs: dict[str, Path]) -> None:
    ch = chroot
    before, _ = _install_deps_then(ch, role_debs["lvs-director"], role_debs["lvs-cluster-key"])
    assert _status(ch, "lvs-director") == "install ok installed"
    for pkg in ("heartbeat", "ldirectord", "ipvsadm", "lvs-cluster-key"):
        assert _status(ch, pkg) == "install ok installed"
    ha = ch.root / "etc/ha.d"
    # Our ldirectord.cf displaces ldirectord's dummy, which is diverted, not edited.
    assert os.readlink(ha / "ldirectord.cf") == "ldirectord.cf.lvs-director"
    assert "virtual=192.168.1.105:80" in (ha / "ldirectord.cf").read_text()
    assert (ha / "ldirectord.cf.lvs-director-orig").read_text().startswith("# Dummy configuration file.")
    assert "diversion of /etc/ha.d/ldirectord.cf to /etc/ha.d/ldirectord.cf.lvs-director-orig by lvs-director" \
        in ch.sh("dpkg-divert --list").stdout
    st = os.stat(ha / "authkeys")
    assert (oct(st.st_mode & 0o7777), st.st_uid, st.st_gid) == ("0o600", 0, 0)
    assert os.access(ha / "resource.d/LVSSyncDaemonSwap", os.X_OK)
    assert (ch.root / "etc/sysctl.d/60-lvs-director.conf").exists()
    assert (ch.root / "etc/modules-load.d/lvs-director.conf").exists()
    assert (ch.root / "etc/apache2/conf-enabled/lvs-director.conf").is_symlink()
    assert "Syntax OK" in ch.sh(". /etc/apache2/envvars && apache2 -t 2>&1").stdout
    # Init links: heartbeat at boot, and ldirectord too (its own default, kept): it runs on
    # both directors, heartbeat moves only the sync daemon's master role and the VIP.
    wants = "etc/systemd/system/multi-user.target.wants/*.service"
    assert "heartbeat.service" in _links(ch, wants)
    assert "ldirectord.service" in _links(ch, wants)
    assert "lvs-sync-backup.service" in _links(ch, wants)  # the standby receives the active's connections
    assert _links(ch, "etc/rc2.d/S*ldirectord") != [] and _links(ch, "etc/rc2.d/S*heartbeat") != []
    # heartbeat's harc displaced as ldirectord.cf is; ours acts on the events that move the VIP.
    assert os.readlink(ha / "harc") == "harc.lvs-director"
    assert "diversion of /etc/ha.d/harc to /etc/ha.d/harc.lvs-director-orig by lvs-director" \
        in ch.sh("dpkg-divert --list").stdout
    _vip_hooks_act(ch)
    # Idempotent: configuring again changes nothing.
    state = ch.snapshot()
    _configure_again(ch, "lvs-director")
    assert ch.snapshot() == state
    # An admin's choice survives an upgrade: heartbeat disabled stays disabled.
    ch.sh("systemctl disable heartbeat.service")
    disabled = ch.snapshot()
    assert "heartbeat.service" not in _links(ch, wants) and disabled != state
    _configure_again(ch, "lvs-director")
    assert ch.snapshot() == disabled
    ch.sh("systemctl enable heartbeat.service")
    assert ch.snapshot() == state

    ch.apt("remove lvs-director")
    assert _status(ch, "lvs-director") == "deinstall ok config-files"
    assert not (ha / "ldirectord.cf").is_symlink()
    assert (ha / "ldirectord.cf").read_text().startswith("# Dummy configuration file.")
    assert "lvs-director" not in ch.sh("dpkg-divert --list").stdout
    assert "ldirectord.service" in _links(ch, wants)  # ldirectord's own default, never touched
    assert not (ch.root / "usr/share/lvs-director").exists()
    assert not (ch.root / "etc/apache2/conf-enabled/lvs-director.conf").exists()
    # A removed director does not rejoin at its next boot: ha.cf stays (a conffile) and so does
    # the key, but heartbeat is disabled, with the mark that has a reinstall enable it again.
    assert (ha / "ha.cf").exists() and (ha / "authkeys").exists()
    assert "heartbeat.service" not in _links(ch, wants) and _links(ch, "etc/rc2.d/S*heartbeat") == []
    mark = ch.root / "var/lib/lvs-director/heartbeat.disabled"
    assert mark.exists()
    _reinstall(ch, role_debs["lvs-director"])
    assert "heartbeat.service" in _links(ch, wants) and not mark.exists()
    # our own units, masked by the remove (their files were gone), are unmasked and enabled again
    assert "lvs-sync-backup.service" in _links(ch, wants)
    assert not (ch.root / "etc/systemd/system/lvs-sync-backup.service").is_symlink()
    assert not (ch.root / "etc/systemd/system/lvs-identity.service").is_symlink()
    # An admin who disabled heartbeat keeps it disabled through remove and reinstall (no mark).
    ch.sh("systemctl disable heartbeat.service")
    ch.apt("remove lvs-director")
    assert not mark.exists()
    _reinstall(ch, role_debs["lvs-director"])
    assert "heartbeat.service" not in _links(ch, wants)
    ch.sh("systemctl enable heartbeat.service")  # the admin's again

    # Purged, the configuration is gone, and heartbeat is enabled again as its own package had it.
    ch.apt("remove lvs-director")
    assert mark.exists()
    ch.apt("purge lvs-director lvs-cluster-key")
    _assert_purged_like_before(ch, before, "lvs-director")
    assert not (ha / "authkeys").exists()


def _old_status_hook_deb(where: Path) -> Path:
    """lvs-director as an earlier lvs-builder built it, reduced to what this upgrade concerns:
    heartbeat's rc.d/status diverted and linked to its own rc.d/status.lvs-director, a conffile
    (maintainer scripts as 8834c68 rendered them), and the cluster key in its own authkeys."""
    root = where / "old"
    scripts = {
        "preinst": 'case "$1" in install|upgrade) dpkg-divert --package lvs-director --add --rename '
                   '--divert /etc/ha.d/rc.d/status.lvs-director-orig /etc/ha.d/rc.d/status ;; esac',
        "postinst": 'case "$1" in configure) ln -sfn status.lvs-director /etc/ha.d/rc.d/status ;; esac',
        "postrm": 'case "$1" in remove|abort-install|disappear) if [ -L /etc/ha.d/rc.d/status ]; then '
                  'rm -f /etc/ha.d/rc.d/status; fi; dpkg-divert --package lvs-director --remove --rename '
                  '--divert /etc/ha.d/rc.d/status.lvs-director-orig /etc/ha.d/rc.d/status ;; esac',
        "etc/ha.d/rc.d/status.lvs-director": 'exec /etc/ha.d/rc.d/status.lvs-director-orig "$@"',
    }
    for name, body in scripts.items():
        f = root / name if "/" in name else root / "DEBIAN" / name
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(f"#!/bin/sh\nset -e\n{body}\n")
        f.chmod(0o755)
    (root / "etc/ha.d/authkeys").write_text("auth 1\n1 sha1 " + "0" * 64 + "\n")
    (root / "etc/ha.d/authkeys").chmod(0o600)
    (root / "DEBIAN/conffiles").write_text("/etc/ha.d/rc.d/status.lvs-director\n/etc/ha.d/authkeys\n")
    (root / "DEBIAN/control").write_text(
        "Package: lvs-director\nVersion: 0.9\nArchitecture: all\nMaintainer: lvs-builder tests <root@localhost>\n"
        "Pre-Depends: heartbeat\nDescription: lvs-director as an earlier lvs-builder built it (test)\n")
    deb = where / "lvs-director_0.9_all.deb"
    run(["dpkg-deb", "--root-owner-group", "--build", str(root), str(deb)])
    return deb


@pytest.mark.parametrize("chroot", ["trixie"], indirect=True)
def test_director_upgrade_gives_heartbeat_its_status_back(chroot: Chroot, role_debs: dict[str, Path],
                                                         tmp_path: Path) -> None:
    """Upgrading from an lvs-director that hooked heartbeat's rc.d/status (the hook is in harc
    now) and carried the cluster key: heartbeat's file is back, not diverted, the old hook, an
    obsolete conffile, is gone, and authkeys is lvs-cluster-key's now (no file conflict)."""
    ch = chroot
    ch.apt("install " + " ".join(_depends(role_debs["lvs-director"])))
    rc = ch.root / "etc/ha.d/rc.d"
    heartbeats = (rc / "status").read_bytes()
    for deb in (_old_status_hook_deb(tmp_path), role_debs["lvs-director"], role_debs["lvs-cluster-key"]):
        shutil.copy(deb, ch.root / "tmp" / deb.name)
    ch.sh("dpkg -i /tmp/lvs-director_0.9_all.deb")
    assert os.readlink(rc / "status") == "status.lvs-director"  # the old package's state, as it was
    assert "/etc/ha.d/rc.d/status" in ch.sh("dpkg-divert --list").stdout
    ch.apt(f"install /tmp/{role_debs['lvs-cluster-key'].name} /tmp/{role_debs['lvs-director'].name}")
    assert _status(ch, "lvs-director") == "install ok installed"
    assert ch.sh("dpkg-query -S /etc/ha.d/authkeys").stdout.strip() == "lvs-cluster-key: /etc/ha.d/authkeys"
    assert "0" * 64 not in (ch.root / "etc/ha.d/authkeys").read_text()
    assert not (rc / "status").is_symlink() and (rc / "status").read_bytes() == heartbeats
    assert "rc.d/status" not in ch.sh("dpkg-divert --list").stdout
    assert sorted(p.name for p in rc.iterdir() if p.name.startswith("status")) == ["status"]
    assert "status.lvs-director" not in ch.sh("dpkg-query -W -f '${Conffiles}' lvs-director").stdout
    assert os.readlink(ch.root / "etc/ha.d/harc") == "harc.lvs-director"


@pytest.mark.parametrize("chroot", RELEASES, indirect=True)
def test_realserver_install_remove_purge(chroot: Chroot, role_debs: dict[str, Path]) -> None:
    ch = chroot
    before, _ = _install_deps_then(ch, role_debs["lvs-realserver"])
    assert _status(ch, "lvs-realserver") == "install ok installed"
    assert "lvs-realserver.service" in _links(ch, "etc/systemd/system/multi-user.target.wants/*.service")
    assert (ch.root / "etc/apache2/conf-enabled/lvs-realserver.conf").is_symlink()
    assert (ch.root / "etc/apache2/mods-enabled/include.load").is_symlink()
    assert (ch.root / "usr/share/lvs-realserver/www/ldirector.html").read_text() == "Test Page\n"
    assert "arp_ignore = 1" in (ch.root / "etc/sysctl.d/60-lvs-realserver.conf").read_text()
    # apache2 accepts our configuration as installed.
    assert "Syntax OK" in ch.sh(". /etc/apache2/envvars && apache2 -t 2>&1").stdout
    state = ch.snapshot()
    _configure_again(ch, "lvs-realserver")
    assert ch.snapshot() == state

    ch.apt("remove lvs-realserver")
    assert _status(ch, "lvs-realserver") == "deinstall ok config-files"
    assert not (ch.root / "etc/apache2/conf-enabled/lvs-realserver.conf").exists()
    assert not (ch.root / "etc/apache2/mods-enabled/include.load").exists()  # ours: enabled by us
    ch.apt("purge lvs-realserver")
    _assert_purged_like_before(ch, before, "lvs-realserver")


SHOP_SITE = """<VirtualHost *:80>
    ServerName shop.example
    DocumentRoot /var/www/shop
</VirtualHost>
"""


def _pages(ch: Chroot, requests: list[tuple[str, str]]) -> dict[str, str]:
    """apache2 started in the chroot's own network namespace (loopback only), asked for each
    (Host, path) as a client would, then stopped with the namespace: {host+path: body}."""
    gets = "\n".join(f'echo "== {host}{path}"; get {host} {path}' for host, path in requests)
    script = f"""
        ip link set lo up
        mkdir -p /run/lvs-builder && echo webserver1 > /run/lvs-builder/node
        . /etc/apache2/envvars && mkdir -p "$APACHE_RUN_DIR" "$APACHE_LOCK_DIR" && apache2 -k start
        get() {{ bash -c "exec 3<>/dev/tcp/127.0.0.1/80
                         printf 'GET $2 HTTP/1.0\r\nHost: $1\r\n\r\n' >&3; cat <&3"; }}
        for i in $(seq 100); do bash -c 'exec 3<>/dev/tcp/127.0.0.1/80' 2>/dev/null && break; sleep 0.1; done
        {gets}
        apache2 -k stop
    """
    out = ch.sh(f"unshare --net /bin/sh -ec {shlex.quote(script)}").stdout
    pages: dict[str, str] = {}
    key = ""
    for line in out.splitlines():
        if line.startswith("== "):
            key = line[3:]
            pages[key] = ""
        elif key:
            pages[key] += line + "\n"
    return pages


@pytest.mark.parametrize("chroot", ["trixie"], indirect=True)
def test_a_real_server_keeps_the_admins_site_and_module(chroot: Chroot, role_debs: dict[str, Path]) -> None:
    """On a web server the admin runs already (mod_include enabled, a site of theirs): our pages
    answer / for the cluster's own Host names only, the admin's site keeps its `/`, and removing
    lvs-realserver leaves mod_include enabled (it was not ours)."""
    ch = chroot
    ch.apt("install " + " ".join(_depends(role_debs["lvs-realserver"])))
    (ch.root / "var/www/shop").mkdir(parents=True)
    (ch.root / "var/www/shop/index.html").write_text("the shop's own page\n")
    (ch.root / "etc/apache2/sites-available/shop.conf").write_text(SHOP_SITE)
    ch.sh("a2enmod -q include && a2ensite -q shop")
    before = ch.snapshot()
    shutil.copy(role_debs["lvs-realserver"], ch.root / "tmp" / role_debs["lvs-realserver"].name)
    # As on a running system (systemd's directory; policy-rc.d still starts nothing): postinst
    # records the sysctls its drop-in changes (this namespace's: eth0's do not exist here).
    ch.sh("mkdir -p /run/systemd/system")
    ch.apt(f"install /tmp/{role_debs['lvs-realserver'].name}")
    (ch.root / "tmp" / role_debs["lvs-realserver"].name).unlink()
    assert (ch.root / "var/lib/lvs-realserver/sysctl.orig").read_text() == \
        "net.ipv4.conf.all.arp_ignore=0\nnet.ipv4.conf.all.arp_announce=0\n"
    pages = _pages(ch, [("shop.example", "/"), ("shop.example", "/index.html"), ("192.168.1.105", "/"),
                        ("192.168.1.101", "/ldirector.html"), ("localhost", "/")])
    assert "the shop's own page" in pages["shop.example/"] and "the shop's own page" in pages["shop.example/index.html"]
    assert "Served by real server webserver1" in pages["192.168.1.105/"]  # the VIP: ours, mod_include at work
    assert pages["192.168.1.101/ldirector.html"].endswith("\n\nTest Page\n")  # ldirectord's check, on the RIP
    assert "real server" not in pages["localhost/"] and " 200 OK" in pages["localhost/"]  # apache2's default site
    assert not (ch.root / "var/lib/lvs-realserver/include.module").exists()
    # Removed with our drop-in applied and an admin's arp_announce set since (one network
    # namespace for all of it): ours goes back, the admin's stays.
    out = ch.sh("sysctl -q -p /etc/sysctl.d/60-lvs-realserver.conf 2>/dev/null || true\n"
                "sysctl -q -w net.ipv4.conf.all.arp_announce=1\n"
                "apt-get -q -y remove lvs-realserver >/dev/null\n"
                "sysctl -n net.ipv4.conf.all.arp_ignore net.ipv4.conf.all.arp_announce").stdout
    assert out.split()[-2:] == ["0", "1"], out  # (apt's and the helpers' words come before)
    assert not (ch.root / "var/lib/lvs-realserver/sysctl.orig").exists()
    ch.sh("rmdir /run/systemd/system")
    assert (ch.root / "etc/apache2/mods-enabled/include.load").is_symlink()  # the admin's, still
    assert (ch.root / "etc/apache2/sites-enabled/shop.conf").is_symlink()
    ch.apt("purge lvs-realserver")
    assert (ch.root / "etc/apache2/mods-enabled/include.load").is_symlink()
    _assert_purged_like_before(ch, before, "lvs-realserver")
