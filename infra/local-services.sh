#!/usr/bin/env bash
# The read models' local services: the machine's own PostgreSQL (reporting) and Redis (the order
# cache), which the Lambdas the emulator runs reach on 127.0.0.1 (ElastiCache and RDS need Docker
# in the emulators). Makes sure each is installed (Debian's packages), running, and that the
# reporting database exists; safe to run again.
#
#   infra/local-services.sh up       install if missing, start if stopped, create the database
#   infra/local-services.sh reset    empty the read models (a new database, no cached orders): the
#                                    local deployment does this when the emulator's state is new, so the
#                                    read models never hold orders the emulator has forgotten
#   infra/local-services.sh status   say whether each answers
#
# `up` also starts a second, TLS-only PostgreSQL on 127.0.0.1:$ORDERFLOW_PG_TLS_PORT (5433), its
# certificate issued for `localhost` by a test CA made here (.local/pg-tls/ca.pem): the reporting
# adapter's tests connect to it with `verify-full` to show the server is verified (the name, the
# issuer), as the reporting function does against RDS Proxy or RDS in AWS. And a TLS-only Redis on
# 127.0.0.1:$ORDERFLOW_REDIS_TLS_PORT (6380), its certificate for `localhost` from another test CA
# (.local/redis-tls/ca.pem), for the order cache's `rediss://` tests (ElastiCache's in-transit
# encryption in AWS).
#
# Settings (defaults): ORDERFLOW_PG_PORT (5432), ORDERFLOW_PG_USER (postgres), ORDERFLOW_PG_DB
# (orderflow), ORDERFLOW_REDIS_PORT (6379).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
. "$ROOT/infra/common.sh"
LOG_PREFIX=local-services
PG_PORT="${ORDERFLOW_PG_PORT:-5432}"
PG_USER="${ORDERFLOW_PG_USER:-postgres}"
PG_DB="${ORDERFLOW_PG_DB:-orderflow}"
REDIS_PORT="${ORDERFLOW_REDIS_PORT:-6379}"
PG_TLS_PORT="${ORDERFLOW_PG_TLS_PORT:-5433}"
PG_TLS_DIR="$ROOT/.local/pg-tls"
REDIS_TLS_PORT="${ORDERFLOW_REDIS_TLS_PORT:-6380}"
REDIS_TLS_DIR="$ROOT/.local/redis-tls"

pg_up() { pg_isready -q -h 127.0.0.1 -p "$PG_PORT" 2>/dev/null; }
redis_up() { [ "$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ]; }

apt_install() {
  log "installing $* (Debian packages)"
  if [ "$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
  else sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null; fi
}

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

postgres_up() {
  if ! command -v pg_ctlcluster >/dev/null || ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    apt_install postgresql postgresql-client
    local version; version=$(ls /etc/postgresql | sort -V | tail -1)
    # A fresh Debian cluster asks for passwords over TCP; the local reporting user is trusted on
    # loopback only, as on the machines this project is developed on.
    as_root sed -i -E 's/^(host\s+all\s+all\s+(127\.0\.0\.1\/32|::1\/128)\s+)\S+/\1trust/' \
      "/etc/postgresql/$version/main/pg_hba.conf"
  fi
  if ! pg_up; then
    local version; version=$(ls /etc/postgresql | sort -V | tail -1)
    log "starting PostgreSQL $version"
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start
    await_check pg_up 10 || { log "PostgreSQL does not answer on 127.0.0.1:$PG_PORT"; exit 1; }
  fi
  if ! psql -h 127.0.0.1 -p "$PG_PORT" -U "$PG_USER" -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$PG_DB'" | grep -q 1; then
    log "creating database $PG_DB"
    psql -h 127.0.0.1 -p "$PG_PORT" -U "$PG_USER" -d postgres -qc "CREATE DATABASE $PG_DB"
  fi
}

redis_start() {
  command -v redis-server >/dev/null || apt_install redis-server
  if ! redis_up; then
    log "starting Redis on 127.0.0.1:$REDIS_PORT (nothing kept on disk)"
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port "$REDIS_PORT" --save "" --appendonly no \
      --dir /tmp --logfile /tmp/orderflow-redis.log
    await_check redis_up 10 || { log "Redis does not answer on 127.0.0.1:$REDIS_PORT"; exit 1; }
  fi
}

# A new folder $1 with a test CA, a server certificate for localhost it signed, and another CA (whose
# trust a test shows is not enough).
test_certificates() {
  local d="$1"
  rm -rf "$d" && mkdir -p "$d"
  localhost_certificate "$d" DNS:localhost
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=another CA" \
    -keyout "$d/other-ca.key" -out "$d/other-ca.pem" 2>/dev/null
}

pg_tls_up() { pg_isready -q -h 127.0.0.1 -p "$PG_TLS_PORT" 2>/dev/null; }
pg_tls_down() { ! pg_tls_up; }

# The TLS-only instance: a test CA, a server certificate for localhost, a cluster that takes only
# TLS connections (hostssl), owned by the postgres user (PostgreSQL refuses to run as root).
postgres_tls_up() {
  local bin; bin="/usr/lib/postgresql/$(ls /etc/postgresql | sort -V | tail -1)/bin"
  local d="$PG_TLS_DIR" other
  if pg_tls_up; then
    other=$(psql "host=127.0.0.1 port=$PG_TLS_PORT user=postgres dbname=postgres sslmode=require" -tAc "SHOW data_directory" 2>/dev/null || true)
    [ "$other" = "$d/data" ] && return 0
    # Another checkout's instance (its CA is not ours): stop it, start ours.
    if [ -n "$other" ]; then
      log "stopping the TLS PostgreSQL of $other"
      as_root runuser -u postgres -- "$bin/pg_ctl" -D "$other" -m fast -w stop >/dev/null || true
    fi
    if pg_tls_up; then
      # Its data directory unreadable (its checkout deleted under it, as a finished CI clone's
      # is): stop the server by what it listens on, as pg_ctl's fast stop does (SIGINT).
      local pid
      pid=$(pgrep -o -u postgres -f -- "-p $PG_TLS_PORT( |$)" || true)
      [ -n "$pid" ] || { log "something else answers on 127.0.0.1:$PG_TLS_PORT: stop it, or set ORDERFLOW_PG_TLS_PORT"; exit 1; }
      log "stopping the TLS PostgreSQL on 127.0.0.1:$PG_TLS_PORT (process $pid), its data directory unknown"
      as_root kill -INT "$pid"
      await_check pg_tls_down 10 || { log "the TLS PostgreSQL on 127.0.0.1:$PG_TLS_PORT does not stop"; exit 1; }
    fi
  fi
  if [ ! -f "$d/data/PG_VERSION" ]; then
    log "making the TLS-only PostgreSQL in $d (test CA, certificate for localhost)"
    test_certificates "$d"
    chmod 600 "$d/server.key"
    as_root chown -R postgres:postgres "$d"
    as_root runuser -u postgres -- "$bin/initdb" -D "$d/data" -A trust -U postgres >/dev/null
    printf 'hostssl all all 127.0.0.1/32 trust\nhostssl all all ::1/128 trust\n' | as_root tee "$d/data/pg_hba.conf" >/dev/null
  fi
  log "starting the TLS-only PostgreSQL on 127.0.0.1:$PG_TLS_PORT"
  as_root runuser -u postgres -- "$bin/pg_ctl" -D "$d/data" -l "$d/server.log" -w start -o \
    "-p $PG_TLS_PORT -k /tmp -c listen_addresses=127.0.0.1 -c ssl=on -c ssl_cert_file=$d/server.pem -c ssl_key_file=$d/server.key" >/dev/null
  await_check pg_tls_up 10 || { log "the TLS PostgreSQL does not answer on 127.0.0.1:$PG_TLS_PORT"; exit 1; }
}

redis_tls_ours() {
  [ "$(redis-cli --tls --cacert "$REDIS_TLS_DIR/ca.pem" -h localhost -p "$REDIS_TLS_PORT" ping 2>/dev/null)" = PONG ]
}

# The TLS-only Redis: no plain port, no client certificates asked for (ElastiCache asks none).
redis_tls_up() {
  local d="$REDIS_TLS_DIR"
  [ -f "$d/server.pem" ] && redis_tls_ours && return 0
  if [ "$(redis-cli --tls --insecure -h 127.0.0.1 -p "$REDIS_TLS_PORT" ping 2>/dev/null)" = PONG ]; then
    # Another checkout's instance (its CA is not ours): stop it, start ours.
    log "stopping the TLS Redis another checkout started on 127.0.0.1:$REDIS_TLS_PORT"
    redis-cli --tls --insecure -h 127.0.0.1 -p "$REDIS_TLS_PORT" shutdown nosave >/dev/null 2>&1 || true
  fi
  if [ ! -f "$d/server.pem" ]; then
    log "making the TLS-only Redis's certificates in $d (test CA, certificate for localhost)"
    test_certificates "$d"
  fi
  log "starting the TLS-only Redis on 127.0.0.1:$REDIS_TLS_PORT"
  redis-server --daemonize yes --bind 127.0.0.1 --port 0 --tls-port "$REDIS_TLS_PORT" \
    --tls-cert-file "$d/server.pem" --tls-key-file "$d/server.key" --tls-ca-cert-file "$d/ca.pem" \
    --tls-auth-clients no --save "" --appendonly no --dir /tmp --logfile /tmp/orderflow-redis-tls.log \
    --pidfile /tmp/orderflow-redis-tls.pid
  await_check redis_tls_ours 10 || { log "the TLS Redis does not answer on 127.0.0.1:$REDIS_TLS_PORT"; exit 1; }
}

case "${1:-up}" in
  up)
    postgres_up
    postgres_tls_up
    redis_start
    redis_tls_up
    log "PostgreSQL 127.0.0.1:$PG_PORT (database $PG_DB) and Redis 127.0.0.1:$REDIS_PORT are up"
    ;;
  reset)
    postgres_up
    redis_start
    log "emptying the read models: database $PG_DB recreated, cached orders deleted"
    psql -h 127.0.0.1 -p "$PG_PORT" -U "$PG_USER" -d postgres -qc "DROP DATABASE IF EXISTS $PG_DB WITH (FORCE)"
    psql -h 127.0.0.1 -p "$PG_PORT" -U "$PG_USER" -d postgres -qc "CREATE DATABASE $PG_DB"
    redis-cli -h 127.0.0.1 -p "$REDIS_PORT" --scan --pattern 'orderflow:order:*' |
      xargs -r -n 100 redis-cli -h 127.0.0.1 -p "$REDIS_PORT" del >/dev/null
    ;;
  status)
    pg_up && echo "PostgreSQL: up" || echo "PostgreSQL: down"
    pg_tls_up && echo "PostgreSQL (TLS only): up" || echo "PostgreSQL (TLS only): down"
    redis_tls_ours && echo "Redis (TLS only): up" || echo "Redis (TLS only): down"
    redis_up && echo "Redis: up" || echo "Redis: down"
    ;;
  *) echo "usage: $0 up|reset|status" >&2; exit 2 ;;
esac
