#!/usr/bin/env bash
# A one-node SLURM cluster on this machine for the tests (tests/cluster/): munge, MariaDB, slurmdbd, slurmctld and
# slurmd, all on localhost, all state under STATE_DIR, nothing in /etc touched.
#
#   tests/cluster/slurm_up.sh STATE_DIR      # then: export SLURM_CONF=STATE_DIR/slurm.conf
#   tests/cluster/slurm_down.sh STATE_DIR    # stops the daemons by the PIDs in STATE_DIR/pids
#
# Installs the Debian packages (slurm-wlm, slurmdbd, munge, mariadb-server) when they are missing and this user is
# root with apt-get; exits 77 with the reason on stderr where it cannot (the tests skip then). The node is this
# host with its real CPUs and memory (`slurmd -C`) and two stand-in GPUs (gres backed by /dev/null and /dev/zero:
# --gpus-per-node is scheduled as on a GPU node, no process sees a GPU). Partitions: `debug` (default, MaxTime
# 10 min, PreemptMode=REQUEUE) and `tiny` (MaxTime 1 min). Settings as on many sites: EnforcePartLimits=ALL (a time
# above the partition's limit is refused at submission), JobRequeue=0 (a job is requeued only if it was submitted
# with --requeue). For speed: cred_expire=10 (a requeued job waits that long before it starts again; 120 s by
# default), bf_interval=5, KillWait=5. Ports: SSLT_SLURM_PORTS ("slurmctld slurmd slurmdbd mariadb"), default
# "16817 16818 16819 13306".
set -euo pipefail
STATE=$(realpath -m "${1:?usage: slurm_up.sh STATE_DIR}")
read -r CTLD_PORT SLURMD_PORT DBD_PORT DB_PORT <<<"${SSLT_SLURM_PORTS:-16817 16818 16819 13306}"
SBIN=/usr/sbin
PACKAGES="slurm-wlm slurmdbd munge mariadb-server mariadb-client"

missing=""
for command in $SBIN/slurmctld $SBIN/slurmd $SBIN/slurmdbd $SBIN/munged $SBIN/mariadbd /usr/bin/mariadb-install-db \
               /usr/bin/sbatch /usr/bin/sacct; do
    [ -x "$command" ] || missing="$missing $(basename "$command")"
done
if [ -n "$missing" ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "SLURM is not installed (missing:$missing) and this user is not root, so it cannot be installed" >&2
        exit 77
    fi
    if ! command -v apt-get >/dev/null; then
        echo "SLURM is not installed (missing:$missing) and there is no apt-get to install it" >&2
        exit 77
    fi
    echo "installing $PACKAGES" >&2
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $PACKAGES) \
        >"${TMPDIR:-/tmp}/sslt-slurm-apt.log" 2>&1 || {
        echo "apt-get install $PACKAGES failed; see ${TMPDIR:-/tmp}/sslt-slurm-apt.log" >&2; exit 1; }
fi
if [ "$(id -u)" != 0 ]; then  # the daemons run as root (SlurmUser=root) so that jobs can run as this user
    echo "the test cluster's daemons run as root, and this user is not root" >&2
    exit 77
fi

mkdir -p "$STATE"/{munge,db,ctld,spool,log}
chmod 700 "$STATE"
chmod 755 "$STATE/munge"  # munged: clients need to reach the socket
: >"$STATE/pids"
started() { echo "$1 $2" >>"$STATE/pids"; }
wait_for() {  # wait_for SECONDS WHAT 'SHELL COMMAND': until the command succeeds
    local seconds=$1 what=$2 check=$3
    local deadline=$((SECONDS + seconds))
    while [ $SECONDS -lt $deadline ]; do
        if timeout 10 bash -c "$check" >/dev/null 2>&1; then return 0; fi
        sleep 0.2
    done
    echo "$what did not come up in ${seconds} s; logs in $STATE/log" >&2
    "$(dirname "$0")/slurm_down.sh" "$STATE" || true
    exit 1
}

# munge: its own key and socket
dd if=/dev/urandom of="$STATE/munge/munge.key" bs=1024 count=1 status=none
chmod 600 "$STATE/munge/munge.key"
SOCKET="$STATE/munge/munge.socket"
$SBIN/munged --foreground --force --socket="$SOCKET" --key-file="$STATE/munge/munge.key" \
    --pid-file="$STATE/munge/munged.pid" --seed-file="$STATE/munge/seed" --log-file="$STATE/log/munged.log" \
    </dev/null >>"$STATE/log/munged.out" 2>&1 &
started munged $!
wait_for 20 munged "munge --socket='$SOCKET' -n"

# MariaDB for slurmdbd (accounting: sacct)
if [ ! -d "$STATE/db/mysql" ]; then
    mariadb-install-db --no-defaults --datadir="$STATE/db" --user=root --auth-root-authentication-method=normal \
        --skip-test-db >"$STATE/log/mariadb-install.log" 2>&1
fi
$SBIN/mariadbd --no-defaults --datadir="$STATE/db" --user=root --socket="$STATE/mysql.sock" --port="$DB_PORT" \
    --bind-address=127.0.0.1 --skip-name-resolve --innodb-buffer-pool-size=32M --log-error="$STATE/log/mariadb.log" \
    --pid-file="$STATE/mariadb.pid" </dev/null >>"$STATE/log/mariadb.out" 2>&1 &
started mariadbd $!
wait_for 60 mariadbd "mariadb-admin --no-defaults --socket='$STATE/mysql.sock' -u root ping"
mariadb --no-defaults --socket="$STATE/mysql.sock" -u root -e \
    "CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurm'; \
     GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';"

# SLURM's configuration: this host as the only node
NODE_LINE=$($SBIN/slurmd -C | head -1)  # NodeName=<host> CPUs=... RealMemory=...
NODE=$(sed -E 's/^NodeName=([^ ]+).*/\1/' <<<"$NODE_LINE")
cat >"$STATE/slurm.conf" <<EOF
ClusterName=sslt-test
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$SOCKET,cred_expire=10
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SwitchType=switch/none
ReturnToService=2
SchedulerType=sched/backfill
SchedulerParameters=bf_interval=5
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
EnforcePartLimits=ALL
PreemptType=preempt/partition_prio
PreemptMode=REQUEUE
JobRequeue=0
GresTypes=gpu
KillWait=5
MinJobAge=600
InactiveLimit=0
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$DBD_PORT
AccountingStoragePass=$SOCKET
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
$NODE_LINE Gres=gpu:2 NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=10 State=UP PreemptMode=REQUEUE
PartitionName=tiny Nodes=ALL MaxTime=1 State=UP
EOF
cat >"$STATE/slurmdbd.conf" <<EOF
AuthType=auth/munge
AuthInfo=socket=$SOCKET
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=$DBD_PORT
SlurmUser=root
LogFile=$STATE/log/slurmdbd.log
PidFile=$STATE/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=slurm
StorageLoc=slurm_acct_db
EOF
chmod 600 "$STATE/slurmdbd.conf"
# Two stand-in GPUs (character devices that are no GPU), so that --gpus-per-node is scheduled as on a GPU node
printf 'Name=gpu File=/dev/null\nName=gpu File=/dev/zero\n' >"$STATE/gres.conf"
export SLURM_CONF="$STATE/slurm.conf"  # slurmdbd reads slurmdbd.conf from the same folder

$SBIN/slurmdbd -D </dev/null >>"$STATE/log/slurmdbd.out" 2>&1 &
started slurmdbd $!
wait_for 60 slurmdbd "sacctmgr -n list cluster"
sacctmgr -i add cluster sslt-test >/dev/null 2>&1 || true
$SBIN/slurmctld -D -i </dev/null >>"$STATE/log/slurmctld.out" 2>&1 &
started slurmctld $!
$SBIN/slurmd -D -N "$NODE" </dev/null >>"$STATE/log/slurmd.out" 2>&1 &
started slurmd $!
wait_for 90 "the node $NODE (idle in sinfo)" "sinfo -h -N -n '$NODE' -o %t | grep -qx idle"
echo "SLURM_CONF=$SLURM_CONF"
