#!/usr/bin/env bash
# Waits until each named CustomResourceDefinition is Established (up to ${TIMEOUT:-60} seconds in all):
#
#   hack/crds-established.sh crd/backuppolicies.dr.botrt.io crd/recoveryplans.dr.botrt.io
#
# `kubectl wait --for condition=established` is not enough right after the CRD's creation: kubectl up to 1.22 fails at
# once ("status.conditions accessor error: <nil>") while the apiserver has not written the CRD's first status yet,
# instead of waiting for it. A flow that applies the CRDs to a fresh cluster hit that (recoveryplan-e2e, 1 s in).
# KUBECTL: the kubectl to use (default: kubectl on PATH).
set -euo pipefail
kc="${KUBECTL:-kubectl}"
deadline=$(($(date +%s) + ${TIMEOUT:-60}))
for crd in "$@"; do
  name="${crd#crd/}"
  name="${name#customresourcedefinition/}"
  until [[ "$("$kc" get crd "$name" -o jsonpath='{.status.conditions[?(@.type=="Established")].status}' 2>/dev/null)" == True ]]; do
    if (($(date +%s) >= deadline)); then
      echo "crds-established: CustomResourceDefinition $name is not Established after ${TIMEOUT:-60} s" >&2
      "$kc" get crd "$name" -o jsonpath='{.status.conditions}' >&2 || true
      exit 1
    fi
    sleep 0.2
  done
done
