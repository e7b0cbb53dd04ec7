#!/usr/bin/env bash
# A private SLURM cluster on this machine (munge + mariadb + slurmdbd + slurmctld + slurmd), for tests.
#   tests/slurm/cluster.sh start DIR      # one node: localhost. Needs root and Debian's slurm-wlm slurmdbd munge
#                                         # mariadb-server
#   tests/slurm/cluster.sh start DIR 2    # two nodes, node1 and node2: each slurmd in its own network namespace
#                                         # (own address on a private bridge, own hostname), the controller on the host
#   tests/slurm/cluster.sh stop DIR       # stops every daemon it started (by PID) and removes the namespaces
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
  for pidfile in "$D"/slurmd*.pid "$D"/{slurmctld,slurmdbd,mariadb,munged}.pid; do
    [[ -f $pidfile ]] || continue
    pid=$(cat "$pidfile"); kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true; rm -f "$pidfile"
  done
  if [[ -f $D/network ]]; then  # bridge name, then the namespaces
    read -r bridge namespaces <"$D/network"
    for ns in $namespaces; do ip netns del "$ns" 2>/dev/null || true; rm -rf "/etc/netns/$ns"; done
    ip link del "$bridge" 2>/dev/null || true
    rm -f "$D/network"
  fi
}

network() {  # network NODES: a bridge with the host at .1 and one namespace per node at .2, .3, ...
  local id=$((base % 10000)) i
  bridge="ftbr$id"; subnet="10.$((100 + RANDOM % 100)).$((RANDOM % 250)).0"; prefix=${subnet%.0}
  ip link add "$bridge" type bridge
  ip addr add "$prefix.1/24" dev "$bridge"
  ip link set "$bridge" up
  local hosts="127.0.0.1 localhost"$'\n'"$prefix.1 ftlab-controller"
  for i in $(seq "$1"); do hosts+=$'\n'"$prefix.$((i + 1)) node$i"; done
  namespaces=""
  for i in $(seq "$1"); do
    local ns="ftn$id-$i" host="ftv$id-$i"
    ip netns add "$ns"; namespaces+=" $ns"
    echo "$bridge$namespaces" >"$D/network"  # so that stop cleans up whatever exists so far
    ip link add "$host" type veth peer name eth0 netns "$ns"
    ip link set "$host" master "$bridge" up
    ip netns exec "$ns" ip addr add "$prefix.$((i + 1))/24" dev eth0
    ip netns exec "$ns" ip link set eth0 up
    ip netns exec "$ns" ip link set lo up
    ip netns exec "$ns" ip route add default via "$prefix.1"
    # The nodes' /etc/hosts (bound in place when their slurmd starts): they find each other, and DDP its master.
    mkdir -p "/etc/netns/$ns"; echo "$hosts" >"/etc/netns/$ns/hosts"
  done
}

wait_for() {  # wait_for SECONDS COMMAND...
  local limit=$1; shift
  for _ in $(seq $((limit * 10))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "timed out waiting for: $*" >&2; return 1
}

start() {
  local nodes=${1:-1}
  mkdir -p "$D"/{munge,state,spool,mysql}; chmod 755 "$D"
  base=$((20000 + RANDOM % 20000)); CTLD=$base; SLURMD=$((base + 1)); DBD=$((base + 2)); DB=$((base + 3))
  sock="$D/munge/munge.socket.2"

  # munge: private key and socket; the socket dir must be world-traversable.
  chown munge: "$D/munge"; chmod 755 "$D/munge"
  dd if=/dev/urandom of="$D/munge/munge.key" bs=1 count=1024 status=none
  chown munge: "$D/munge/munge.key"; chmod 400 "$D/munge/munge.key"
  runuser -u munge -- munged --socket="$sock" --key-file="$D/munge/munge.key" --pid-file="$D/munge/munged.pid" \
    --log-file="$D/munge/munged.log" --seed-file="$D/munge/munged.seed"
  wait_for 10 test -S "$sock" || return 1; cp "$D/munge/munged.pid" "$D/munged.pid"

  # mariadb on 127.0.0.1 for slurmdbd (accounting lets submitit see jobs that end without a result).
  mariadb-install-db --user=root --datadir="$D/mysql" --auth-root-authentication-method=normal >"$D/mariadb-install.log" 2>&1
  setsid mariadbd --user=root --datadir="$D/mysql" --socket="$D/mysql.sock" --port=$DB --bind-address=127.0.0.1 \
    --pid-file="$D/mariadb.pid" --log-error="$D/mariadb.log" --skip-name-resolve </dev/null >/dev/null 2>&1 &
  wait_for 30 mariadb --socket="$D/mysql.sock" -u root -e "select 1" || return 1
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

  if (( nodes > 1 )); then
    network "$nodes"
    controller="localhost($prefix.1)"  # the nodes reach the controller on the bridge
    node_lines=""; for i in $(seq "$nodes"); do
      node_lines+="NodeName=node$i NodeHostname=node$i NodeAddr=$prefix.$((i + 1)) CPUs=$(nproc) RealMemory=8000 State=UNKNOWN"$'\n'
    done
    partition_nodes="node[1-$nodes]"
  else
    controller=localhost
    node_lines="NodeName=localhost NodeHostname=localhost NodeAddr=127.0.0.1 CPUs=$(nproc) RealMemory=16000 State=UNKNOWN"
    partition_nodes=localhost
  fi
  cat >"$D/slurm.conf" <<CONF
ClusterName=ftlab
SlurmctldHost=$controller
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
SlurmdSpoolDir=$D/spool/%n
SlurmctldPidFile=$D/slurmctld.pid
SlurmdPidFile=$D/slurmd.%n.pid
SlurmctldLogFile=$D/slurmctld.log
SlurmdLogFile=$D/slurmd.%n.log
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=$DBD
AccountingStoragePass=$sock
JobAcctGatherType=jobacct_gather/none
$node_lines
PartitionName=debug Nodes=$partition_nodes Default=YES MaxTime=INFINITE State=UP
CONF
  slurmdbd
  wait_for 30 sacctmgr -i add cluster ftlab || return 1
  slurmctld -f "$SLURM_CONF"
  if (( nodes > 1 )); then
    for i in $(seq "$nodes"); do  # each slurmd (and so each job step on it) in its node's namespace, with its name
      mkdir -p "$D/spool/node$i"
      # nsenter, not `ip netns exec`, which remounts /sys without the cgroup mounts slurmd needs; the hosts file of
      # the namespace is bound over /etc/hosts in a private mount namespace, as `ip netns exec` would.
      ns="ftn$((base % 10000))-$i"
      nsenter --net="/run/netns/$ns" unshare --uts --mount sh -c \
        "mount --bind /etc/netns/$ns/hosts /etc/hosts && hostname node$i && exec slurmd -f '$SLURM_CONF' -N node$i"
    done
    wait_for 60 bash -c "[[ \$(sinfo -h -N -o %T | grep -c idle) == $nodes ]]" || return 1
  else
    mkdir -p "$D/spool/localhost"
    slurmd -f "$SLURM_CONF" -N localhost
    wait_for 30 bash -c "sinfo -h -o %T | grep -q idle" || return 1
  fi
  echo "SLURM_CONF=$SLURM_CONF"
}

case $cmd in
  start) start "${3:-1}" || { stop; exit 1; } ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop DIR" >&2; exit 2 ;;
esac
