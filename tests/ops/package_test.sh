#!/usr/bin/env bash
# Builds the Debian package with CPack from BUILD_DIR, unpacks it into a scratch
# root and checks the installed layout: binaries run (--version), the shipped
# config is valid, the unit files pass `systemd-analyze verify` against the
# installed binaries and `systemd-analyze security` rates the service <= 2.0,
# and the package declares its shared-library dependencies.
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
