#!/usr/bin/env bash
# End-to-end test of hack/pod-runner.py against the real local control plane (hack/cluster.sh).
#
#   KUBECONFIG=... BOTRT_ENGINE_BIN=... hack/pod-runner-test.sh
#
# Needs: KUBECONFIG (a running cluster from hack/cluster.sh; `source <(hack/cluster.sh env)`), BOTRT_ENGINE_BIN (the
# built botrt-engine), kubectl, python3 with requests, and root (the runner's mount isolation).
# Creates a namespace of its own, starts the runner for it, and checks that:
#   1. a Job of a shell image completes; its termination message (JSON), Secret env, Secret volume and fieldRef
#      reach the container; the container's writes outside volumes are not visible on the host; no secret in the log;
#   2. a failing container fails its Job with the container's exit code;
#   3. restartPolicy OnFailure restarts the container in the same Pod and the Job completes;
#   4. a Pod's activeDeadlineSeconds stops it (Failed, reason DeadlineExceeded);
#   5. deleting a running Pod kills its process;
#   6. botrt-engine Jobs: init, backup and restore against a file:// repository on a hostPath volume, with the local
#      key from a Secret volume; the backup's JSON result is read back from the Pod; the restored files match.
# Everything it created is removed at the end, also after a failure.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
fail() {
  echo "pod-runner-test: FAIL: $*" >&2
  exit 1
}
log() { echo "pod-runner-test: $*" >&2; }

[[ -n "${KUBECONFIG:-}" ]] || fail "KUBECONFIG is not set; start the cluster (hack/cluster.sh up) and source <(hack/cluster.sh env)"
[[ -n "${BOTRT_ENGINE_BIN:-}" && -x "${BOTRT_ENGINE_BIN:-}" ]] ||
  fail "BOTRT_ENGINE_BIN is not set to an executable botrt-engine (swift build --product botrt-engine)"
[[ "$(id -u)" == 0 ]] || fail "the pod runner's mount isolation needs root"
kubectl version --request-timeout=10s >/dev/null 2>&1 || fail "the cluster at KUBECONFIG=$KUBECONFIG does not answer"

NS="prt-$(date +%s)-$$"
WORK="$(mktemp -d /tmp/botrt-pod-runner-test.XXXXXX)"
RUNNER_PID=""
cleanup() {
  local rc=$?
  if [[ -n "$RUNNER_PID" ]]; then
    kill -TERM "$RUNNER_PID" 2>/dev/null || true
    wait "$RUNNER_PID" 2>/dev/null || true
  fi
  kubectl delete namespace "$NS" --wait=false >/dev/null 2>&1 || true
  if [[ $rc -ne 0 ]]; then
    log "runner log (last 40 lines):"
    tail -n 40 "$WORK/runner.log" >&2 || true
  fi
  rm -rf "$WORK"
  exit $rc
}
trap cleanup EXIT

k() { kubectl -n "$NS" "$@"; }

kubectl create namespace "$NS" >/dev/null
# The default ServiceAccount (created by kube-controller-manager) must exist before Pods can be created.
for _ in $(seq 1 100); do k get serviceaccount default >/dev/null 2>&1 && break; sleep 0.2; done

python3 "$REPO/hack/pod-runner.py" -n "$NS" --restart-backoff 1 --work-dir "$WORK/runner" --keep-work-dirs \
  >"$WORK/runner.log" 2>&1 &
RUNNER_PID=$!

wait_job() { # NAME CONDITION(complete|failed) TIMEOUT
  k wait --for=condition="$2" "job/$1" --timeout="$3" >/dev/null ||
    fail "job $1 did not become $2 within $3: $(k get pods -l job-name="$1" -o jsonpath='{.items[*].status}')"
}
pod_of() { k get pods -l job-name="$1" -o jsonpath='{.items[0].metadata.name}'; }
term() { k get pods -l job-name="$1" -o jsonpath="{.items[0].status.containerStatuses[0].state.terminated.$2}"; }

SECRET_VALUE="s3cr3t-$RANDOM-$RANDOM"
k create secret generic app-secret --from-literal=password="$SECRET_VALUE" >/dev/null

# --- 1. a shell Job with a JSON termination message, Secret env and volume, fieldRef --------------------------
log "1. shell Job: termination message, Secret env and volume, fieldRef"
k apply -f - >/dev/null <<EOF
apiVersion: batch/v1
kind: Job
metadata: {name: hello}
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      volumes:
      - {name: sec, secret: {secretName: app-secret}}
      - {name: scratch, emptyDir: {}}
      containers:
      - name: main
        image: busybox:1.36
        command: ["sh", "-c"]
        args:
        - |
          set -e
          [ "\$PASSWORD" = "\$(cat /etc/app/password)" ] || { echo "env and volume differ" >&2; exit 7; }
          echo x > /scratch/file
          echo leaked > /botrt-pod-runner-test-leak
          printf '{"ok":true,"pod":"%s","ns":"%s","len":%d}\n' "\$POD" "\$NS" "\${#PASSWORD}" > /dev/termination-log
        env:
        - name: PASSWORD
          valueFrom: {secretKeyRef: {name: app-secret, key: password}}
        - {name: POD, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
        - {name: NS, valueFrom: {fieldRef: {fieldPath: metadata.namespace}}}
        volumeMounts:
        - {name: sec, mountPath: /etc/app}
        - {name: scratch, mountPath: /scratch}
EOF
wait_job hello complete 60s
msg="$(term hello message)"
pod="$(pod_of hello)"
want="{\"ok\":true,\"pod\":\"$pod\",\"ns\":\"$NS\",\"len\":${#SECRET_VALUE}}"
[[ "$msg" == "$want" ]] || fail "termination message: got '$msg', want '$want'"
[[ "$(term hello exitCode)" == 0 && "$(term hello reason)" == Completed ]] || fail "hello: exit code/reason wrong"
[[ "$(k get pod "$pod" -o jsonpath='{.status.phase}')" == Succeeded ]] || fail "hello: pod not Succeeded"
[[ ! -e /botrt-pod-runner-test-leak ]] || {
  rm -f /botrt-pod-runner-test-leak
  fail "a write outside the volumes reached the host's /"
}

# --- 2. a failing container ------------------------------------------------------------------------------------
log "2. failing Job reports the exit code"
k apply -f - >/dev/null <<EOF
apiVersion: batch/v1
kind: Job
metadata: {name: failing}
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      containers:
      - {name: main, image: busybox:1.36, command: ["sh", "-c", "echo partial >&2; exit 3"],
         terminationMessagePolicy: FallbackToLogsOnError}
EOF
wait_job failing failed 60s
[[ "$(term failing exitCode)" == 3 && "$(term failing reason)" == Error ]] || fail "failing: want exit code 3, Error"
[[ "$(term failing message)" == partial ]] || fail "failing: FallbackToLogsOnError message: '$(term failing message)'"

# --- 3. restartPolicy OnFailure -----------------------------------------------------------------------------------
log "3. restartPolicy OnFailure restarts in place"
mkdir -p "$WORK/marker"
k apply -f - >/dev/null <<EOF
apiVersion: batch/v1
kind: Job
metadata: {name: retry}
spec:
  backoffLimit: 3
  template:
    spec:
      restartPolicy: OnFailure
      volumes: [{name: m, hostPath: {path: "$WORK/marker", type: Directory}}]
      containers:
      - name: main
        image: busybox:1.36
        command: ["sh", "-c", "if [ -e /m/once ]; then echo '{\"attempt\":2}' > /dev/termination-log; else touch /m/once; exit 1; fi"]
        volumeMounts: [{name: m, mountPath: /m}]
EOF
wait_job retry complete 60s
[[ "$(k get pods -l job-name=retry --no-headers | wc -l)" == 1 ]] || fail "retry: OnFailure must reuse the Pod"
[[ "$(k get pods -l job-name=retry -o jsonpath='{.items[0].status.containerStatuses[0].restartCount}')" == 1 ]] ||
  fail "retry: restartCount should be 1"
[[ "$(term retry message)" == '{"attempt":2}' ]] || fail "retry: message '$(term retry message)'"

# --- 4. activeDeadlineSeconds ---------------------------------------------------------------------------------
log "4. Pod activeDeadlineSeconds"
k apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Pod
metadata: {name: slow}
spec:
  restartPolicy: Never
  activeDeadlineSeconds: 2
  terminationGracePeriodSeconds: 1
  containers: [{name: main, image: busybox:1.36, command: ["sleep", "300"]}]
EOF
for _ in $(seq 1 100); do
  [[ "$(k get pod slow -o jsonpath='{.status.phase}')" == Failed ]] && break
  sleep 0.2
done
[[ "$(k get pod slow -o jsonpath='{.status.phase}/{.status.reason}')" == Failed/DeadlineExceeded ]] ||
  fail "slow: want Failed/DeadlineExceeded, got $(k get pod slow -o jsonpath='{.status.phase}/{.status.reason}')"

# --- 5. deleting a running Pod kills its process ---------------------------------------------------------------
log "5. deleting a running Pod stops its process"
TOKEN="botrt-prt-$RANDOM$RANDOM"
k apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Pod
metadata: {name: victim}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  containers: [{name: main, image: busybox:1.36, command: ["sh", "-c", "sleep 301; : $TOKEN"]}]
EOF
for _ in $(seq 1 100); do
  [[ "$(k get pod victim -o jsonpath='{.status.phase}')" == Running ]] && break
  sleep 0.2
done
[[ "$(k get pod victim -o jsonpath='{.status.phase}')" == Running ]] || fail "victim did not reach Running"
pgrep -f "$TOKEN" >/dev/null || fail "victim: no process with $TOKEN runs"
k delete pod victim --wait=true --timeout=20s >/dev/null
for _ in $(seq 1 50); do pgrep -f "$TOKEN" >/dev/null || break; sleep 0.2; done
! pgrep -f "$TOKEN" >/dev/null || fail "victim: the process survived the Pod's deletion"

# --- 6. botrt-engine Jobs: init, backup, restore ----------------------------------------------------------------
log "6. botrt-engine init, backup and restore Jobs (file:// repository, local key Secret)"
mkdir -p "$WORK/repo" "$WORK/source/data/sub" "$WORK/restored"
head -c 300000 /dev/urandom >"$WORK/source/data/blob.bin"
echo "hello from the pod runner test" >"$WORK/source/data/sub/note.txt"
k create secret generic repo-key --from-literal=key="$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')" >/dev/null
engine_job() { # NAME ARGS-YAML-LIST
  k apply -f - >/dev/null <<EOF
apiVersion: batch/v1
kind: Job
metadata: {name: $1}
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      volumes:
      - {name: key, secret: {secretName: repo-key, defaultMode: 0400}}
      - {name: repo, hostPath: {path: "$WORK/repo", type: Directory}}
      - {name: source, hostPath: {path: "$WORK/source", type: Directory}}
      - {name: restored, hostPath: {path: "$WORK/restored", type: Directory}}
      containers:
      - name: engine
        image: registry.local/botrt-engine:dev
        args: $2
        env:
        - {name: BOTRT_REPO, value: "file:///repo"}
        - {name: BOTRT_KMS, value: "file:///var/run/botrt/key/key"}
        volumeMounts:
        - {name: key, mountPath: /var/run/botrt/key, readOnly: true}
        - {name: repo, mountPath: /repo}
        - {name: source, mountPath: /source, readOnly: true}
        - {name: restored, mountPath: /restored}
EOF
}
engine_job init '["init", "--quiet"]'
wait_job init complete 120s
engine_job backup '["backup", "--quiet", "--tag", "test=pod-runner", "/source/data"]'
wait_job backup complete 120s
result="$(term backup message)"
snapshot="$(printf '%s' "$result" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d.get("snapshot") or d.get("snapshotId") or "")')" ||
  fail "backup: the termination message is not JSON: $result"
[[ -n "$snapshot" ]] || fail "backup: no snapshot id in the result: $result"
engine_job restore "[\"restore\", \"--quiet\", \"$snapshot\", \"--target\", \"/restored\"]"
wait_job restore complete 120s
diff -r "$WORK/source/data" "$WORK/restored/data" >/dev/null ||
  fail "restore: restored files differ from the source ($(ls -R "$WORK/restored" | head -20 | tr '\n' ' '))"

# --- 7. an init container installs the engine from the engine image; a dump image pipes into it ------------------
log "7. init container copies the engine; a shell image streams a dump into it"
k apply -f - >/dev/null <<EOF
apiVersion: batch/v1
kind: Job
metadata: {name: dump}
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      volumes:
      - {name: key, secret: {secretName: repo-key}}
      - {name: repo, hostPath: {path: "$WORK/repo", type: Directory}}
      - {name: engine-bin, emptyDir: {}}
      initContainers:
      - name: install-engine
        image: registry.local/botrt-engine:dev
        command: ["cp", "/usr/local/bin/botrt-engine", "/botrt/bin/botrt-engine"]
        volumeMounts: [{name: engine-bin, mountPath: /botrt/bin}]
      containers:
      - name: backup
        image: postgres:16
        command: ["sh", "-c", "echo 'row 1' | /botrt/bin/botrt-engine backup --quiet --stdin --stdin-name db.dump"]
        env:
        - {name: BOTRT_REPO, value: "file:///repo"}
        - {name: BOTRT_KMS, value: "file:///var/run/botrt/key/key"}
        volumeMounts:
        - {name: key, mountPath: /var/run/botrt/key, readOnly: true}
        - {name: repo, mountPath: /repo}
        - {name: engine-bin, mountPath: /botrt/bin, readOnly: true}
EOF
wait_job dump complete 120s
dump_snapshot="$(term dump message | python3 -c 'import json,sys; print(json.load(sys.stdin).get("snapshotId") or "")')" ||
  fail "dump: the termination message is not JSON: $(term dump message)"
[[ -n "$dump_snapshot" && "$dump_snapshot" != "$snapshot" ]] || fail "dump: no new snapshot id: $(term dump message)"

# --- secrets never logged -------------------------------------------------------------------------------------
if grep -q -- "$SECRET_VALUE" "$WORK/runner.log"; then fail "the runner log contains a secret value"; fi
kill -0 "$RUNNER_PID" 2>/dev/null || fail "the runner exited early"
log "PASS (snapshot $snapshot)"
