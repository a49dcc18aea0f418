# Sourced by .ci/run: installs and starts the services tests need and
# exports where they are. PostgreSQL runs as a throwaway cluster in a
# temporary directory on a loopback port.
set -euo pipefail

need_apt=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need_apt+=(postgresql)
command -v ip >/dev/null 2>&1 || need_apt+=(iproute2) # network namespaces of the LAN discovery tests
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium fonts-dejavu-core) # the web pages' browser tests
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
echo "== $(chromium --version 2>/dev/null || echo 'chromium missing')"
# Screenshots of the browser tests are kept as test artifacts.
export ROOMNET_TEST_ARTIFACTS="${ROOMNET_TEST_ARTIFACTS:-$(mktemp -d /tmp/roomnet-artifacts.XXXXXX)}"
echo "== test artifacts (screenshots) in $ROOMNET_TEST_ARTIFACTS"
