#!/usr/bin/env bash
# Package test (run by .ci/run, as root): builds the .deb (cargo-deb) and the .rpm
# (rpmbuild and packaging/hookd.spec), lints and inspects them, then
#  - installs the .deb into a Debian root booted with systemd-nspawn and runs
#    packaging/test-in-container.sh there (service, TLS health, reload, upgrade, purge);
#  - installs the .rpm into a copy of that root with `rpm --root` and verifies it.
# Installs the tools it needs when they are missing. The Debian root is built once with
# debootstrap, from the mirror apt uses, and cached in $HOOKD_CI_CACHE.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
cache=${HOOKD_CI_CACHE:-/var/cache/hookd-ci}
target=${CARGO_TARGET_DIR:-$repo/target}
out=$target/packages
start=$SECONDS

step() { printf '\n== %s [%ds]\n' "$*" $((SECONDS - start)); }
fail() {
    echo "FAIL: $*" >&2
    exit 1
}

[ "$(id -u)" = 0 ] || fail "run as root: it installs tools, debootstraps and boots a container"

step "tools"
missing=()
for pair in debootstrap:debootstrap systemd-nspawn:systemd-container lintian:lintian \
    rpmbuild:rpm curl:curl; do
    command -v "${pair%%:*}" >/dev/null || missing+=("${pair#*:}")
done
if ((${#missing[@]})); then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
command -v cargo-deb >/dev/null || cargo install --locked cargo-deb

step "build"
cargo build --release --locked
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
rm -rf "$out"
mkdir -p "$out"
cargo deb --no-build --output "$out/"
# The same package with a higher revision, to test an upgrade.
cargo deb --no-build --deb-revision 2 --output "$out/"
deb=$out/hookd_${version}-1_amd64.deb
deb_next=$out/hookd_${version}-2_amd64.deb
for release in 1 2; do
    rpmbuild -bb --quiet packaging/hookd.spec \
        --define "_topdir $out/rpmbuild" --define "_sourcedir $repo" \
        --define "_rpmdir $out" --define "hookd_binary $target/release/hookd" \
        --define "hookd_version $version" --define "hookd_release $release"
done
rpm=$out/x86_64/hookd-${version}-1.x86_64.rpm
rpm_next=$out/x86_64/hookd-${version}-2.x86_64.rpm
ls -l "$deb" "$deb_next" "$rpm" "$rpm_next"

step "lintian: no errors, no warnings"
# Info tags are shown (-I) but do not fail the build; overrides carry their reason in
# packaging/lintian-overrides.
lintian -I --fail-on error,warning --tag-display-limit 0 "$deb"

step "deb: conffile, modes, maintainer scripts"
ctrl=$out/deb-control
dpkg-deb --control "$deb" "$ctrl"
grep -qx /etc/hookd/hookd.toml "$ctrl/conffiles" || fail "hookd.toml is not a conffile"
dpkg-deb --contents "$deb" >"$out/deb-files"
grep -Eq '^-rw-r----- (0/0|root/root) .* \./etc/hookd/hookd\.toml$' "$out/deb-files" ||
    fail "hookd.toml is not mode 0640 in the .deb"
for doc in README.md api.md openapi.json examples/config.example.toml; do
    grep -Eq "^-rw-r--r-- (0/0|root/root) .* \./usr/share/doc/hookd/$doc\$" "$out/deb-files" ||
        fail "/usr/share/doc/hookd/$doc is not in the .deb (mode 0644)"
done
grep -q 'hookd init --missing-only /etc/hookd' "$ctrl/postinst" || fail "postinst does not run init"
grep -q 'deb-systemd-invoke' "$ctrl/postinst" || fail "postinst does not start the unit"
grep -q 'rm -rf /etc/hookd /var/lib/hookd' "$ctrl/postrm" || fail "postrm does not purge"

step "rpm: config(noreplace), owner, group and mode"
rpm -qp --qf '[%{FILEFLAGS:fflags} %{FILEMODES:perms} %{FILEUSERNAME}:%{FILEGROUPNAME} %{FILENAMES}\n]' "$rpm" |
    tee "$out/rpm-files"
grep -qx 'cn -rw-r----- root:hookd /etc/hookd/hookd.toml' "$out/rpm-files" ||
    fail "hookd.toml is not %config(noreplace) root:hookd 0640 in the .rpm"
for doc in README.md api.md openapi.json examples/config.example.toml; do
    grep -qx "d -rw-r--r-- root:root /usr/share/doc/hookd/$doc" "$out/rpm-files" ||
        fail "/usr/share/doc/hookd/$doc is not a %doc file (0644) in the .rpm"
done

step "Debian root"
# The host's own release and mirror, so the root gets the glibc the binary was built
# against and packages come from where apt already gets them.
# shellcheck source=/dev/null
. /etc/os-release
suite=$VERSION_CODENAME
mirror=$(awk -v suite="$suite" '
    /^[[:space:]]*$/ { uri = ""; found = 0; next }
    $1 == "URIs:" { uri = $2 }
    $1 == "Suites:" { for (i = 2; i <= NF; i++) if ($i == suite) found = 1 }
    uri != "" && found { print uri; exit }' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
if [ -z "$mirror" ]; then
    mirror=$(awk -v suite="$suite" '$1 == "deb" {
        for (i = 2; i < NF; i++) if ($i ~ /^[a-z]+:\/\// && $(i + 1) == suite) { print $i; exit } }' \
        /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null || true)
fi
[ -n "$mirror" ] || fail "no apt source for $suite in /etc/apt: cannot debootstrap"
# man-db: systemd-analyze verify checks that Documentation=man:hookd(1) resolves.
include=systemd,systemd-sysv,procps,curl,man-db
base=$cache/root-$suite-$(printf '%s' "$include" | sha256sum | cut -c1-12)
if [ ! -e "$base/.complete" ]; then
    # Roots made for another package list or release are stale.
    rm -rf "$cache"/root-*
    mkdir -p "$cache"
    echo "debootstrap $suite into $base"
    debootstrap --variant=minbase --include="$include" "$suite" "$base" "$mirror" \
        >"$cache/debootstrap.log" 2>&1 || {
        tail -n 30 "$cache/debootstrap.log" >&2
        fail "debootstrap failed"
    }
    # No apt or fstrim runs during a test: the container has no network and no disk.
    rm -f "$base/etc/systemd/system/timers.target.wants/"*
    touch "$base/.complete"
else
    echo "cached: $base"
fi

step "deb: boot the root with systemd-nspawn and run the checks"
root=$cache/run-deb
rm -rf "$root"
cp -a "$base" "$root"
mkdir -p "$root/ci"
cp "$deb" "$deb_next" packaging/test-in-container.sh "$root/ci/"
cat >"$root/etc/systemd/system/hookd-ci.service" <<EOF
[Unit]
Description=hookd package test
After=basic.target

# The container stops when the test ends; nspawn exits with the test's status.
SuccessAction=exit-force
FailureAction=exit-force

[Service]
Type=oneshot
ExecStart=/bin/sh /ci/test-in-container.sh /ci/$(basename "$deb") /ci/$(basename "$deb_next")
StandardOutput=file:/ci/check.log
StandardError=inherit
EOF
mkdir -p "$root/etc/systemd/system/multi-user.target.wants"
ln -s ../hookd-ci.service "$root/etc/systemd/system/multi-user.target.wants/hookd-ci.service"
# --register=no --keep-unit: this machine has no systemd-machined to register with.
# --private-network: the container has only its own loopback.
status=0
timeout --kill-after=10 300 systemd-nspawn --quiet --register=no --keep-unit \
    --private-network --directory="$root" --console=read-only --boot \
    systemd.show_status=false >"$out/console.log" 2>&1 || status=$?
cat "$root/ci/check.log" 2>/dev/null || true
if [ "$status" -ne 0 ] || ! grep -q '^container checks passed$' "$root/ci/check.log"; then
    echo "--- container console (last 40 lines)" >&2
    tail -n 40 "$out/console.log" >&2
    fail "container checks failed (systemd-nspawn exit status $status)"
fi
rm -rf "$root"

step "rpm: install into a root with rpm --root, verify with rpm -V"
root=$cache/run-rpm
rm -rf "$root"
cp -a "$base" "$root"
# --nodeps (install and verify): the root's libraries belong to dpkg, which rpm's
# database does not know; everything else rpm -V checks (digests, sizes, owners,
# modes, config flags) is checked.
rpm --root "$root" --install --nodeps "$rpm"
verify=$(rpm --root "$root" -V --nodeps hookd 2>&1) || fail "rpm -V: $verify"
[ -z "$verify" ] || fail "rpm -V printed: $verify"
# Names as the root's own /etc/passwd and /etc/group give them.
chroot "$root" stat -c '%U:%G %a %n' /etc/hookd /etc/hookd/hookd.toml /etc/hookd/master.key \
    /etc/hookd/admin.token /etc/hookd/tls/key.pem /etc/hookd/tls/ca.key /var/lib/hookd |
    tee "$out/rpm-modes"
diff -u - "$out/rpm-modes" <<EOF || fail "unexpected owners or modes after the rpm install"
root:hookd 750 /etc/hookd
root:hookd 640 /etc/hookd/hookd.toml
root:hookd 640 /etc/hookd/master.key
root:hookd 640 /etc/hookd/admin.token
root:hookd 640 /etc/hookd/tls/key.pem
root:root 600 /etc/hookd/tls/ca.key
hookd:hookd 750 /var/lib/hookd
EOF
chroot "$root" /usr/bin/hookd check-config --config /etc/hookd/hookd.toml
# An upgrade keeps a changed config (noreplace) and the generated keys.
sed -i 's/^level = "info"$/level = "debug"/' "$root/etc/hookd/hookd.toml"
key=$(sha256sum <"$root/etc/hookd/master.key")
rpm --root "$root" --upgrade --nodeps "$rpm_next"
grep -q '^level = "debug"$' "$root/etc/hookd/hookd.toml" || fail "the rpm upgrade replaced the changed config"
[ "$(sha256sum <"$root/etc/hookd/master.key")" = "$key" ] || fail "the rpm upgrade changed the master key"
# Erase keeps the changed config (as .rpmsave), the keys and the data.
rpm --root "$root" --erase --nodeps hookd
[ ! -e "$root/usr/bin/hookd" ] || fail "rpm -e left the binary"
for kept in etc/hookd/hookd.toml.rpmsave etc/hookd/master.key var/lib/hookd; do
    [ -e "$root/$kept" ] || fail "rpm -e deleted /$kept"
done
rm -rf "$root"

step "packages pass"
echo "package test passed in $((SECONDS - start)) s"
