# Sourced by .ci/run: installs and starts the services tests need and
# exports where they are. PostgreSQL runs as a throwaway cluster in a
# temporary directory on a loopback port.
set -euo pipefail

need_apt=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need_apt+=(postgresql)
command -v ip >/dev/null 2>&1 || need_apt+=(iproute2) # network namespaces of the LAN discovery tests
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium fonts-dejavu-core) # the web pages' browser tests
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server) # the Redis sequencer and bus tests start their own
# Real discovery software of the LAN bridge tests (roomnet/lan).
command -v avahi-daemon >/dev/null 2>&1 || need_apt+=(avahi-daemon)
command -v avahi-browse >/dev/null 2>&1 || need_apt+=(avahi-utils)
command -v dbus-daemon >/dev/null 2>&1 || need_apt+=(dbus)
command -v nmbd >/dev/null 2>&1 || need_apt+=(samba)
command -v nmblookup >/dev/null 2>&1 || need_apt+=(samba-common-bin)
command -v gssdp-discover >/dev/null 2>&1 || need_apt+=(gupnp-tools)
command -v socat >/dev/null 2>&1 || need_apt+=(socat)
command -v nft >/dev/null 2>&1 || need_apt+=(nftables) # the NAT lab's routers (roomnettest/netlab)
command -v miniupnpd >/dev/null 2>&1 || [ -x /usr/sbin/miniupnpd ] || need_apt+=(miniupnpd) # the NAT lab's port-mapping routers (UPnP, NAT-PMP, PCP)
command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || need_apt+=(haproxy) # deploy/haproxy.cfg in front of several nodes (chat/clustertest)
if [ ${#need_apt[@]} -gt 0 ]; then
	echo "== apt-get install ${need_apt[*]}"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
# A throwaway cluster of an earlier run on this machine still holds the
# port (the tests exec away, so nothing stops it): stop it first.
for old in /tmp/roomnet-pg.*/data; do
	[ -f "$old/postmaster.pid" ] && su postgres -s /bin/sh -c "'$pgbin/pg_ctl' -D '$old' -m immediate stop >/dev/null 2>&1" || true
done
pgdir=$(mktemp -d /tmp/roomnet-pg.XXXXXX)
chown postgres "$pgdir"
pgport=55432
echo "== postgres $("$pgbin/postgres" --version) on 127.0.0.1:$pgport"
su postgres -s /bin/sh -c "'$pgbin/initdb' -D '$pgdir/data' -A trust -U postgres >/dev/null"
su postgres -s /bin/sh -c "'$pgbin/pg_ctl' -D '$pgdir/data' -l '$pgdir/log' -w -o \"-p $pgport -k $pgdir -c listen_addresses=127.0.0.1 -c fsync=off\" start >/dev/null"
export ROOMNET_TEST_POSTGRES="postgres://postgres@127.0.0.1:$pgport/postgres?sslmode=disable"

# The browser tests must run here, not skip.
export ROOMNET_TEST_REQUIRE_BROWSER=1
# The Redis tests start private redis-server instances; they must run here.
export ROOMNET_TEST_REQUIRE_REDIS=1
# The HAProxy test (chat/clustertest) must run here, not skip.
export ROOMNET_TEST_REQUIRE_HAPROXY=1
# Debian's package starts a system redis-server on 6379 that no test uses.
if command -v systemctl >/dev/null 2>&1; then systemctl stop redis-server >/dev/null 2>&1 || true; fi
# Likewise its haproxy (the test runs its own from deploy/haproxy.cfg).
if command -v systemctl >/dev/null 2>&1; then systemctl stop haproxy >/dev/null 2>&1 || true; fi
# And its miniupnpd, which would map ports on this machine's own network:
# the NAT lab runs one per router namespace.
if command -v systemctl >/dev/null 2>&1; then systemctl stop miniupnpd >/dev/null 2>&1 || true; systemctl disable miniupnpd >/dev/null 2>&1 || true; fi
echo "== $(chromium --version 2>/dev/null || echo 'chromium missing')"
# Screenshots of the browser tests are kept as test artifacts.
export ROOMNET_TEST_ARTIFACTS="${ROOMNET_TEST_ARTIFACTS:-$(mktemp -d /tmp/roomnet-artifacts.XXXXXX)}"
echo "== test artifacts (screenshots) in $ROOMNET_TEST_ARTIFACTS"
# The LAN discovery tests and the NAT lab (network namespaces, real software) must run here, not skip.
export ROOMNET_TEST_REQUIRE_LAN=1

# The Node.js example launcher's test must run here, not skip (Node 20.10+).
command -v node >/dev/null 2>&1 || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs >/dev/null; }
export ROOMNET_TEST_REQUIRE_NODE=1
echo "== node $(node --version 2>/dev/null || echo 'missing')"
