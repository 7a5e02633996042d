#!/usr/bin/env bash
# A PostgreSQL server for the team's Pulumi state (Pulumi's postgres:// backend), from the Debian
# package `postgresql`, in a directory of its own (.postgres/ unless QBI_PG_DIR says otherwise).
#
#   scripts/postgres.sh start               creates the cluster once (database `qbi`, the state table,
#                                           the administrator role `qbi`), then starts it
#   scripts/postgres.sh stop | status
#   scripts/postgres.sh url [ROLE]          the backend URL for `pulumi login` (Unix socket; no secret in
#                                           it: the password is read from the role's password file)
#   scripts/postgres.sh add-operator NAME   a login role for one more operator: prints its password file
#   scripts/postgres.sh psql [ARG...]       psql as the administrator
#
# Environment:
#   QBI_PG_DIR        the cluster's directory (default <project>/.postgres)
#   QBI_PG_PORT       port (default 5432); also names the Unix socket <dir>/run/.s.PGSQL.<port>
#   QBI_PG_LISTEN     TCP addresses to listen on, comma-separated (default: none, the socket only).
#                     Any address but loopback needs QBI_PG_SSL_CERT and QBI_PG_SSL_KEY: remote
#                     operators are then accepted over TLS only.
#   QBI_PG_THROWAWAY  1: no fsync (tests and benchmarks of a cluster about to be deleted)
#
# PostgreSQL will not run as root: as root the server runs as the `postgres` system user (made by
# the Debian package), which owns the cluster's data; every role logs in with a password.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dir=${QBI_PG_DIR:-$root/.postgres}
port=${QBI_PG_PORT:-5432}
listen=${QBI_PG_LISTEN:-}
die() { printf 'postgres.sh: %s\n' "$*" >&2; exit 1; }

bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
[ -n "$bindir" ] && [ -x "$bindir/pg_ctl" ] || die "PostgreSQL is not installed (the Debian package postgresql; scripts/setup.sh installs it)"

# The user the server runs as, and how to run a command as that user.
if [ "$(id -u)" = 0 ]; then
  server_user=postgres
  getent passwd "$server_user" >/dev/null || die "running as root, but there is no '$server_user' system user to run the server (install the Debian package postgresql)"
  as_server() { runuser -u "$server_user" -- "$@"; }
else
  server_user=$(id -un)
  as_server() { "$@"; }
fi

case "$dir" in /*) ;; *) dir="$PWD/$dir" ;; esac
data=$dir/data
run=$dir/run
logfile=$dir/postgres.log
adminpass=$dir/pgpass

running() { [ -f "$data/postmaster.pid" ] && as_server "$bindir/pg_ctl" status -D "$data" >/dev/null 2>&1; }
socket_url() { # socket_url ROLE PASSFILE
  printf 'postgres://%s@/qbi?host=%s&port=%s&sslmode=disable&passfile=%s\n' "$1" "$run" "$(cat "$dir/port" 2>/dev/null || echo "$port")" "$2"
}
psql_admin() {
  PGPASSFILE=$adminpass "$bindir/psql" -X -q -v ON_ERROR_STOP=1 -h "$run" -p "$(cat "$dir/port")" -U qbi -d qbi "$@"
}
new_password() { head -c 24 /dev/urandom | base64 | tr -d '/+=' ; }

# 1 when QBI_PG_LISTEN names an address other than loopback.
listens_beyond_host() {
  local a addrs=()
  IFS=, read -r -a addrs <<< "$listen"
  for a in "${addrs[@]}"; do case "$a" in 127.*|::1|localhost|'') ;; *) echo 1; return ;; esac; done
  echo 0
}

init_cluster() {
  mkdir -p "$dir"
  as_server test -x "$dir" 2>/dev/null || die "the server runs as the system user '$server_user', which cannot reach $dir: choose a QBI_PG_DIR it can reach (or let it search the parent directories: chmod o+x)"
  local pw pwfile
  pw=$(new_password)
  ( umask 077; printf '*:*:*:qbi:%s\n' "$pw" > "$adminpass" )
  pwfile=$(mktemp "$dir/.pw.XXXXXX")
  printf '%s\n' "$pw" > "$pwfile"
  chown "$server_user" "$pwfile" "$dir"
  chmod 0711 "$dir"
  as_server "$bindir/initdb" -D "$data" -U qbi --pwfile="$pwfile" -A scram-sha-256 -E UTF8 --locale=C \
    ${QBI_PG_THROWAWAY:+--no-sync} --no-instructions >"$dir/initdb.log" 2>&1 \
    || { rm -f "$pwfile"; die "initdb failed: $(tail -n 5 "$dir/initdb.log")"; }
  rm -f "$pwfile"
  echo "include_if_exists = 'qbi.conf'" >> "$data/postgresql.conf"
}

# Settings of this start (port, socket, TCP, TLS, durability) and who may connect from where.
write_settings() {
  local ssl=off hba
  mkdir -p "$run"
  chown "$server_user" "$run"
  chmod 0755 "$run"
  hba="local all all scram-sha-256"$'\n'"host all all 127.0.0.1/32 scram-sha-256"$'\n'"host all all ::1/128 scram-sha-256"
  if [ "$(listens_beyond_host)" = 1 ]; then
    install -o "$server_user" -m 0644 "$QBI_PG_SSL_CERT" "$data/server.crt"
    install -o "$server_user" -m 0600 "$QBI_PG_SSL_KEY" "$data/server.key"
    ssl=on
    hba+=$'\n'"hostssl all all 0.0.0.0/0 scram-sha-256"$'\n'"hostssl all all ::/0 scram-sha-256"
  fi
  printf '%s\n' "$hba" > "$data/pg_hba.conf"
  {
    echo "port = $port"
    echo "unix_socket_directories = '$run'"
    echo "listen_addresses = '$listen'"
    echo "ssl = $ssl"
    echo "password_encryption = 'scram-sha-256'"
    if [ -n "${QBI_PG_THROWAWAY:-}" ]; then echo "fsync = off"; echo "synchronous_commit = off"; echo "full_page_writes = off"; fi
  } > "$data/qbi.conf"
  chown "$server_user" "$data/pg_hba.conf" "$data/qbi.conf"
  echo "$port" > "$dir/port"
}

# The state table (Pulumi's own schema), made here so that it belongs to the group role
# `qbi_state`: every operator role is a member, and none needs to own anything.
init_database() {
  PGPASSFILE=$adminpass "$bindir/createdb" -h "$run" -p "$port" -U qbi qbi
  psql_admin <<'SQL'
DO $$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'qbi_state') THEN CREATE ROLE qbi_state NOLOGIN; END IF;
END $$;
CREATE TABLE IF NOT EXISTS pulumi_state (
  key TEXT PRIMARY KEY,
  data JSON NOT NULL,
  updated_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS pulumi_state_key_prefix_idx ON pulumi_state (key text_pattern_ops);
ALTER TABLE pulumi_state OWNER TO qbi_state;
REVOKE ALL ON DATABASE qbi FROM PUBLIC;
GRANT CONNECT ON DATABASE qbi TO qbi_state;
SQL
}

case "${1:-}" in
  start)
    if running; then echo "PostgreSQL already running in $dir"; exit 0; fi
    if [ "$(listens_beyond_host)" = 1 ] && { [ -z "${QBI_PG_SSL_CERT:-}" ] || [ -z "${QBI_PG_SSL_KEY:-}" ]; }; then
      die "QBI_PG_LISTEN=$listen reaches beyond this host: set QBI_PG_SSL_CERT and QBI_PG_SSL_KEY (the server's TLS certificate and key) so that remote operators connect over TLS"
    fi
    fresh=0
    [ -f "$data/PG_VERSION" ] || { init_cluster; fresh=1; }
    write_settings
    touch "$logfile"; chown "$server_user" "$logfile"
    as_server "$bindir/pg_ctl" start -D "$data" -l "$logfile" -w -t 60 >/dev/null \
      || die "the server did not start: $(tail -n 5 "$logfile")"
    [ "$fresh" = 1 ] && init_database
    echo "PostgreSQL running in $dir (socket $run/.s.PGSQL.$port${listen:+, TCP $listen:$port}); log in with:"
    echo "  pulumi login '$(socket_url qbi "$adminpass")'"
    ;;
  stop)
    if running; then as_server "$bindir/pg_ctl" stop -D "$data" -m fast -w -t 60 >/dev/null; fi
    ;;
  status)
    if running; then echo "running in $dir"; else echo "not running ($dir)"; exit 3; fi
    ;;
  url)
    role=${2:-qbi}
    if [ "$role" = qbi ]; then pass=$adminpass; else pass=$dir/operators/$role.pgpass; fi
    [ -f "$pass" ] || die "no password file for role $role ($pass): scripts/postgres.sh add-operator $role"
    socket_url "$role" "$pass"
    ;;
  add-operator)
    name=${2:-}
    [[ "$name" =~ ^[a-z_][a-z0-9_]{0,30}$ ]] || die "add-operator NAME: a role name of lower-case letters, digits and _ (got '${name}')"
    case "$name" in qbi|qbi_state|postgres|pg_*) die "add-operator $name: that name is reserved" ;; esac
    running || die "the server is not running: scripts/postgres.sh start"
    mkdir -p "$dir/operators"
    pw=$(new_password)
    psql_admin -v name="$name" -v pw="$pw" <<'SQL'
SELECT format('CREATE ROLE %I LOGIN PASSWORD %L IN ROLE qbi_state', :'name', :'pw')
  WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'name') \gexec
SELECT format('ALTER ROLE %I PASSWORD %L', :'name', :'pw') \gexec
SQL
    ( umask 077; printf '*:*:qbi:%s:%s\n' "$name" "$pw" > "$dir/operators/$name.pgpass" )
    echo "operator $name: password file $dir/operators/$name.pgpass (give it to $name; it goes in ~/.pgpass)"
    echo "  pulumi login '$(socket_url "$name" "$dir/operators/$name.pgpass")'"
    ;;
  psql)
    shift
    running || die "the server is not running: scripts/postgres.sh start"
    psql_admin "$@"
    ;;
  *) echo "usage: scripts/postgres.sh start|stop|status|url [ROLE]|add-operator NAME|psql [ARG...]" >&2; exit 2 ;;
esac
