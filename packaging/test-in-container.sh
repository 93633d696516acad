#!/bin/sh
# The package checks that need a running systemd: packaging/test.sh boots a Debian root
# with systemd-nspawn (private network: only loopback) and runs this as a unit, with
# the packages in /ci. Exit status 0 means every check passed.
#   $1  the .deb to install     $2  the same package with a higher version (upgrade)
set -eu

deb=$1
deb_next=$2
config=/etc/hookd/hookd.toml
ca=/etc/hookd/tls/ca.pem
api=https://localhost:8443

step() { printf '\n-- %s\n' "$*"; }
fail() {
    echo "FAIL: $*"
    systemctl --no-pager status hookd.service || true
    journalctl --no-pager -u hookd.service -n 40 || true
    exit 1
}
prop() { systemctl show -P "$1" hookd.service; }
expect_prop() {
    value=$(prop "$1")
    [ "$value" = "$2" ] || fail "hookd.service $1 is '$value', expected '$2'"
}
expect_owner_mode() {
    actual=$(stat -c '%U:%G %a' "$1") || fail "$1 is missing"
    [ "$actual" = "$2" ] || fail "$1 is '$actual', expected '$2'"
}
healthy() {
    code=$(curl -sS --max-time 5 --cacert "$ca" -o /dev/null -w '%{http_code}' "$api/healthz") ||
        fail "/healthz did not answer over TLS"
    [ "$code" = 200 ] || fail "/healthz answered $code"
}
admin() {
    curl -sS --max-time 5 --cacert "$ca" -H "Authorization: Bearer $(cat /etc/hookd/admin.token)" \
        -H 'content-type: application/json' "$@"
}

step "install $deb: the unit starts (Type=notify: active means READY=1 arrived)"
dpkg -i "$deb"
expect_prop ActiveState active
expect_prop UnitFileState enabled
expect_prop Type notify
pid=$(prop MainPID)

step "files: owners and modes"
expect_owner_mode /etc/hookd "root:hookd 750"
expect_owner_mode "$config" "root:hookd 640"
expect_owner_mode /etc/hookd/master.key "root:hookd 640"
expect_owner_mode /etc/hookd/admin.token "root:hookd 640"
expect_owner_mode /etc/hookd/tls "root:hookd 750"
expect_owner_mode /etc/hookd/tls/key.pem "root:hookd 640"
expect_owner_mode /etc/hookd/tls/cert.pem "root:hookd 640"
expect_owner_mode /etc/hookd/tls/ca.key "root:root 600"
expect_owner_mode /var/lib/hookd "hookd:hookd 750"
expect_owner_mode /var/lib/hookd/hookd.redb "hookd:hookd 640"
getent passwd hookd | grep -q ':/var/lib/hookd:/usr/sbin/nologin$' || fail "hookd user: $(getent passwd hookd)"

step "the installed binary accepts the installed config, as root and as hookd"
hookd check-config --config "$config"
runuser -u hookd -- hookd check-config --config "$config"

step "systemd-analyze verify prints nothing"
verify=$(systemd-analyze verify hookd.service 2>&1) || fail "systemd-analyze verify failed: $verify"
[ -z "$verify" ] || fail "systemd-analyze verify printed: $verify"
systemd-analyze security --no-pager hookd.service | tail -n 1

step "/healthz over TLS, trusting the generated CA; the admin token works"
healthy
subscription=$(admin "$api/v1/subscriptions" -d '{"status": "DEACTIVATED", "eventTypes": ["hookd.*"],
    "endpointUrl": "https://receiver.example.com/webhook", "description": "package test"}' |
    sed -n 's/.*"id": *"\(sub_[^"]*\)".*/\1/p')
[ -n "$subscription" ] || fail "could not create a subscription"
echo "created $subscription"

step "systemctl reload keeps the same process running"
systemctl reload hookd.service
sleep 1
[ "$(prop ActiveState)" = active ] && [ "$(prop MainPID)" = "$pid" ] ||
    fail "hookd did not survive the reload's SIGHUP (does hookd handle SIGHUP?)"
healthy

step "a broken config makes the reload fail; the service stays up and healthy"
cp -p "$config" /root/hookd.toml.good
echo 'this is not toml' >>"$config"
if systemctl reload hookd.service; then fail "reload succeeded with a broken config"; fi
sleep 1
expect_prop ActiveState active
expect_prop MainPID "$pid"
healthy

step "a restart with the broken config exits 78 and is not retried"
if systemctl restart hookd.service; then fail "restart succeeded with a broken config"; fi
expect_prop ExecMainStatus 78
expect_prop NRestarts 0
expect_prop ActiveState failed
cp -p /root/hookd.toml.good "$config"
systemctl restart hookd.service
expect_prop ActiveState active
healthy

step "upgrade: the changed config and the data are kept, keys untouched, service restarted"
sed -i 's/^level = "info"$/level = "debug"/' "$config"
keys_before=$(sha256sum /etc/hookd/master.key /etc/hookd/admin.token /etc/hookd/tls/*)
pid=$(prop MainPID)
dpkg -i "$deb_next"
grep -q '^level = "debug"$' "$config" || fail "the upgrade replaced the changed config"
[ ! -e "$config.dpkg-new" ] && [ ! -e "$config.dpkg-dist" ] || fail "the upgrade left a new config beside"
[ "$(sha256sum /etc/hookd/master.key /etc/hookd/admin.token /etc/hookd/tls/*)" = "$keys_before" ] ||
    fail "the upgrade changed a key, the token or the certificate"
expect_prop ActiveState active
[ "$(prop MainPID)" != "$pid" ] || fail "the upgrade did not restart hookd"
healthy
admin -f -o /dev/null "$api/v1/subscriptions/$subscription" || fail "$subscription is gone after the upgrade"

step "remove keeps the config, keys and database; a reinstall serves them again"
dpkg -r hookd
[ ! -e /usr/bin/hookd ] || fail "remove left the binary"
[ "$(prop ActiveState)" != active ] || fail "hookd still runs after remove"
for kept in "$config" /etc/hookd/master.key /etc/hookd/admin.token /var/lib/hookd/hookd.redb; do
    [ -e "$kept" ] || fail "remove deleted $kept"
done
dpkg -i "$deb_next"
expect_prop ActiveState active
healthy
admin -f -o /dev/null "$api/v1/subscriptions/$subscription" || fail "$subscription is gone after a reinstall"

step "purge removes the config, keys and data"
dpkg -P hookd
for gone in /etc/hookd /var/lib/hookd /usr/lib/systemd/system/hookd.service; do
    [ ! -e "$gone" ] || fail "purge left $gone"
done
[ "$(prop LoadState)" = not-found ] || fail "hookd.service is still loaded after purge"

echo
echo "container checks passed"
