#!/usr/bin/env bash
# Makes sure PostgreSQL (127.0.0.1:5432) and RabbitMQ (127.0.0.1:5672) answer, starting them
# when they are installed but stopped, installing them from Debian's packages when they are
# missing (as root), or using docker compose where Docker runs.
set -euo pipefail
cd "$(dirname "$0")/.."

up() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for() { # port name seconds
  for _ in $(seq 1 "$3"); do up "$1" && return 0; sleep 1; done
  echo "error: $2 is not answering on 127.0.0.1:$1" >&2
  return 1
}

have_docker() { command -v docker >/dev/null && docker info >/dev/null 2>&1; }

apt_install() {
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing $* from Debian's packages"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
  else
    return 1
  fi
}

ensure_postgres() {
  up 5432 && return 0
  if ! command -v pg_ctlcluster >/dev/null && ! have_docker; then
    apt_install postgresql || true
  fi
  if command -v pg_ctlcluster >/dev/null; then
    version=$(ls /etc/postgresql | sort -V | tail -n 1)
    echo "starting PostgreSQL $version"
    pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    # Local development uses trust auth on loopback, as the defaults expect.
    hba="/etc/postgresql/$version/main/pg_hba.conf"
    if [ -w "$hba" ] && ! grep -q '^host all all 127.0.0.1/32 trust' "$hba"; then
      sed -i '1i host all all 127.0.0.1/32 trust' "$hba"
      pg_ctlcluster --skip-systemctl-redirect "$version" main reload || true
    fi
  elif have_docker; then
    docker compose up -d postgres
  else
    echo "error: PostgreSQL is not running and cannot be started here" >&2
    return 1
  fi
  wait_for 5432 PostgreSQL 60
}

# Debian's wrapper starts the node through `su`, whose PAM limits leave it 1024 open files:
# too few for many quorum queues. As root, start it directly with a higher limit.
start_rabbitmq_server() {
  if [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null && [ -x /usr/lib/rabbitmq/bin/rabbitmq-server ]; then
    (ulimit -Sn "$(ulimit -Hn)" 2>/dev/null || true
     cd /var/lib/rabbitmq && HOME=/var/lib/rabbitmq exec setpriv --reuid=rabbitmq --regid=rabbitmq \
       --init-groups /usr/lib/rabbitmq/bin/rabbitmq-server -detached) || rabbitmq-server -detached || true
  else
    rabbitmq-server -detached || true
  fi
}

# A node started by Debian's wrapper (or before this script) may run with 1024 open files; its
# file-handle cache then fills under many quorum queues and it stops accepting connections.
# As root, restart such a node with the higher limit.
rabbitmq_fd_limit_low() {
  local pid
  pid=$(pgrep -u rabbitmq -f beam.smp | head -n 1) || return 1
  [ -n "$pid" ] && [ "$(id -u)" = 0 ] || return 1
  local soft
  soft=$(awk '/^Max open files/ {print $4}' "/proc/$pid/limits" 2>/dev/null) || return 1
  [ -n "$soft" ] && [ "$soft" != unlimited ] && [ "$soft" -lt 4096 ]
}

ensure_rabbitmq() {
  if up 5672 && rabbitmq_fd_limit_low; then
    echo "restarting RabbitMQ with a higher open-file limit"
    rabbitmqctl stop >/dev/null 2>&1 || true
    for _ in $(seq 1 30); do up 5672 || break; sleep 1; done
  fi
  up 5672 && return 0
  if ! command -v rabbitmq-server >/dev/null && ! have_docker; then
    apt_install rabbitmq-server || true
  fi
  if command -v rabbitmq-server >/dev/null; then
    echo "starting RabbitMQ"
    start_rabbitmq_server
    timeout 120 rabbitmqctl await_startup >/dev/null 2>&1 || true
  elif have_docker; then
    docker compose up -d rabbitmq
  else
    echo "error: RabbitMQ is not running and cannot be started here" >&2
    return 1
  fi
  wait_for 5672 RabbitMQ 120
}

# The management API (queue depths for metrics and the status API); enabling works offline.
ensure_rabbitmq_management() {
  up 15672 && return 0
  if command -v rabbitmq-plugins >/dev/null; then
    echo "enabling the RabbitMQ management plugin"
    rabbitmq-plugins enable rabbitmq_management >/dev/null
    wait_for 15672 "RabbitMQ management API" 60
  else
    echo "warning: RabbitMQ management API not on :15672; queue depths will be missing" >&2
  fi
}

ensure_postgres
ensure_rabbitmq
ensure_rabbitmq_management
echo "PostgreSQL and RabbitMQ are up"
