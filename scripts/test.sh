#!/usr/bin/env bash
# Installs everything the tests need on a fresh Debian machine, starts the services they use,
# then runs the whole suite. Extra arguments go to pytest (e.g. `bash scripts/test.sh tests/api -x`).
set -euo pipefail
cd "$(dirname "$0")/.."

sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
as_postgres() { if [ "$(id -u)" -eq 0 ]; then su postgres -c "$1"; else sudo -u postgres sh -c "$1"; fi; }

# Debian packages: Go and govmomi's simulator library (the vSphere tests build a vCenter simulator
# from them), PostgreSQL (the state layer's tests also run on it, to keep the code portable) and
# Chromium (the dashboard's page runs in it, headless, driven over the DevTools protocol).
if ! command -v go >/dev/null 2>&1 || [ ! -d /usr/share/gocode/src/github.com/vmware/govmomi/simulator ] \
   || ! command -v pg_lsclusters >/dev/null 2>&1 || ! command -v chromium >/dev/null 2>&1; then
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq golang-go golang-github-vmware-govmomi-dev \
    postgresql chromium >/dev/null
fi
export VMPOOLER_REQUIRE_CHROMIUM=1  # the browser tests fail, rather than skip, without it

# OpenLDAP's slapd and the ldap tools: the LDAP tests start their own slapd on loopback (a free port,
# a throw-away config), never the system instance; openssl makes their test certificates.
if ! command -v slapd >/dev/null 2>&1 && [ ! -x /usr/sbin/slapd ] || ! command -v openssl >/dev/null 2>&1; then
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq slapd ldap-utils openssl >/dev/null
fi

# Redis: `vmpooler db import-redis` is tested against a real redis-server (each test starts its own
# on a free loopback port, without persistence), filled the way the original vmpooler fills it.
if ! command -v redis-server >/dev/null 2>&1; then
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq redis-server >/dev/null
fi

# --- DNS (h/dns) ---------------------------------------------------------------------------------
# BIND 9's named: the DNS tests start their own named on loopback (a free port, a throw-away config
# and zones, a TSIG key of their own), never the system instance. dnspython comes with setup.py.
if ! command -v named >/dev/null 2>&1 && [ ! -x /usr/sbin/named ]; then
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq bind9 >/dev/null
fi
# --- end DNS ---------------------------------------------------------------------------------------

# Fault tests (issue 18 items 3, 4, 9): the sqlite3 shell holds a database's write lock from a
# process of its own; chattr (e2fsprogs) makes a database file immutable.
if ! command -v sqlite3 >/dev/null 2>&1 || ! command -v chattr >/dev/null 2>&1; then
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq sqlite3 e2fsprogs >/dev/null
fi

# --- libvirt (h/libvirt) -------------------------------------------------------------------------
# libvirt with QEMU, and what builds the tests' tiny guest (busybox, dropbear, a Debian kernel that
# is downloaded, not installed): the libvirt tests start their own libvirtd in network and mount
# namespaces of their own (tests/libvirt/lab.py), never the system's; libvirt-dev, pkg-config, gcc and
# python3-dev build libvirt-python for the virtualenv.
if ! command -v libvirtd >/dev/null 2>&1 && [ ! -x /usr/sbin/libvirtd ] || ! command -v qemu-system-x86_64 >/dev/null 2>&1 \
   || ! command -v dbclient >/dev/null 2>&1 || ! command -v ip >/dev/null 2>&1 \
   || ! pkg-config --exists libvirt 2>/dev/null; then
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq libvirt-daemon-system libvirt-clients \
    qemu-system-x86 qemu-utils dnsmasq-base iptables iproute2 busybox-static dropbear-bin cpio kmod e2fsprogs \
    libvirt-dev pkg-config gcc python3-dev >/dev/null
fi
export VMPOOLER_REQUIRE_LIBVIRT=1  # the libvirt tests fail, rather than skip, without their lab
# --- end libvirt -----------------------------------------------------------------------------------

# PostgreSQL on this machine's loopback, with a throw-away role and database for the tests.
if command -v service >/dev/null 2>&1; then
  $sudo service postgresql start >/dev/null
else
  read -r pg_version pg_cluster _ < <(pg_lsclusters -h | head -n 1)
  $sudo pg_ctlcluster "$pg_version" "$pg_cluster" start || true  # "already running" is fine
fi
for _ in $(seq 30); do as_postgres "psql -tAc 'SELECT 1'" >/dev/null 2>&1 && break; sleep 1; done
as_postgres "psql -tAc \"SELECT 1 FROM pg_roles WHERE rolname = 'vmpooler_test'\"" | grep -q 1 \
  || as_postgres "psql -qc \"CREATE ROLE vmpooler_test LOGIN PASSWORD 'vmpooler_test'\""
as_postgres "psql -tAc \"SELECT 1 FROM pg_database WHERE datname = 'vmpooler_test'\"" | grep -q 1 \
  || as_postgres "createdb -O vmpooler_test vmpooler_test"
export VMPOOLER_TEST_POSTGRES_URL="postgresql://vmpooler_test:vmpooler_test@127.0.0.1/vmpooler_test"

python3 -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check -e '.[test]'

# Types: mypy over vmpooler/ (its settings in mypy.ini); any error fails the run before the tests.
.venv/bin/mypy --config-file mypy.ini

exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
