#!/usr/bin/env bash
# Start a throw-away single-node Slurm cluster on this machine without systemd:
#   munged + slurmctld + slurmd  (+ optionally MariaDB + slurmdbd for real `sacct`)
# Every file (config, keys, sockets, state, logs, pid files) lives under one directory;
# /etc/slurm, /etc/munge and /run/munge are not used or touched.
#
# Packages (Debian 12 bookworm, as root; Slurm 22.05.8, MUNGE 0.5.15, MariaDB 10.11):
#   apt-get update
#   apt-get install -y --no-install-recommends munge slurmctld slurmd slurm-client
#   apt-get install -y --no-install-recommends mariadb-server slurmdbd               # only for SLURM_LOCAL_DBD=1
#
# The tests run it with SLURM_LOCAL_DIR=/tmp/slayer-test-slurm (tests/slurm.rs).
# Usage (as root):
#   bash slurm-up.sh          # (re)start from a clean state; prints the SLURM_CONF to export
#   bash slurm-up.sh down     # stop the daemons it started (by their pid files), remove the dir
# Knobs (environment):
#   SLURM_LOCAL_DIR=/tmp/slurm-local   where everything lives
#   SLURM_LOCAL_DBD=1                  also start MariaDB (127.0.0.1:3307) + slurmdbd -> real sacct
#   SLURM_LOCAL_GPUS=N                 advertise N fake GPUs (gres/gpu backed by /dev/null-like char devs)
# Clients (sbatch, squeue, sacct, scontrol, scancel, srun) must run with SLURM_CONF=$DIR/etc/slurm.conf.
set -euo pipefail

D=${SLURM_LOCAL_DIR:-/tmp/slurm-local}
DBD=${SLURM_LOCAL_DBD:-0}
GPUS=${SLURM_LOCAL_GPUS:-0}
CONF=$D/etc/slurm.conf
export SLURM_CONF=$CONF

stop_pidfile() { # stop the daemon whose pid is in file $1 and wait until it has exited
  local f=$1 pid
  [ -s "$f" ] || return 0
  pid=$(cat "$f")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$f"
}

down() {
  stop_pidfile "$D/run/slurmd.pid"
  stop_pidfile "$D/run/slurmctld.pid"
  stop_pidfile "$D/run/slurmdbd.pid"
  stop_pidfile "$D/mysql/mysqld.pid"
  stop_pidfile "$D/munge/munged.pid"
  rm -rf "$D"
}

wait_for() { # wait_for TENTHS_OF_SECONDS CMD... : poll until CMD succeeds
  local n=$1; shift
  for _ in $(seq "$n"); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  return 1
}

fail() {
  echo "slurm-local: $*; logs in $D/log/" >&2
  tail -n 15 "$D"/log/*.log >&2 || true
  exit 1
}

if [ "${1:-up}" = down ]; then down; echo "slurm-local: stopped, $D removed"; exit 0; fi

down   # always start from a clean slate
t0=$(date +%s.%N)

HOST=$(hostname -s)
CPUS=$(nproc)
# RealMemory must not exceed what slurmd detects (`slurmd -C`), else the node is drained "Low RealMemory".
MEM_MB=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 * 85 / 100 ))

mkdir -p "$D"/{etc,state,spool,log,run,munge,munge-key}
chmod 711 "$D/munge"          # socket dir: must be traversable by job users
chmod 700 "$D/munge-key"

# ---- MUNGE: private key and socket. As root, --force skips munged's ownership/permission checks.
dd if=/dev/urandom of="$D/munge-key/munge.key" bs=1024 count=1 status=none
chmod 400 "$D/munge-key/munge.key"
/usr/sbin/munged --force \
  --socket="$D/munge/munge.socket" \
  --key-file="$D/munge-key/munge.key" \
  --pid-file="$D/munge/munged.pid" \
  --seed-file="$D/munge-key/munged.seed" \
  --log-file="$D/log/munged.log"
wait_for 50 sh -c "munge -S '$D/munge/munge.socket' -n | unmunge -S '$D/munge/munge.socket'" \
  || fail "munged did not start"

# ---- optional accounting: MariaDB on 127.0.0.1:3307 (no auth: --skip-grant-tables) + slurmdbd
if [ "$DBD" = 1 ]; then
  mkdir -p "$D/mysql"
  mariadb-install-db --no-defaults --user=root --datadir="$D/mysql/data" \
    --auth-root-authentication-method=normal --skip-test-db >"$D/log/mariadb-install.log" 2>&1 \
    || fail "mariadb-install-db failed"
  # mariadbd stays in the foreground; run it detached, it writes its own pid file
  setsid /usr/sbin/mariadbd --no-defaults --user=root --datadir="$D/mysql/data" \
    --socket="$D/mysql/mysqld.sock" --port=3307 --bind-address=127.0.0.1 \
    --pid-file="$D/mysql/mysqld.pid" --log-error="$D/log/mariadb.log" \
    --skip-grant-tables --innodb-buffer-pool-size=128M --innodb-lock-wait-timeout=900 \
    </dev/null >/dev/null 2>&1 &
  wait_for 200 mariadb --no-defaults -h 127.0.0.1 -P 3307 -u root -e 'select 1' \
    || fail "mariadbd did not start"
  cat > "$D/etc/slurmdbd.conf" <<EOF
AuthType=auth/munge
AuthInfo=socket=$D/munge/munge.socket
DbdHost=$HOST
DbdAddr=127.0.0.1
DbdPort=6819
SlurmUser=root
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=3307
StorageUser=root
StorageLoc=slurm_acct_db
PidFile=$D/run/slurmdbd.pid
LogFile=$D/log/slurmdbd.log
DebugLevel=info
EOF
  chmod 600 "$D/etc/slurmdbd.conf"   # slurmdbd refuses a config readable by others
fi

# ---- slurm.conf
if [ "$DBD" = 1 ]; then
  ACCT="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=6819
# the slurmctld->slurmdbd connection ignores AuthInfo: name the private munge socket here
AccountingStoragePass=$D/munge/munge.socket"
else
  ACCT="AccountingStorageType=accounting_storage/none"
fi
GRES_NODE=""; GRES_TYPES=""
if [ "$GPUS" -gt 0 ]; then
  mkdir -p "$D/dev"
  for i in $(seq 0 $((GPUS - 1))); do mknod "$D/dev/fakegpu$i" c 1 3; done   # same major/minor as /dev/null
  echo "NodeName=$HOST Name=gpu File=$D/dev/fakegpu[0-$((GPUS - 1))]" > "$D/etc/gres.conf"
  GRES_NODE="Gres=gpu:$GPUS"; GRES_TYPES="GresTypes=gpu"
fi

cat > "$CONF" <<EOF
ClusterName=local
# explicit 127.0.0.1 addresses: works even where the hostname does not resolve
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort=6817
SlurmdPort=6818
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$D/munge/munge.socket
StateSaveLocation=$D/state
SlurmdSpoolDir=$D/spool
SlurmctldPidFile=$D/run/slurmctld.pid
SlurmdPidFile=$D/run/slurmd.pid
SlurmctldLogFile=$D/log/slurmctld.log
SlurmdLogFile=$D/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# no cgroups: works in a container/VM without systemd or a delegated cgroup tree
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=5
$ACCT
# job completion records also go to a text file (readable with 'sacct -c' when there is no slurmdbd)
JobCompType=jobcomp/filetxt
JobCompLoc=$D/log/jobcomp.txt
MpiDefault=none
MailProg=/bin/true
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=1
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# without a default, every job gets all of the node's memory and jobs run one at a time
DefMemPerCPU=$(( MEM_MB / CPUS ))
ReturnToService=2
MinJobAge=300
KillWait=5
InactiveLimit=0
SlurmctldTimeout=30
SlurmdTimeout=30
MaxArraySize=1001
$GRES_TYPES
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM_MB $GRES_NODE State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF

# ---- daemons: each forks into the background and writes its pid file
if [ "$DBD" = 1 ]; then
  /usr/sbin/slurmdbd    # reads $(dirname $SLURM_CONF)/slurmdbd.conf
  wait_for 200 sacctmgr -n list cluster || fail "slurmdbd did not answer"
fi
/usr/sbin/slurmctld -c -f "$CONF"     # -c: ignore any saved state
wait_for 100 sh -c 'scontrol ping | grep -q UP' || fail "slurmctld did not answer"
/usr/sbin/slurmd -f "$CONF"
wait_for 300 sh -c '[ "$(sinfo -h -N -o %T)" = idle ]' || fail "node did not become idle ($(sinfo -h -N -o '%T %E' 2>&1))"
if [ "$DBD" = 1 ]; then
  wait_for 100 sh -c 'sacctmgr -n -P list cluster format=cluster | grep -qx local' || fail "cluster not registered in slurmdbd"
fi

t1=$(date +%s.%N)
printf 'slurm-local: up in %.1fs (munged %s, slurmctld %s, slurmd %s%s)\n' \
  "$(awk "BEGIN{print $t1 - $t0}")" "$(cat "$D/munge/munged.pid")" "$(cat "$D/run/slurmctld.pid")" "$(cat "$D/run/slurmd.pid")" \
  "$([ "$DBD" = 1 ] && echo ", mariadbd $(cat "$D/mysql/mysqld.pid"), slurmdbd $(cat "$D/run/slurmdbd.pid")")"
echo "export SLURM_CONF=$CONF"
