#!/usr/bin/env bash
# Builds the Debian package with CPack from BUILD_DIR, unpacks it into a scratch
# root and checks the installed layout: binaries run (--version), the shipped
# config is valid, the unit files pass `systemd-analyze verify` against the
# installed binaries and `systemd-analyze security` rates the service <= 2.0,
# the package declares its shared-library dependencies, lintian (Debian's own checker) reports
# nothing, and dpkg installs it into a scratch root (its own admin dir) where an upgrade keeps an
# edited /etc/rapport/rapport.toml (a conffile).
#
# Usage: tests/ops/package_test.sh BUILD_DIR
set -euo pipefail

build="$(cd "$1" && pwd)"
mkdir -p "$build/test-tmp"
work="$(mktemp -d "$build/test-tmp/package.XXXXXX")"
trap 'rm -rf "$work"' EXIT

(cd "$build" && cpack -G DEB -B "$work/out" >"$work/cpack.log" 2>&1) || { cat "$work/cpack.log"; exit 1; }
deb="$(ls "$work"/out/rapport_*.deb)"
echo "package: $(basename "$deb")"

depends="$(dpkg-deb -f "$deb" Depends)"
echo "Depends: $depends"
for lib in libsimdjson liblmdb libprometheus-cpp-core libsystemd; do
  grep -q "$lib" <<<"$depends" || { echo "FAIL: Depends lacks $lib"; exit 1; }
done

# lintian: any error, warning or info tag fails (no allow-list). It warns about running as root,
# which is not a finding about the package.
lint="$(lintian --info --fail-on error,warning,info "$deb" 2>&1 | grep -v 'running with root privileges' || true)"
[[ -z "$lint" ]] || { echo "FAIL: lintian reports:"; echo "$lint"; exit 1; }
echo "lintian: clean"

# The conffile is declared, and an install plus an upgrade keep an edited config.
[[ "$(dpkg-deb --ctrl-tarfile "$deb" | tar -xO ./conffiles)" == "/etc/rapport/rapport.toml" ]] ||
  { echo "FAIL: /etc/rapport/rapport.toml is not a conffile"; exit 1; }
dpkg-deb -c "$deb" >"$work/contents"
for man in usr/share/man/man8/rapportd.8.gz usr/share/man/man1/rapportctl.1.gz usr/share/doc/rapport/copyright \
  usr/share/doc/rapport/changelog.gz; do
  grep -q " ./$man\$" "$work/contents" || { echo "FAIL: $man missing from the package"; exit 1; }
done
dpkg_root="$work/dpkg-root"
mkdir -p "$dpkg_root/var/lib/dpkg/info" "$dpkg_root/var/lib/dpkg/updates" "$dpkg_root/var/lib/dpkg/triggers"
touch "$dpkg_root/var/lib/dpkg/status"
# --force-depends: the scratch root's dpkg database lists none of the libraries; the host has them.
dpkg_in_root() { dpkg --root="$dpkg_root" --force-depends --force-script-chrootless --force-confold "$@" >"$work/dpkg.log" 2>&1 || {
  cat "$work/dpkg.log"; echo "FAIL: dpkg $*"; exit 1; }; }
dpkg_in_root -i "$deb"
sed -i 's/^shutdown_timeout_ms = [0-9]*/shutdown_timeout_ms = 20000 # edited by the operator/' "$dpkg_root/etc/rapport/rapport.toml"
grep -q 'edited by the operator' "$dpkg_root/etc/rapport/rapport.toml" || { echo "FAIL: could not edit the config"; exit 1; }
# The next version ships a changed default config: dpkg must keep the operator's edit (confold).
next="$work/next"
dpkg-deb -R "$deb" "$next"
sed -i 's/^Version: .*/&+test1/' "$next/DEBIAN/control"
echo '# a new default in the next version' >>"$next/etc/rapport/rapport.toml"
(cd "$next" && find etc usr -type f -exec md5sum {} + >DEBIAN/md5sums)
dpkg-deb --root-owner-group -b "$next" "$work/next.deb" >/dev/null
dpkg_in_root -i "$work/next.deb"
grep -q 'edited by the operator' "$dpkg_root/etc/rapport/rapport.toml" ||
  { echo "FAIL: the upgrade overwrote the edited /etc/rapport/rapport.toml"; exit 1; }
dpkg_in_root -i "$deb"  # a downgrade/reinstall keeps it too
grep -q 'edited by the operator' "$dpkg_root/etc/rapport/rapport.toml" ||
  { echo "FAIL: a reinstall overwrote the edited /etc/rapport/rapport.toml"; exit 1; }
"$dpkg_root/usr/bin/rapportd" --config "$dpkg_root/etc/rapport/rapport.toml" --check-config
echo "conffile: an edited config survives upgrade and reinstall"

# No user is created by the package: the unit runs under a DynamicUser with its own state dir.
unit="$dpkg_root/usr/lib/systemd/system/rapportd.service"
for line in DynamicUser=yes StateDirectory=rapport ConfigurationDirectory=rapport; do
  grep -qx "$line" "$unit" || { echo "FAIL: rapportd.service lacks $line"; exit 1; }
done
[[ ! -e "$dpkg_root/var/lib/dpkg/info/rapport.postinst" ]] || { echo "FAIL: unexpected postinst"; exit 1; }

root="$work/root"
dpkg-deb -x "$deb" "$root"
for f in usr/bin/rapportd usr/bin/rapportctl etc/rapport/rapport.toml usr/lib/systemd/system/rapportd.service \
  usr/lib/systemd/system/rapportd.socket usr/lib/systemd/system/rapportd-tcp.socket \
  usr/share/rapport/grafana/rapport.json usr/share/rapport/prometheus/alerts.yml usr/share/doc/rapport/README.md; do
  [[ -e "$root/$f" ]] || { echo "FAIL: $f missing from the package"; exit 1; }
done

"$root/usr/bin/rapportd" --version | grep -q '^rapportd ' || { echo "FAIL: rapportd --version"; exit 1; }
"$root/usr/bin/rapportctl" --version | grep -q '^rapportctl ' || { echo "FAIL: rapportctl --version"; exit 1; }
"$root/usr/bin/rapportd" --config "$root/etc/rapport/rapport.toml" --check-config

# systemd checks against the installed files (ExecStart resolved inside the scratch root, which
# gets the host's stock targets and /bin/kill the way a real system has them).
cp -n /usr/lib/systemd/system/*.target "$root/usr/lib/systemd/system/"
mkdir -p "$root/bin" && cp /bin/kill "$root/bin/kill"
out="$(SYSTEMD_LOG_LEVEL=warning systemd-analyze verify --root="$root" --man=no \
  /usr/lib/systemd/system/rapportd.service /usr/lib/systemd/system/rapportd.socket \
  /usr/lib/systemd/system/rapportd-tcp.socket 2>&1)" || { echo "FAIL: systemd-analyze verify"; echo "$out"; exit 1; }
[[ -z "$out" ]] || { echo "FAIL: systemd-analyze verify printed:"; echo "$out"; exit 1; }
systemd-analyze security --offline=true --threshold=20 --root="$root" rapportd.service | tail -1
echo "package_test: OK"
