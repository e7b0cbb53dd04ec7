#!/usr/bin/env bash
# A private one-node SLURM cluster on localhost (munge + mariadb + slurmdbd + slurmctld + slurmd), for tests.
#   tests/slurm/cluster.sh start DIR   # needs root and Debian's slurm-wlm slurmdbd munge mariadb-server
#   tests/slurm/cluster.sh stop DIR    # stops every daemon it started, by PID
# Clients then need: export SLURM_CONF=DIR/slurm.conf
set -euo pipefail
cmd=${1:?start|stop}; D=$(realpath -m "${2:?cluster dir}")

stop() {
  # A failed test may leave jobs running: cancel them first, so no job step outlives the cluster.
  if [[ -f $D/slurmctld.pid ]]; then
    export SLURM_CONF="$D/slurm.conf"
    scancel --full --user="$(id -un)" 2>/dev/null || true
    wait_for 20 bash -c '[[ -z $(squeue -h 2>/dev/null) ]]' || true
  fi
  for name in slurmd slurmctld slurmdbd mariadb munged; do
    pidfile="$D/$name.pid"; [[ -f $pidfile ]] || continue
    pid=$(cat "$pidfile"); kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true; rm -f "$pidfile"
  done
}

wait_for() {  # wait_for SECONDS COMMAND...
  local limit=$1; shift
  for _ in $(seq $((limit * 10))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "timed out waiting for: $*" >&2; return 1
}

start() {
  mkdir -p "$D"/{munge,state,spool,mysql}; chmod 755 "$D"
  base=$((20000 + RANDOM % 20000)); CTLD=$base; SLURMD=$((base + 1)); DBD=$((base + 2)); DB=$((base + 3))
  sock="$D/munge/munge.socket.2"

  # munge: private key and socket; the socket dir must be world-traversable.
  chown munge: "$D/munge"; chmod 755 "$D/munge"
  dd if=/dev/urandom of="$D/munge/munge.key" bs=1 count=1024 status=none
  chown munge: "$D/munge/munge.key"; chmod 400 "$D/munge/munge.key"
  runuser -u munge -- munged --socket="$sock" --key-file="$D/munge/munge.key" --pid-file="$D/munge/munged.pid" \
    --log-file="$D/munge/munged.log" --seed-file="$D/munge/munged.seed"
  wait_for 10 test -S "$sock"; cp "$D/munge/munged.pid" "$D/munged.pid"

  # mariadb on 127.0.0.1 for slurmdbd (accounting lets submitit see jobs that end without a result).
  mariadb-install-db --user=root --datadir="$D/mysql" --auth-root-authentication-method=normal >"$D/mariadb-install.log" 2>&1
  setsid mariadbd --user=root --datadir="$D/mysql" --socket="$D/mysql.sock" --port=$DB --bind-address=127.0.0.1 \
    --pid-file="$D/mariadb.pid" --log-error="$D/mariadb.log" --skip-name-resolve </dev/null >/dev/null 2>&1 &
  wait_for 30 mariadb --socket="$D/mysql.sock" -u root -e "select 1"
  mariadb --socket="$D/mysql.sock" -u root -e "CREATE USER 'slurm'@'%' IDENTIFIED BY 'slurm';
    GRANT ALL ON *.* TO 'slurm'@'%'; FLUSH PRIVILEGES;"

  cat >"$D/slurmdbd.conf" <<CONF
AuthType=auth/munge
AuthInfo=socket=$sock
DbdHost=localhost
DbdPort=$DBD
SlurmUser=root
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB
StorageUser=slurm
StoragePass=slurm
StorageLoc=ftlab_acct
PidFile=$D/slurmdbd.pid
LogFile=$D/slurmdbd.log
CONF
  chmod 600 "$D/slurmdbd.conf"
  export SLURM_CONF="$D/slurm.conf"  # slurmdbd reads slurmdbd.conf next to it

  cat >"$D/slurm.conf" <<CONF
ClusterName=ftlab
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$CTLD
SlurmdPort=$SLURMD
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$sock
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
KillWait=5
JobRequeue=1
StateSaveLocation=$D/state
SlurmdSpoolDir=$D/spool
SlurmctldPidFile=$D/slurmctld.pid
SlurmdPidFile=$D/slurmd.pid
SlurmctldLogFile=$D/slurmctld.log
SlurmdLogFile=$D/slurmd.log
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=$DBD
AccountingStoragePass=$sock
JobAcctGatherType=jobacct_gather/none
NodeName=localhost NodeHostname=localhost NodeAddr=127.0.0.1 CPUs=$(nproc) RealMemory=16000 State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF
  slurmdbd
  wait_for 30 sacctmgr -i add cluster ftlab
  slurmctld -f "$SLURM_CONF"
  slurmd -f "$SLURM_CONF" -N localhost
  wait_for 30 bash -c "sinfo -h -o %T | grep -q idle"
  echo "SLURM_CONF=$SLURM_CONF"
}

case $cmd in
  start) start || { stop; exit 1; } ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop DIR" >&2; exit 2 ;;
esac
