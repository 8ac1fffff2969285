#!/usr/bin/env python3
"""Generates the BotRT CustomResourceDefinitions in crds/ from one description of the schemas.

Run `python3 crds/generate.py` after editing, and commit the generated YAML (and docs/api-reference.md) with it. The YAML is
the source of truth for the apiserver; this script only keeps the repeated parts (secret references,
containers, conditions, durations) identical across the three kinds. Needs PyYAML.

Two renderings of the same schemas:
- crds/*.yaml, for Kubernetes 1.20 and later (the install path, manifests/): apiextensions.k8s.io/v1, structural
  schemas, no CEL rules. "Exactly one of" is expressed with `oneOf` branches that hold only `required` lists,
  which structural schemas allow. 1.20 does not know `x-kubernetes-validations`: kubectl's client-side validation
  rejects it as an unknown field and server-side apply fails with "field not declared in schema", so this
  rendering leaves the CEL rules out.
- crds/cel/*.yaml, for Kubernetes 1.25 and later (tested on 1.36, hack/crd136-test.sh): the same plus the
  cross-field rules of Sources/DRAPI/Validation.swift that CEL can express, as `x-kubernetes-validations`.
"""
import os
import sys

import yaml

GROUP = "dr.botrt.io"
VERSION = "v1alpha1"

# ---------------------------------------------------------------------------------------------
# Shared patterns; the Swift validators in Sources/DRAPI mirror them.

# Five cron fields (minute hour day-of-month month day-of-week; names allowed in month and weekday)
# or a macro. Catches wrong field counts and stray words; the controller's parser checks ranges.
# `?` (any) is accepted in the day fields only, as the Swift parser does.
NUM_FIELD = r"[0-9*][0-9*,/-]*"
DAY_FIELD = r"[0-9*?][0-9*?,/-]*"
MONTH_FIELD = r"[0-9A-Za-z*][0-9A-Za-z*,/-]*"
WEEKDAY_FIELD = r"[0-9A-Za-z*?][0-9A-Za-z*?,/-]*"
CRON_BODY = (
    r"@(yearly|annually|monthly|weekly|daily|midnight|hourly)"
    r"|@every ([0-9]+(ms|s|m|h))+"
    rf"|{NUM_FIELD} +{NUM_FIELD} +{DAY_FIELD} +{MONTH_FIELD} +{WEEKDAY_FIELD}"
)
CRON_PATTERN = rf"^({CRON_BODY})$"
DRILL_SCHEDULE_PATTERN = rf"^(daily|weekly|biweekly|monthly|quarterly|{CRON_BODY})$"
DURATION_PATTERN = r"^([0-9]+(y|w|d|h|m|s))+$"
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
SECRET_KEY = r"^[-._a-zA-Z0-9]+$"
QUANTITY = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$"
ACCESS_MODES = ["ReadWriteOnce", "ReadOnlyMany", "ReadWriteMany", "ReadWriteOncePod"]
URL_PATTERN = r"^https?://[^\s]+$"
ENV_NAME = r"^[-._a-zA-Z][-._a-zA-Z0-9]*$"

TIERS = ["critical", "important", "standard", "archive"]
PROFILES = ["sox", "gdpr", "pci-dss", "hipaa"]

TIER_TABLE = (
    "Tier defaults (original design): critical = every 5 min (*/5 * * * *), RPO 5m, keep 7y, RTO 15m, drill daily; "
    "important = hourly (0 * * * *), RPO 30m, keep 2y, RTO 90m, drill weekly; "
    "standard = daily (0 2 * * *), RPO 4h, keep 90d, RTO 3h, drill monthly; "
    "archive = weekly (0 3 * * 0), RPO 24h, keep 7y, RTO 24h, drill quarterly. "
    "Without spec.schedule, backups run at least every half of the effective RPO (headroom for a backup's own "
    "duration): the table's schedule is tightened to the least frequent of every 1, 2, 5, 10, 15, 30 min, 1, 2, 4, "
    "6, 12 h, daily, weekly within RPO/2 (critical */2 * * * *, important */15 * * * *, standard 0 */2 * * *, "
    "archive 0 */12 * * *; gdpr on important: */2 * * * *), and status.scheduleSource says rpo. A 1-minute RPO "
    "(sox, pci-dss) runs every minute with no headroom: RPOMet turns False whenever a backup and the wait for the "
    "next take longer than a minute, and status warns."
)
PROFILE_TABLE = (
    "Profile targets: sox = RPO 1m, RTO 30m, drill at least quarterly, keep 7y; "
    "gdpr = RPO 5m, RTO 72h; pci-dss = RPO 1m, RTO 15m, keep 1y; "
    "hipaa = RPO 5m, RTO 30m, keep 6y. An explicit override (spec.rpo, spec.rtoTarget) replaces the tier's value; "
    "the profiles then tighten it."
)


# ---------------------------------------------------------------------------------------------
# Schema helpers. Every helper takes the description first, so no field can lack one.

def string(desc, **kw):
    out = {"type": "string", "description": desc}
    out.update(kw)
    return out


def integer(desc, fmt="int64", **kw):
    out = {"type": "integer", "description": desc}
    if fmt:
        out["format"] = fmt
    out.update(kw)
    return out


def number(desc, **kw):
    out = {"type": "number", "description": desc}
    out.update(kw)
    return out


def boolean(desc, **kw):
    out = {"type": "boolean", "description": desc}
    out.update(kw)
    return out


def obj(desc, props, required=None, **kw):
    out = {"type": "object", "description": desc, "properties": props}
    if required:
        out["required"] = required
    out.update(kw)
    return out


def array(desc, items, **kw):
    out = {"type": "array", "description": desc, "items": items}
    out.update(kw)
    return out


def one_of(*names):
    return [{"required": [n]} for n in names]


# ---------------------------------------------------------------------------------------------
# CEL rules (x-kubernetes-validations, Kubernetes 1.25 and later): the cross-field checks of
# Sources/DRAPI/Validation.swift that CEL can express. Kubernetes 1.20 does not know the field (see
# docs/testing.md), so each rule is also checked by the Swift validation, and
# Tests/CEL/cases.yaml runs the same specs through both (hack/crd136-test.sh, Tests/DRAPITests/CELTableTests.swift).
# Every message starts with the field it is about, relative to the object the rule sits on.

def rule(expr, message, field_path=None):
    out = {"rule": expr, "message": message}
    if field_path:
        out["fieldPath"] = field_path
    return out


def with_rules(schema, *rules):
    schema.setdefault("x-kubernetes-validations", []).extend(rules)
    return schema


def exactly_one(field, *names):
    count = " + ".join(f"(has(self.{n}) ? 1 : 0)" for n in names)
    return rule(f"{count} == 1", f"{field}: set exactly one of {', '.join(names)}")


# Key-service URLs that must be https:// unless kms.allowPlaintextHTTP (Validation.swift: plaintextKMS).
PLAINTEXT_KMS_FIELDS = [("vaultTransit", "address"), ("awsKms", "endpoint"), ("azureKeyVault", "vaultURL"),
                        ("azureKeyVault", "authorityHost"), ("gcpKms", "endpoint")]


def plaintext_rule(kind, field):
    return rule(f"!has(self.{kind}) || !has(self.{kind}.{field}) || "
                f"!self.{kind}.{field}.matches('^[hH][tT][tT][pP]:') || "
                "(has(self.allowPlaintextHTTP) && self.allowPlaintextHTTP)",
                f"{kind}.{field}: an http:// URL sends the key service's credentials and the data keys "
                "unencrypted; use https:// (caSecretRef for a private CA) or set allowPlaintextHTTP: true",
                field_path=f".{kind}.{field}")


# A duration the pattern accepts is positive when it has a non-zero digit (Swift: "must be longer than 0s").
POSITIVE_DURATION = rule("self.matches('[1-9]')", "must be longer than 0s")


def date_time(desc):
    return string(desc, format="date-time")


def duration(desc, **kw):
    return with_rules(
        string(desc + " Format: one or more <number><unit> with units y, w, d, h, m, s (e.g. 90d, 24h, 1h30m); "
               "longer than 0s.", pattern=DURATION_PATTERN, maxLength=32, **kw),
        POSITIVE_DURATION)


def object_name(desc):
    return string(desc, pattern=DNS_SUBDOMAIN, maxLength=253)


def secret_ref(desc, default_key=None, key_desc=None):
    props = {"name": object_name("Name of the Secret, in the same namespace as this resource.")}
    if default_key:
        props["key"] = string(key_desc or f"Key inside the Secret. Default: {default_key}.",
                              pattern=SECRET_KEY, maxLength=253, default=default_key)
    return obj(desc, props, required=["name"])


def local_ref(desc):
    return obj(desc, {"name": object_name("Name of the referenced object, in the same namespace.")},
               required=["name"])


def env_vars(desc):
    return array(desc, with_rules(obj(
        "One environment variable: a literal value or a value read from a Secret.",
        {
            "name": string("Name of the environment variable.", pattern=ENV_NAME, maxLength=253),
            "value": string("Literal value. Do not put secrets here; use valueFrom.secretKeyRef.", maxLength=4096),
            "valueFrom": obj("Where to read the value from instead of `value`.", {
                "secretKeyRef": obj("A key of a Secret in this resource's namespace.", {
                                        "name": object_name("Name of the Secret."),
                                        "key": string("Key inside the Secret.", pattern=SECRET_KEY, maxLength=253),
                                    }, required=["name", "key"]),
            }, required=["secretKeyRef"]),
        }, required=["name"]), rule("!(has(self.value) && has(self.valueFrom))",
                                    "value: set value or valueFrom, not both")), maxItems=64)


def container(desc, extra=None, required_image=True):
    props = {
        "image": string("Container image to run, e.g. postgres:16.", minLength=1, maxLength=512),
        "command": array("Entrypoint, as in a Pod container's `command`. Default: the image's entrypoint.",
                         string("One argument of the entrypoint.", maxLength=4096), maxItems=64),
        "args": array("Arguments, as in a Pod container's `args`.",
                      string("One argument.", maxLength=4096), maxItems=128),
        "env": env_vars("Environment variables for the container; use secretKeyRef for credentials "
                        "such as PGPASSWORD."),
    }
    if extra:
        props.update(extra)
    return obj(desc, props, required=["image"] if required_image else None)


def resources():
    quantity = {
        "description": "A Kubernetes quantity, e.g. 500m, 2, 512Mi.",
        "anyOf": [{"type": "integer"}, {"type": "string"}],
        "x-kubernetes-int-or-string": True,
        "pattern": r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$",
    }
    return obj("Compute resources for the backup, restore and retention Jobs' engine container. Default: "
               "requests cpu 100m, memory 128Mi; limits memory 512Mi.", {
                   "requests": obj("Minimum resources, by resource name (cpu, memory, ephemeral-storage).", {},
                                   additionalProperties=quantity),
                   "limits": obj("Maximum resources, by resource name (cpu, memory, ephemeral-storage).", {},
                                 additionalProperties=quantity),
               })


def compliance(what):
    return array(f"Compliance profiles that apply to {what}. Each tightens the targets; where a profile and "
                 f"the tier disagree, the stricter wins and status names which one applied. {PROFILE_TABLE}",
                 string("A compliance profile.", enum=PROFILES), maxItems=4, **{"x-kubernetes-list-type": "set"})


def trigger(kind):
    return string(f"On-demand run token. Setting it to a new value (for example a timestamp) starts one {kind} "
                  "run as soon as possible; the value last handled is recorded in status.lastHandledTrigger, so "
                  "re-applying the same value does nothing. Equivalent to setting the annotation "
                  "dr.botrt.io/run-now to a new value, which kubectl users may prefer: "
                  "`kubectl annotate --overwrite ... dr.botrt.io/run-now=$(date +%s)`.", maxLength=63)


def conditions(types):
    return array(
        f"Current state as standard Kubernetes conditions. Types: {types}.",
        obj("One condition, following the Kubernetes API conventions.", {
            "type": string("Condition type, in CamelCase.", maxLength=316,
                           pattern=r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$"),
            "status": string("True, False or Unknown.", enum=["True", "False", "Unknown"]),
            "reason": string("Machine-readable reason for the last transition, in CamelCase.", maxLength=1024),
            "message": string("Human-readable explanation, in plain sentences.", maxLength=32768),
            "lastTransitionTime": date_time("When the status last changed."),
            "observedGeneration": integer("The metadata.generation the condition was computed from.", minimum=0),
        }, required=["type", "status"]),
        **{"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]})


def observed_generation():
    return integer("The metadata.generation of the spec the controller last acted on.", minimum=0)


# ---------------------------------------------------------------------------------------------
# BackupPolicy

def repository_schema(desc):
    cred = "credentialsSecretRef"
    return obj(desc, {
        "s3": obj("An S3 or S3-compatible bucket (AWS, MinIO, moto).", {
            "bucket": string("Bucket name (3-63 characters).", minLength=3, maxLength=63,
                             pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$"),
            "prefix": string("Key prefix inside the bucket; the repository lives under it. Default: none.",
                             maxLength=512, pattern=r"^[^/].*$|^$"),
            "region": string("Bucket region. Default: us-east-1.", maxLength=64, default="us-east-1",
                             pattern=r"^[a-z0-9-]+$"),
            "endpoint": string("Endpoint URL for S3-compatible services (e.g. http://minio.storage:9000). "
                               "Default: the AWS endpoint of the region.", maxLength=512, pattern=URL_PATTERN),
            "forcePathStyle": boolean("Use path-style URLs (endpoint/bucket/key) instead of virtual-hosted style. "
                                      "Needed by most S3-compatible services. Default: false.", default=False),
            cred: secret_ref("Secret with the keys AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and optionally "
                             "AWS_SESSION_TOKEN)."),
            "objectLock": obj("S3 Object Lock (write once, read many) for every object the engine writes. The "
                              "bucket must have Object Lock enabled. Locks are extended on packs that new "
                              "snapshots still reference.", {
                                  "mode": string("compliance: nobody, not even the root user, can delete or "
                                                 "shorten the lock; governance: users with "
                                                 "s3:BypassGovernanceRetention can.",
                                                 enum=["compliance", "governance"]),
                                  "days": integer("Retention of the lock in days (at least 1).", fmt="int32",
                                                  minimum=1, maximum=36500),
                              }, required=["mode", "days"]),
            "serverSideEncryption": obj("Optional S3 server-side encryption on top of the engine's client-side "
                                        "encryption.", {
                                            "mode": string("aws:kms or AES256.", enum=["aws:kms", "AES256"]),
                                            "kmsKeyId": string("KMS key id or ARN for mode aws:kms.",
                                                               maxLength=2048),
                                        }, required=["mode"]),
        }, required=["bucket", cred]),
        "gcs": obj("A Google Cloud Storage bucket.", {
            "bucket": string("Bucket name.", minLength=3, maxLength=222, pattern=r"^[a-z0-9][a-z0-9._-]*[a-z0-9]$"),
            "prefix": string("Object prefix inside the bucket. Default: none.", maxLength=512),
            "endpoint": string("Endpoint URL override (e.g. a fake-gcs-server in tests). Default: the Google "
                               "endpoint.", maxLength=512, pattern=URL_PATTERN),
            cred: secret_ref("Secret holding a service-account JSON key.", default_key="service-account.json",
                             key_desc="Key of the service-account JSON inside the Secret. "
                                      "Default: service-account.json."),
        }, required=["bucket"]),
        "azure": obj("An Azure Blob Storage container.", {
            "account": string("Storage account name.", minLength=3, maxLength=24, pattern=r"^[a-z0-9]+$"),
            "container": string("Blob container name.", minLength=3, maxLength=63, pattern=DNS_LABEL),
            "prefix": string("Blob name prefix inside the container. Default: none.", maxLength=512),
            "endpoint": string("Endpoint URL override (e.g. Azurite). Default: "
                               "https://ACCOUNT.blob.core.windows.net.", maxLength=512, pattern=URL_PATTERN),
            cred: secret_ref("Secret with AZURE_STORAGE_KEY (the storage account's shared key; SAS tokens are not supported)."),
        }, required=["account", "container", cred]),
        "local": with_rules(obj("A directory on a PersistentVolumeClaim (claimName), for air-gapped storage. "
                     "claimName is required: without it nothing would be mounted at path, and a Job's repository "
                     "would be in its container's own filesystem, gone with the Pod (the controller refuses such a "
                     "spec with Ready=False naming local.claimName).", {
                         "path": string("Absolute directory of the repository in the Jobs' containers. When "
                                        "claimName is set, the claim is mounted there: the repository is the "
                                        "claim's root directory.", minLength=1, maxLength=4096,
                                        pattern=r"^/.*$"),
                         "claimName": object_name("PersistentVolumeClaim that holds the repository, in the "
                                                  "policy's own namespace, where the Jobs of a pvc source run. A "
                                                  "command source's Jobs run in the shared backup namespace and may "
                                                  "not name a claim there (another tenant's could have the name). "
                                                  "Required (see local)."),
                     }, required=["path"]),
            rule("has(self.claimName)", "claimName: a local repository must name the PersistentVolumeClaim that holds "
                 "it; without one the repository would be lost with each Job's Pod", field_path=".claimName")),
        "expectedIdentity": expected_identity(),
    }, required=None, oneOf=one_of("s3", "gcs", "azure", "local"),
        **{"x-kubernetes-validations": [exactly_one("repository", "s3", "gcs", "azure", "local")]})


# The pins' shapes, as the engine prints them (Swift: ExpectedRepositoryIdentity.errors, RepositoryIdentity).
REPOSITORY_ID = r"^[0-9a-f]{32}$"
SIGNING_KEY = r"^[0-9a-f]{64}$"


def expected_identity():
    """A repository's identity stated by the admin (Swift: ExpectedRepositoryIdentity)."""
    return obj(
        "The repository's identity as you state it, instead of trusting the first run: every Job that opens this "
        "repository (backups, prunes, verifies, restores and drills, key rotations, copies from or to it) passes it "
        "to the engine from its first run on (--expect-repository-id and --expect-signing-key, a copy's target "
        "--to-expect-*), on a RestoreOnly policy and after a status loss too, and the engine refuses a repository "
        "with another id or signing key (exit 5, nothing written into it) and does not create one where none is. "
        "Wins over the identity recorded in status (status.repositoryIdentity, for a replica "
        "status.replicas[].repositoryIdentity); a recorded one that differs raises a Warning Event "
        "RepositoryIdentityMismatch naming this field. Read the values from that status field on the cluster that "
        "created the repository (id, signingKey), or from the engine's JSON result (repositoryId, signingKey). "
        "Default: none (the first successful run's identity is recorded and pinned).", {
            "repositoryId": string("The repository id: 32 lowercase hex digits (status.repositoryIdentity.id, the "
                                   "engine result's repositoryId).", pattern=REPOSITORY_ID, minLength=32,
                                   maxLength=32),
            "signingKey": string("The repository's hex Ed25519 public signing key: 64 lowercase hex digits "
                                 "(status.repositoryIdentity.signingKey, the engine result's signingKey).",
                                 pattern=SIGNING_KEY, minLength=64, maxLength=64),
        }, required=["repositoryId", "signingKey"])


def encryption_schema(desc="Client-side encryption: AES-256-GCM data keys per data type, wrapped by a key service "
                           "(envelope encryption), with signed snapshots."):
    return obj(desc, {
                   "kms": obj("The key service that wraps the data keys. Set exactly one of vaultTransit, awsKms, "
                              "localKeySecretRef, azureKeyVault, gcpKms.", {
                                  "vaultTransit": obj("HashiCorp Vault or OpenBao Transit secrets engine.", {
                                      "address": string("Vault address, e.g. https://vault.vault:8200.",
                                                        maxLength=512, pattern=URL_PATTERN),
                                      "mount": string("Mount path of the transit engine. Default: transit.",
                                                      maxLength=256, default="transit",
                                                      pattern=r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$"),
                                      "key": string("Name of the transit key.", minLength=1, maxLength=256,
                                                    pattern=r"^[A-Za-z0-9_.-]+$"),
                                      "authSecretRef": secret_ref("Secret holding a Vault token.",
                                                                  default_key="token"),
                                      "caSecretRef": secret_ref("Secret holding the PEM CA bundle for HTTPS to Vault. "
                                                                "Default: the system trust store.",
                                                                default_key="ca.crt"),
                                  }, required=["address", "key", "authSecretRef"]),
                                  "awsKms": obj("AWS Key Management Service.", {
                                      "keyId": string("Key id, ARN or alias (alias/NAME).", minLength=1,
                                                      maxLength=2048),
                                      "region": string("Region of the key. Default: us-east-1.", maxLength=64,
                                                       default="us-east-1", pattern=r"^[a-z0-9-]+$"),
                                      "endpoint": string("Endpoint URL override (e.g. moto in tests). Default: the "
                                                         "AWS endpoint of the region.", maxLength=512,
                                                         pattern=URL_PATTERN),
                                      "credentialsSecretRef": secret_ref("Secret with AWS_ACCESS_KEY_ID and "
                                                                         "AWS_SECRET_ACCESS_KEY."),
                                  }, required=["keyId"]),
                                  "localKeySecretRef": secret_ref("Secret holding a local 32-byte master key "
                                                                  "(raw or base64). For air-gapped clusters; the "
                                                                  "key never leaves the cluster.",
                                                                  default_key="key"),
                                  "azureKeyVault": obj("Azure Key Vault key (wrapKey/unwrapKey with RSA-OAEP-256).", {
                                      "vaultURL": string("Vault URL, e.g. https://NAME.vault.azure.net.",
                                                         maxLength=512, pattern=URL_PATTERN),
                                      "keyName": string("Name of the key in the vault.", minLength=1, maxLength=127,
                                                        pattern=r"^[0-9A-Za-z-]+$"),
                                      "keyVersion": string("Key version. Default: the current version.",
                                                           maxLength=64, pattern=r"^[0-9A-Za-z]*$"),
                                      "authorityHost": string("Microsoft Entra token endpoint host. Default: "
                                                              "https://login.microsoftonline.com.", maxLength=512,
                                                              pattern=URL_PATTERN),
                                      "credentialsSecretRef": secret_ref("Secret with AZURE_TENANT_ID, "
                                                                         "AZURE_CLIENT_ID and AZURE_CLIENT_SECRET of a "
                                                                         "service principal allowed to wrap and "
                                                                         "unwrap with the key."),
                                  }, required=["vaultURL", "keyName", "credentialsSecretRef"]),
                                  "gcpKms": obj("Google Cloud KMS key (encrypt/decrypt).", {
                                      "keyName": string("Full key name: projects/P/locations/L/keyRings/R/"
                                                        "cryptoKeys/K.", maxLength=512,
                                                        pattern=r"^projects/[^/]+/locations/[^/]+/keyRings/[^/]+/"
                                                                r"cryptoKeys/[^/]+$"),
                                      "endpoint": string("Endpoint URL override (tests). Default: "
                                                         "https://cloudkms.googleapis.com.", maxLength=512,
                                                         pattern=URL_PATTERN),
                                      "credentialsSecretRef": secret_ref("Secret holding a service-account JSON key.",
                                                                         default_key="service-account.json",
                                                                         key_desc="Key of the service-account JSON "
                                                                                  "inside the Secret. Default: "
                                                                                  "service-account.json."),
                                  }, required=["keyName"]),
                                  "allowPlaintextHTTP": boolean(
                                      "Allow an http:// address or endpoint of the key service (vaultTransit.address, "
                                      "awsKms.endpoint, azureKeyVault.vaultURL and authorityHost, gcpKms.endpoint): "
                                      "the Vault token, cloud credentials and plaintext data keys then cross the "
                                      "network unencrypted. Only for a key service on the same trusted host or "
                                      "network. Default: false (such an address is refused).", default=False),
                              }, oneOf=one_of("vaultTransit", "awsKms", "localKeySecretRef", "azureKeyVault",
                                              "gcpKms"),
                              **{"x-kubernetes-validations": [exactly_one(
                                  "kms", "vaultTransit", "awsKms", "localKeySecretRef", "azureKeyVault", "gcpKms")]
                                 + [plaintext_rule(kind, field) for kind, field in PLAINTEXT_KMS_FIELDS]}),
                   "keyRotationDays": integer("Days between key rotations (1-90; the original design requires at "
                                              "most 90). The controller runs a rotation when this many days have "
                                              "passed since status.lastKeyRotation. Default: 90.", fmt="int32",
                                              minimum=1, maximum=90, default=90),
                   "rotationKeysSecretRef": local_ref("Only with kms.localKeySecretRef: the Secret new master keys "
                                                      "are taken from when a rotation is due. Each rotation uses "
                                                      "the first entry, by key name, after the one in use "
                                                      "(status.currentKey), e.g. key-2027-02 after key-2026-11; add "
                                                      "the next entry before the rotation is due and keep the "
                                                      "entry in use. Without it, a due rotation of a local key "
                                                      "reports KeyRotationDue=True/NoNewKey."),
               }, required=["kms"])


def retention_schema():
    n = "(at least 0; 0 keeps none by this rule)."
    counts = ["keepLast", "keepHourly", "keepDaily", "keepWeekly", "keepMonthly", "keepYearly"]
    any_set = " || ".join(f"has(self.{c})" for c in counts + ["maxAge"])
    keeps = " || ".join([f"(has(self.{c}) && self.{c} > 0)" for c in counts] + ["has(self.maxAge)"])
    keeps_something = rule(f"!({any_set}) || {keeps}",
                           "retention: the rules keep no snapshot; set maxAge or a keep rule above 0, or leave "
                           "retention empty for the tier's rules")
    return with_rules(obj("Which snapshots `forget --prune` keeps; a snapshot is kept when any rule keeps it. Setting any "
               "rule replaces all of the tier's rules. Tier rules: critical keepLast 288, keepHourly 168, keepDaily "
               "90, keepWeekly 104, keepMonthly 86, keepYearly 7 (7 years); important keepLast 48, keepDaily 90, "
               "keepWeekly 104, keepMonthly 26, keepYearly 2 (2 years); standard keepLast 7, maxAge 90d; archive keepLast 7, "
               "maxAge 7y. A calendar rule keepX: N is sure to keep a snapshot N - 2 whole units old (the newest "
               "snapshot may open the current unit, the oldest kept one close its unit), so 86 months keep one at "
               "least 7 years old. Compliance profiles raise keepMonthly when that span is shorter than they require "
               "(sox 7y, hipaa 6y, pci-dss 1y); status reports which applied.", {
                   "keepLast": integer(f"Keep the newest N snapshots {n}", fmt="int32", minimum=0),
                   "keepHourly": integer(f"Keep the newest snapshot of each of the last N hours {n}", fmt="int32",
                                         minimum=0),
                   "keepDaily": integer(f"Keep the newest snapshot of each of the last N days {n}", fmt="int32",
                                        minimum=0),
                   "keepWeekly": integer(f"Keep the newest snapshot of each of the last N weeks {n}", fmt="int32",
                                         minimum=0),
                   "keepMonthly": integer(f"Keep the newest snapshot of each of the last N months {n}", fmt="int32",
                                          minimum=0),
                   "keepYearly": integer(f"Keep the newest snapshot of each of the last N years {n}", fmt="int32",
                                         minimum=0),
                   "maxAge": duration("Keep every snapshot taken within this duration of the newest snapshot "
                                      "(restic's --keep-within); like the other rules it only adds to what is kept. "
                                      "Measured from the newest snapshot, not from now, so stopped backups do not "
                                      "age out."),
               }), keeps_something)


def backup_policy_spec():
    # A replica must be another repository than the policy's own (Validation.swift: "is the policy's own repository").
    # The same location: the same kind, endpoint, bucket (account and container) and prefix, or the same local path
    # and claim, whatever the credentials (RepositorySpec.sameLocation).
    def opt(x, f):
        return f"(has({x}.{f}) ? {x}.{f} : '')"

    def same(kind, fields, optional):
        a, b = f"r.repository.{kind}", f"self.repository.{kind}"
        eq = [f"{a}.{f} == {b}.{f}" for f in fields] + [f"{opt(a, f)} == {opt(b, f)}" for f in optional]
        return f"(has({a}) && has({b}) && " + " && ".join(eq) + ")"

    same_location = " || ".join([
        same("s3", ["bucket"], ["prefix", "endpoint"]), same("gcs", ["bucket"], ["prefix", "endpoint"]),
        same("azure", ["account", "container"], ["prefix", "endpoint"]), same("local", ["path"], ["claimName"]),
    ])
    def empty(list_path):
        return f"(!has({list_path}) || size({list_path}) == 0)"

    return with_rules(backup_policy_spec_schema(), rule(
        f"!has(self.replicas) || self.replicas.all(r, !({same_location}))",
        "replicas: a replica's repository is the policy's own repository (the same location); give each replica "
        "another location", field_path=".replicas"),
        # Validation.swift hooks(): hooks only with a claim source.
        rule(f"(!has(self.source.command) && !has(self.source.objects)) || !has(self.hooks) || ({empty('self.hooks.pre')} && "
             f"{empty('self.hooks.post')})",
             "hooks: hooks run only with a claim source (source.pvc or source.claims): a dump command is itself the "
             "consistency point; remove hooks or back up the application's claim", field_path=".hooks"),
        # Validation.swift objects(): objects are stored in a claim's snapshot.
        rule("!has(self.source.command) || !has(self.objects)",
             "objects: objects are stored in the snapshot of a claim, or alone: set source.pvc, source.claims or "
             "source.objects, or remove objects", field_path=".objects"))


def backup_policy_spec_schema():
    return obj("What to back up, how often, where, with which keys, how long to keep it and which RPO it must "
               "hold. " + TIER_TABLE, {
                   "tier": string("Protection tier; sets the default schedule, RPO, retention, RTO and drill "
                                  "frequency. " + TIER_TABLE, enum=TIERS),
                   "schedule": string("Cron schedule (5 fields: minute hour day-of-month month day-of-week, or "
                                      "@hourly/@daily/@weekly/@monthly/@yearly/@every DURATION), in UTC. Default: "
                                      "at least every half of the effective RPO, so a backup may take as long as "
                                      "the interval before RPOMet turns False (critical */2 * * * *, important "
                                      "*/15 * * * *, standard 0 */2 * * *, archive 0 */12 * * *; never more often "
                                      "than every minute). An explicit schedule is never changed; status warns when "
                                      "it is slower than the RPO.", maxLength=128,
                                      pattern=CRON_PATTERN),
                   "rpo": duration("Recovery point objective: the maximum age of the data in the newest successful "
                                   "snapshot, counted from the snapshot's point in time (when its backup started "
                                   "reading), not from when the backup finished. "
                                   "Overrides the tier's RPO (critical 5m, important 30m, standard 4h, archive "
                                   "24h); compliance profiles still tighten it (sox 1m, gdpr 5m, pci-dss 1m, "
                                   "hipaa 5m)."),
                   "compliance": compliance("this policy's data"),
                   "dataType": string("Kind of data; selects the data key (backup-database-key, backup-files-key, "
                                      "backup-logs-key). Default: files.", enum=["database", "files", "logs"],
                                      default="files"),
                   "compression": string("How hard the engine compresses the data: auto (zstd level 1, fast, "
                                         "about 2 % larger than better), better (zstd level 3, restic's level), "
                                         "max (zstd level 9), off (for data that is already compressed or "
                                         "encrypted). Default: auto.", enum=["off", "auto", "better", "max"]),
                   "source": obj("What to back up. Set exactly one of pvc, command, claims, objects.", {
                       "pvc": obj("A PersistentVolumeClaim in this namespace, always mounted read-only. A ReadWriteOnce or "
                                  "ReadWriteOncePod claim mounted by a running pod is backed up on that pod's node "
                                  "(status.placement).", {
                           "claimName": object_name("Name of the PersistentVolumeClaim."),
                           "subPath": string("Directory inside the volume to back up. Default: the whole volume.",
                                             maxLength=4096, pattern=r"^[^/].*$"),
                           "readOnly": boolean("Mount the claim read-only. Always true; present so manifests can "
                                               "state it. Default: true.", default=True, enum=[True]),
                           **claim_read_settings(),
                       }, required=["claimName"]),
                       "command": container("A dump command whose standard output is streamed into the engine "
                                            "(for example pg_dump).", extra={
                                                "fileName": string("Name of the stream inside the snapshot. "
                                                                   "Default: dump.", maxLength=255, default="dump",
                                                                   pattern=r"^[^/]+$"),
                                            }),
                       "claims": obj(
                           "Several PersistentVolumeClaims of this namespace, selected by labels (selector) or by "
                           "name (claimNames; set exactly one of the two), each backed up as a snapshot of its own, "
                           "tagged policy=NAMESPACE/NAME and claim=CLAIM, by a backup CronJob of its own "
                           "(<ns>-<policy>-<claim>-<hash>-backup, cut to 52 characters) placed next to the pod that "
                           "mounts the claim (RWO placement, per claim). Claims created, deleted or relabelled are "
                           "followed without a restart: the CronJobs of claims no longer selected are deleted (their "
                           "snapshots stay). status.claims shows each claim's last backup (LastBackupSucceeded is False, "
                           "ClaimBackupFailed, while a claim's last backup failed); the RPO counts the oldest "
                           "of the claims' newest snapshots, and is not met while a selected claim has none. A "
                           "restore or drill names the claim (restore.claim, spec.claim). At most 64 claims: of more "
                           "that the selector matches, the first 64 by name are backed up and Ready says so "
                           "(ReadyWithWarnings).", dict({
                               "selector": label_selector(
                                   "The claims whose labels match (matchLabels and matchExpressions, as a "
                                   "Kubernetes label selector). An empty selector ({}) selects every claim of the "
                                   "namespace."),
                               "claimNames": array("The claims by name (a missing one is waited for, as a pvc "
                                                   "source's claim is).",
                                                   object_name("Name of a PersistentVolumeClaim."), minItems=1,
                                                   maxItems=64),
                               "subPath": string("Directory inside each volume to back up. Default: the whole "
                                                 "volume.", maxLength=4096, pattern=r"^[^/].*$"),
                           }, **claim_read_settings()),
                           oneOf=one_of("selector", "claimNames"),
                           **{"x-kubernetes-validations": [exactly_one("claims", "selector", "claimNames")]}),
                       "objects": obj(
                           "Only this namespace's Kubernetes objects, no volume ({}): each snapshot holds the entry "
                           "_kubernetes alone, as a claim's snapshot holds it beside the claim. spec.objects selects "
                           "what is exported (default: the standard kinds), by the same init container, "
                           "ServiceAccount token and RoleBinding botrt-objects-backup as with a claim source; the "
                           "backup pods run in the backup namespace and mount nothing of the application. A "
                           "RecoveryPlan restores the objects with into.objects (into.pvc and into.command are "
                           "refused: there are no files or stream); a drill restores the snapshot into its "
                           "scratch emptyDir and verifies it. spec.hooks is refused.", {}),
                   }, oneOf=one_of("pvc", "command", "claims", "objects"),
                       **{"x-kubernetes-validations": [exactly_one("source", "pvc", "command", "claims", "objects")]}),
                   "repository": repository_schema("Where the encrypted repository is stored. Set exactly one of "
                                                   "s3, gcs, azure, local."),
                   "encryption": encryption_schema(),
                   "retention": retention_schema(),
                   "suspend": boolean("Stop scheduling new backups (running ones finish). RPO tracking continues. "
                                      "Default: false.", default=False),
                   "verify": obj("A periodic check of the whole repository on its own schedule, as a CronJob "
                                 "(<policy>-verify): `botrt-engine verify --all --read-data-subset SUBSET` checks "
                                 "every snapshot's structure and reads, decrypts and re-hashes a subset of the "
                                 "packs. Drills verify only the snapshot they restore; this covers the rest. "
                                 "Suspended with spec.suspend. Default: none.", {
                                     "schedule": string("Cron schedule (5 fields, or @hourly/@daily/@weekly/"
                                                        "@monthly/@yearly/@every DURATION), in UTC.",
                                                        maxLength=128, pattern=CRON_PATTERN),
                                     "readDataSubset": string("The packs read: a percentage (10%, a random "
                                                              "sample each run) or n/t (1/7: a fixed part; "
                                                              "running 1/7 to 7/7 reads every pack once). "
                                                              "Default: 10%.", maxLength=16,
                                                              pattern=r"^([0-9]+(\.[0-9]+)?%|[0-9]+/[0-9]+)$"),
                                 }, required=["schedule"]),
                   "trigger": trigger("backup"),
                   "backupNamespace": string("Namespace where the backup Jobs, CronJobs and NetworkPolicies run. "
                                             "Default: the controller's backup namespace (botrt-backup). It must "
                                             "not exist yet (the controller creates it) or already be a backup "
                                             "namespace (label dr.botrt.io/backup-namespace=true); any other "
                                             "existing namespace makes the policy Ready=False "
                                             "(BackupNamespaceNotAllowed).",
                                             maxLength=63, pattern=DNS_LABEL),
                   "deleteBackupsOnDelete": boolean("Delete the stored backups when this policy is deleted. "
                                                    "Default: false (backups outlive the policy).", default=False),
                   "mode": string("Backup: back up on the schedule, prune, verify, rotate keys and copy to the "
                                  "replicas. RestoreOnly: for a disaster recovery cluster that applies the same "
                                  "policies from git (Velero's read-only backup storage location): nothing writes "
                                  "to the repository (no backup, prune or verify CronJob, no on-demand run, no key "
                                  "rotation, no replica copy, no repository deletion on delete), while "
                                  "RecoveryPlans and DRDrills restore from it and its replicas, opening them "
                                  "read-only (the engine's --read-only: no lock, audit or other object is written). "
                                  "Ready is True with "
                                  "reason RestoreOnly, ScheduleActive False (RestoreOnly) and RPOMet Unknown "
                                  "(RestoreOnly: not evaluated). The controller's --restore-only makes every policy "
                                  "RestoreOnly. Default: Backup.", enum=["Backup", "RestoreOnly"],
                                  default="Backup"),
                   "hooks": hooks_schema(),
                   "objects": objects_backup_schema(),
                   "replicas": array("Further repositories the snapshots are copied to after each successful "
                                     "backup (`botrt-engine copy`, incremental), e.g. a second region or provider.",
                                     obj("One replica repository.", {
                                         "name": string("Replica name, unique within the policy.", minLength=1,
                                                        maxLength=63, pattern=DNS_LABEL),
                                         "repository": repository_schema("Where the replica is stored. Set exactly "
                                                                         "one of s3, gcs, azure, local."),
                                         "encryption": encryption_schema("The replica's keys. Default: the policy's "
                                                                         "encryption; when different, snapshots are "
                                                                         "re-encrypted under these keys."),
                                         "countsForRPO": boolean("The replica counts for RPOMet: the policy meets "
                                                                 "its RPO only when the newest backup this replica "
                                                                 "holds is within the RPO target too, and "
                                                                 "status.rpoAgeSeconds is then the oldest of the "
                                                                 "primary's and the counted replicas' newest backups. "
                                                                 "Default: false.", default=False),
                                     }, required=["name", "repository"]), maxItems=4,
                                     **{"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]}),
                   "caSecretRef": secret_ref("Secret holding PEM CA certificates trusted, in addition to the "
                                             "system's, for every HTTPS connection of this policy's Jobs: the "
                                             "repository and replica storage (S3, GCS, Azure) and the key service "
                                             "(Vault, AWS KMS, Azure Key Vault, Google Cloud KMS); for private CAs. "
                                             "kms.vaultTransit.caSecretRef, when set, replaces the trust for Vault "
                                             "alone.", default_key="ca.crt"),
                   "resources": resources(),
                   "successfulJobsHistoryLimit": integer("Finished successful Jobs to keep. Default: 3.",
                                                         fmt="int32", minimum=0, maximum=100, default=3),
                   "failedJobsHistoryLimit": integer("Finished failed Jobs to keep. Default: 3.", fmt="int32",
                                                     minimum=0, maximum=100, default=3),
               }, required=["tier", "source", "repository", "encryption"])


def hook_schema(phase, default_on_error):
    """One hook of spec.hooks (Swift: BackupHook)."""
    return obj(f"One {phase} hook: a command the controller runs through pods/exec in every Running pod of the "
               "policy's namespace that podSelector matches (at most 16, in name order; the rest are left out and "
               "the result says so). No matching pod: the hook is recorded Skipped with an Event, and the backup "
               "goes on.", {
        "name": string("Hook name, unique within its list.", minLength=1, maxLength=63, pattern=DNS_LABEL),
        "podSelector": obj("The application pods the hook runs in, in the policy's namespace.", {
            "matchLabels": obj("Labels every selected pod has (at least one).", {},
                               additionalProperties=string("Label value.", maxLength=63), minProperties=1),
        }, required=["matchLabels"]),
        "container": string("The container the command runs in. Default: the pod's first container.",
                            maxLength=63, pattern=DNS_LABEL),
        "command": array("The program and its arguments, exec'd directly (not through a shell: use "
                         "[sh, -c, '...'] for a pipeline), e.g. [fsfreeze, --freeze, /data].",
                         string("One word.", maxLength=4096), minItems=1, maxItems=64),
        "timeoutSeconds": integer("How long the command may run; it is then recorded TimedOut (its exec stream is "
                                  "closed). 1 to 3600. Default: 60.", fmt="int32", minimum=1, maximum=3600,
                                  default=60),
        "onError": string(f"What a failed or timed-out hook does. Abort: "
                          + ("the backup does not run (its gate fails and the Job fails); the post hooks still "
                             "run." if phase == "pre" else "the run's hooks are recorded Failed (post hooks never "
                             "stop a backup that already ran).")
                          + f" Continue: recorded (Event HookFailed, status.lastHooks) and the run goes on. "
                          f"Default: {default_on_error}.", enum=["Abort", "Continue"], default=default_on_error),
    }, required=["name", "podSelector", "command"])


def hooks_schema():
    return obj(
        "Application-consistent hooks (source.pvc, or source.claims, where they run around each claim's backup "
        "Job; a dump command is itself the consistency point and is refused with hooks): commands the controller runs in the application's pods through pods/exec, e.g. "
        "fsfreeze or a database's flush-and-lock. The backup Pod starts with an init container (the gate, "
        "`botrt-engine gate`) that waits until the controller has run the pre hooks and marked the Pod's "
        "annotation dr.botrt.io/pre-hooks done; failed (an Abort hook failed, or the controller may not exec) "
        "fails the Pod before any data is read. The post hooks run once the backup Job ended, Complete or "
        "Failed (including a Job whose gate failed), exactly once (the Job's annotation dr.botrt.io/post-hooks). "
        "A hooked backup Job is not retried (backoffLimit 0): the next scheduled run is the retry. Needs an "
        "opt-in: a RoleBinding in the policy's namespace binding the ClusterRole botrt-hook-executor to the "
        "controller's ServiceAccount (docs/security-model.md); without it the condition HooksPermitted is False "
        "and the backup does not run. Results: status.lastHooks, Events HooksRan and HookFailed.", {
            "pre": array("Run in order before the backup reads the claim.", hook_schema("pre", "Abort"),
                         maxItems=8),
            "post": array("Run in order after the backup Job ended, whatever its outcome.",
                          hook_schema("post", "Continue"), maxItems=8),
        })


def repository_identity(desc):
    """A repository's pins (Swift: RepositoryIdentity): the primary's and each replica's."""
    return obj(desc, {
        "repository": string("The repository URL the pins belong to (the Jobs' --repo).", maxLength=4096),
        "id": string("The repository id.", pattern=REPOSITORY_ID, maxLength=32),
        "signingKey": string("The hex Ed25519 public key that signs the repository's config, key files "
                             "and manifests.", pattern=SIGNING_KEY, maxLength=64),
        "recordedAt": date_time("When the run the pins came from finished."),
        "recordedFrom": string("The Job whose result the pins came from.", maxLength=63),
    }, required=["repository", "id", "signingKey"])


def run_progress(what, desc):
    return obj(desc, {
        "job": string(f"The {what} Job.", maxLength=63),
        "phase": string("The engine's phase (backup or restore), once it reported progress.", maxLength=16),
        "startTime": date_time("When the Job started."),
        "bytesDone": integer("Bytes read (backup) or written (restore) so far.", minimum=0),
        "filesDone": integer("Files read so far (a backup; a restore counts bytes only).", minimum=0),
        "totalBytes": integer("The bytes the run will process: the engine's own total (a restore knows it), or "
                              "for a backup the bytes the previous successful backup read, an estimate "
                              "(totalBytesSource). Unset when unknown or already exceeded.", minimum=0),
        "totalBytesSource": string("Engine (counted by the engine) or PreviousBackup (an estimate: what the "
                                   "previous successful backup read).", enum=["Engine", "PreviousBackup"]),
        "percent": integer("bytesDone of totalBytes, 0 to 99 while the run runs; unset without totalBytes.",
                           fmt="int32", minimum=0, maximum=100),
        "estimatedCompletion": date_time("When the run should end at its rate so far; unset without totalBytes."),
        "updateTime": date_time("When the controller read these values from the engine's progress lines in the "
                                "run's Pod log (at most every 10 s)."),
    }, required=["job", "bytesDone", "updateTime"])


def backup_policy_status():
    return obj("Observed state, written by the controller through the status subresource.", {
        "observedGeneration": observed_generation(),
        "conditions": conditions("Ready, ScheduleActive, LastBackupSucceeded, RPOMet, KeyRotationDue, "
                                  "ReplicasInSync and ReplicaKeyRotationDue (only with spec.replicas), RetentionApplied (once a "
                                  "prune Job finished: False names the failed Job), RepositoryVerified (only with "
                                  "spec.verify: Unknown until a verify Job finished, False names the failed Job and "
                                  "the first problem)"),
        "lastSuccessfulBackup": date_time("Completion time of the newest successful backup."),
        "lastSnapshotTime": date_time("Point in time of the newest successful snapshot: the engine's snapshot "
                                      "time (when the backup started reading the data), else the backup Job's "
                                      "start time. RPO ages are counted from it."),
        "lastBackupAttempt": date_time("Start time of the newest backup run, successful or not."),
        "lastSnapshot": string("Id of the newest successful snapshot.", maxLength=128),
        "lastBackupBytes": integer("Bytes read from the source by the newest successful backup.", minimum=0),
        "lastBackupStoredBytes": integer("New bytes stored (after deduplication, compression and encryption) by "
                                         "the newest successful backup.", minimum=0),
        "lastBackupDurationSeconds": number("Duration of the newest successful backup in seconds.", minimum=0),
        "repositoryStoredBytes": integer("The repository's stored bytes (its pack files' sizes summed, as the "
                                         "engine lists them) after the newest successful backup or prune, "
                                         "whichever finished last. Unset until an engine that reports it ran.",
                                         minimum=0),
        "rpoAgeSeconds": integer("Age of the newest successful snapshot's data (from status.lastSnapshotTime, not "
                                 "from when the backup finished) when status was last written.", minimum=0),
        "rpoTargetSeconds": integer("The effective RPO target in seconds.", minimum=0),
        "rpoSource": string("What set the RPO target: tier:NAME, override (spec.rpo) or compliance:PROFILE.",
                            maxLength=64),
        "effectiveSchedule": string("The cron schedule in use (spec.schedule, or the tier default tightened to "
                                    "run at least every half RPO).", maxLength=128),
        "scheduleSource": string("What set the schedule: tier:NAME, override (spec.schedule), or "
                                 "rpo (tightened to run at least every half RPO).", maxLength=64),
        "nextScheduledRun": date_time("When the next scheduled backup starts."),
        "lastKeyRotation": date_time("When the data keys were last rotated."),
        "nextKeyRotation": date_time("When the next key rotation is due."),
        "currentKey": string("The key wrapping the repository since the last rotation, when it is not the one "
                             "spec names: the AWS KMS key id the rotation created, or the entry of "
                             "spec.encryption.rotationKeysSecretRef in use.", maxLength=2048),
        "lastHandledKeyRotationRequest": string("The dr.botrt.io/rotate-keys-now annotation value last acted on "
                                                "(request:VALUE); a new value rotates the keys once.",
                                                maxLength=320),
        "lastHandledTrigger": string("The spec.trigger or dr.botrt.io/run-now value last acted on.",
                                     maxLength=63),
        "backupNamespace": string("Namespace holding this policy's Jobs and CronJobs.", maxLength=63),
        "lastFailure": string("Plain-sentence description of the newest failed run, if it is newer than the "
                              "newest success.", maxLength=4096),
        "replicas": array("Copy progress per replica (spec.replicas), written after each copy Job.",
                          obj("One replica's state.", {
            "name": string("Replica name (spec.replicas[].name).", maxLength=63),
            "state": string("Pending (nothing copied yet), Copying (a copy Job runs), InSync (the replica holds the "
                            "primary's newest snapshot) or Failed (the last copy failed; the next successful backup "
                            "starts a new copy).", enum=["Pending", "Copying", "InSync", "Failed"]),
            "lastCopiedSnapshot": string("Id of the primary's snapshot that the replica's newest copy came from.",
                                         maxLength=128),
            "replicaSnapshot": string("Id of that snapshot's copy in the replica repository (restore from the "
                                      "replica with it); unset when the copy found it already there.",
                                      maxLength=128),
            "lastCopiedBackupTime": date_time("Completion time of the primary backup that the replica's newest copy "
                                              "came from."),
            "lastCopyTime": date_time("When the newest successful copy finished."),
            "lagSeconds": integer("Seconds between the primary's newest successful backup and the newest backup "
                                  "the replica holds (0 when in sync); unset before the first copy.", minimum=0),
            "copyJob": string("Name of the copy Job running or run last (in status.backupNamespace, or the "
                              "policy's namespace for a PVC source).", maxLength=63),
            "message": string("What happened in the last copy, in a sentence.", maxLength=4096),
            "lastKeyRotation": date_time("When the replica's data keys were last rewrapped: by its own rotation "
                                         "(a replica with its own encryption) or following the primary's."),
            "nextKeyRotation": date_time("When the replica's own key-encryption key is due for rotation (only for a "
                                         "replica with its own encryption)."),
            "currentKey": string("The key wrapping the replica's data keys since its last rotation, when it is not "
                                 "the one in the spec (an AWS KMS key id, or the entry of the rotation keys Secret).",
                                 maxLength=2048),
            "lastHandledKeyRotationRequest": string("The dr.botrt.io/rotate-keys-now value last handled for this "
                                                    "replica.", maxLength=256),
            "keyRotation": string("The state of the replica's key rotation, in a sentence.", maxLength=4096),
            "repositoryIdentity": repository_identity(
                "The replica repository's id and signing key, recorded from the first successful copy whose result "
                "names the replica's repository, and passed to every later Job that opens the replica: copies "
                "(--to-expect-repository-id, --to-expect-signing-key), its key rotations, and restores, verifies "
                "and drills from it (--expect-repository-id, --expect-signing-key). A replica replaced under the "
                "same location is refused. Dropped and recorded again when the replica's repository names another "
                "location."),
        }, required=["name"]), maxItems=4),
        "lastVerify": obj(
            "The newest finished run of the periodic verify (spec.verify; botrt-engine verify --all "
            "--read-data-subset), newest by finish time; unset without spec.verify.", {
                "time": date_time("When the verify Job finished."),
                "job": string("The verify Job (in status.backupNamespace).", maxLength=63),
                "succeeded": boolean("Whether the repository verified without a problem."),
                "snapshots": integer("Snapshots checked, when the engine reported it.", fmt="int32", minimum=0),
                "bytesDownloaded": integer("Bytes of pack data read from the storage to check content.",
                                           minimum=0),
                "errors": integer("Problems found (damaged or missing packs, index or snapshot objects); unset "
                                  "when a failed run reported none (e.g. the repository could not be opened).",
                                  fmt="int32", minimum=0),
                "message": string("The first problem, or why the run failed.", maxLength=4096),
            }, required=["job", "succeeded"]),
        "sourceClaim": obj(
            "The source claim (spec.source.pvc) as the controller last read it (a get by name each reconcile); "
            "a RecoveryPlan restore with into.pvc.create creates a missing claim from it. Kept when the claim is "
            "gone, so a lost namespace can be restored; unset for a command source.", {
                "name": string("Name of the claim.", maxLength=253),
                "namespace": string("Namespace of the claim (the policy's).", maxLength=63),
                "accessModes": array("spec.accessModes.", string("An access mode.", maxLength=32), maxItems=4),
                "storageClassName": string("spec.storageClassName; unset when the claim names none or the "
                                           "empty class.", maxLength=253),
                "noStorageClass": boolean("True when the claim names the empty class (storageClassName \"\": "
                                          "a pre-made volume binds, no dynamic provisioning); a claim created "
                                          "from the record gets the empty class too."),
                "volumeMode": string("spec.volumeMode.", maxLength=32),
                "storage": string("spec.resources.requests.storage, e.g. 10Gi.", maxLength=64),
                "observedTime": date_time("When the claim was first read with this spec."),
            }, required=["name", "namespace"]),
        "placement": obj(
            "Where the backup pods run (spec.source.pvc): a ReadWriteOnce or ReadWriteOncePod claim mounted by a "
            "running pod can only be mounted on that pod's node, so the backup CronJob's and on-demand Job's pods "
            "get a required node affinity for that node (by its name) and that pod's "
            "tolerations. Unset when the backup may run on any node: the claim is mounted by no running pod, or "
            "it is ReadWriteMany or ReadOnlyMany.", {
                "node": string("The node the backup pods are bound to.", maxLength=253),
                "pod": string("The pod that mounts the claim on that node (in the policy's namespace).",
                              maxLength=253),
                "message": string("Where the backup runs and why, in a sentence.", maxLength=1024),
            }, required=["node", "pod"]),
        "claims": array(
            "Each claim of a multi-claim source (spec.source.claims), by name: the selected claims, then claims that "
            "no longer exist (gone: true; their record stays, so a restore can create them again), at most 64.",
            obj("One claim's backups.", {
                "name": string("Name of the claim.", maxLength=253),
                "result": string("Pending (no backup of the claim finished yet), Succeeded, Failed, or Partial (a "
                                 "snapshot was stored but some files could not be read).",
                                 enum=["Pending", "Succeeded", "Failed", "Partial"]),
                "message": string("What the claim's last finished backup did, in a sentence.", maxLength=2048),
                "lastSuccessfulBackup": date_time("When the claim's newest successful backup finished."),
                "lastSnapshotTime": date_time("The point in time of the claim's newest successful snapshot (when its "
                                              "backup started reading); the RPO counts the oldest of these."),
                "lastSnapshotId": string("The id of the claim's newest successful snapshot.", maxLength=128),
                "cronJob": string("The claim's backup CronJob (in the policy's namespace).", maxLength=63),
                "placement": obj(
                    "Where the claim's backup pods run, as status.placement for a pvc source; unset when they may "
                    "run on any node.", {
                        "node": string("The node the backup pods are bound to.", maxLength=253),
                        "pod": string("The pod that mounts the claim on that node.", maxLength=253),
                        "message": string("Where the backup runs and why, in a sentence.", maxLength=1024),
                    }, required=["node", "pod"]),
                "claim": obj(
                    "The claim's spec as last read, as status.sourceClaim for a pvc source: what a RecoveryPlan "
                    "restore of the claim (restore.claim) with into.pvc.create creates a missing claim from.", {
                        "name": string("Name of the claim.", maxLength=253),
                        "namespace": string("Namespace of the claim (the policy's).", maxLength=63),
                        "accessModes": array("spec.accessModes.", string("An access mode.", maxLength=32),
                                             maxItems=4),
                        "storageClassName": string("spec.storageClassName; unset when the claim names none or the "
                                                   "empty class.", maxLength=253),
                        "noStorageClass": boolean("True when the claim names the empty class."),
                        "volumeMode": string("spec.volumeMode.", maxLength=32),
                        "storage": string("spec.resources.requests.storage, e.g. 10Gi.", maxLength=64),
                        "observedTime": date_time("When the claim was first read with this spec."),
                    }, required=["name", "namespace"]),
                "gone": boolean("True when the claim no longer exists; its record is kept."),
            }, required=["name"]), maxItems=64),
        "progress": run_progress(
            "backup", "The backup running now, as the engine reports it (its JSON progress lines in the backup "
            "Pod's log, read at most every 10 s): bytes and files done and, with a total, a percentage and an "
            "estimated completion. Unset when no backup runs; a finished run's figures are in lastBackupBytes and "
            "lastBackupDurationSeconds."),
        "lastHooks": obj("The hooks of the newest backup run that had hooks (spec.hooks).", {
            "job": string("The backup Job.", maxLength=63),
            "pre": string("The pre hooks: Running, Done (the backup went on) or Failed (the backup did not run).",
                          enum=["Running", "Done", "Failed"]),
            "post": string("The post hooks: Running, Done or Failed (a post hook with onError Abort failed, or "
                           "the controller restarted while they ran).", enum=["Running", "Done", "Failed"]),
            "results": array("Each hook's result in each pod, in the order they ran (at most 32).", obj(
                "One hook's result in one pod.", {
                    "name": string("The hook's name.", maxLength=63),
                    "phase": string("Pre or Post.", enum=["Pre", "Post"]),
                    "pod": string("The pod it ran in (unset when Skipped).", maxLength=253),
                    "result": string("Succeeded, Failed, Skipped (no Running pod matched its podSelector) or "
                                     "TimedOut.", enum=["Succeeded", "Failed", "Skipped", "TimedOut"]),
                    "exitCode": integer("The command's exit code, when it exited.", fmt="int32"),
                    "message": string("Why it failed or was skipped, with the end of its standard error (at most "
                                      "256 bytes of it).", maxLength=1024),
                    "time": date_time("When it ended."),
                }, required=["name", "phase", "result"]), maxItems=32),
        }, required=["job"]),
        "repositoryIdentity": repository_identity(
            "The repository's id and signing key, recorded from the first successful backup that reported them and "
            "passed to every later Job (--expect-repository-id, --expect-signing-key), so a repository replaced "
            "under the same location (another config and key files) is refused before any key is used. Dropped "
            "and recorded again when spec.repository names another location."),
    })


# ---------------------------------------------------------------------------------------------
# RecoveryPlan

def restore_destination(desc, field, objects=False):
    names = ("pvc", "command", "objects") if objects else ("pvc", "command")
    return obj(desc, dict({
        "pvc": obj("Restore the files into a PersistentVolumeClaim.", {
            "claimName": object_name("Name of the PersistentVolumeClaim (in the target namespace)."),
            "subPath": string("Directory inside the volume. Default: the volume's root.", maxLength=4096,
                              pattern=r"^[^/].*$"),
            "runAsUser": integer(
                "The user the restore writes as. Default: the engine's user (65532): files are owned by it. 0 "
                "restores every file's recorded owner, group and mode (set-id bits included) as root with the "
                "capabilities CHOWN, DAC_OVERRIDE, FOWNER and FSETID (Pod Security baseline), and leaves the "
                "claim's existing group ownership alone (no fsGroup). Another uid writes as that user.",
                minimum=0, maximum=2147483647),
            "runAsGroup": integer("The group the restore writes as. Default: runAsUser's value when runAsUser is "
                                  "set.", minimum=0, maximum=2147483647),
            "namespace": string("RecoveryPlans only (a DRDrill refuses it: it restores into its scratch namespace). "
                                "Namespace of the claim; the restore Job runs there, with copies of the policy's "
                                "Secrets that go with the Job. Default: the plan's spec.targetNamespace, else the "
                                "plan's namespace. Another namespace than the plan's must allow it (annotation "
                                "dr.botrt.io/recovery-allowed-from), as for spec.targetNamespace.",
                                maxLength=63, pattern=DNS_LABEL),
            "create": obj("RecoveryPlans only (a DRDrill refuses it: it sizes its scratch claim from the source "
                          "claim). Set (even empty, {}): when the claim does not exist, the controller creates it "
                          "from the policy's recorded source claim (the BackupPolicy's status.sourceClaim: access "
                          "modes, storage class, volume mode, storage request) with these overrides, labelled "
                          "app.kubernetes.io/managed-by=botrt-controller and never deleted by it. An existing "
                          "claim is restored into as it is, never changed. Without create, a missing claim leaves "
                          "the restore Job Pending until its timeout.", {
                "storageClassName": string("Storage class of the created claim. Default: the recorded one (the "
                                           "cluster's default class when none was recorded). \"\" asks for no "
                                           "class (a pre-provisioned volume binds).", maxLength=253),
                "size": string("Storage request of the created claim, e.g. 20Gi. Default: the recorded request; "
                               "required when the policy has recorded none (its source is no claim, or the "
                               "controller has not read it yet).", maxLength=64, pattern=QUANTITY),
                "accessModes": array("Access modes of the created claim. Default: the recorded ones, else "
                                     "ReadWriteOnce.", string("An access mode.", enum=ACCESS_MODES),
                                     minItems=1, maxItems=4),
            }),
        }, required=["claimName"]),
        "command": container("A command that reads the restored stream on standard input (for example psql "
                             "or pg_restore).", extra={
                                 "fileName": string("Name of the stream inside the snapshot. Default: dump.",
                                                    maxLength=255, default="dump", pattern=r"^[^/]+$"),
                             }),
    }, **({"objects": restore_objects_schema()} if objects else {})),
        oneOf=one_of(*names), **{"x-kubernetes-validations": [exactly_one(field, *names)]})


KIND_PATTERN = r"^[A-Z][A-Za-z0-9]*(\.[a-z0-9]([-a-z0-9.]*[a-z0-9])?)?$"


def kind_list(desc):
    return array(desc, string("A kind: Kind for the core group (ConfigMap), Kind.group otherwise "
                              "(Deployment.apps, Widget.example.io).", maxLength=317, pattern=KIND_PATTERN),
                 maxItems=64)


def restore_objects_schema():
    return obj(
        "Re-create the snapshot's Kubernetes objects (a BackupPolicy with spec.objects) in a namespace "
        "(`botrt-objects apply`, in the job image). The engine restores the snapshot's _kubernetes entry into a "
        "memory-backed emptyDir of the restore Job; its container then creates the objects there in dependency "
        "order: ServiceAccounts, Secrets, ConfigMaps, Roles, RoleBindings, PersistentVolumeClaims, Services, "
        "custom resources, Deployments, StatefulSets, DaemonSets, Ingresses. Each object loses what the server set "
        "(uid, resourceVersion, generation, creationTimestamp, managedFields, status, ownerReferences, a "
        "Service's clusterIP(s) and nodePorts, a claim's volumeName and binding annotations, a pod template's "
        "nodeName, kubectl's last-applied-configuration); RoleBinding subjects of the source namespace are "
        "mapped to the target. Not re-created: objects with a controller owner (their owner re-creates them), "
        "ServiceAccount token Secrets and the kube-root-ca.crt ConfigMap. An object that exists is left "
        "unchanged and counted as existing: restore a claim's data first (into.pvc with create), then the "
        "objects, so that a restored Deployment mounts the restored claim. The step fails when an object could "
        "not be created, naming it; the others stay. Its container, the only one with a token, runs as the "
        "ServiceAccount botrt-objects-restore of the target namespace (created by the controller), which a "
        "RoleBinding named after the Job (owned by it) binds to the ClusterRole botrt-objects-restorer there: "
        "create of the standard kinds but Roles and RoleBindings (label a ClusterRole "
        "dr.botrt.io/aggregate-to-objects-restorer: \"true\" to add custom resources). Restoring Roles and "
        "RoleBindings grants rights: the target namespace's admin opts in by binding the ClusterRole "
        "botrt-objects-rbac-restorer to that ServiceAccount there (without it they fail with 403; leave them out "
        "with kinds).", {
            "namespace": string("The namespace the objects are created in; the restore Job runs there. Default: "
                                "the plan's spec.targetNamespace, else the plan's namespace. Another namespace "
                                "than the plan's must exist and allow it (annotation "
                                "dr.botrt.io/recovery-allowed-from), as for spec.targetNamespace.",
                                maxLength=63, pattern=DNS_LABEL),
            "kinds": kind_list("Only these kinds of the snapshot. Default: every kind it holds."),
        })


def objects_backup_schema():
    return obj(
        "Also back up this namespace's Kubernetes objects, in the same snapshot as the claim (spec.source.pvc, "
        "or each claim's snapshot of spec.source.claims), or alone (spec.source.objects: then these settings "
        "select what is exported), under the snapshot's entry _kubernetes "
        "(<group or core>/<Kind>/<name>.json and an index.json). An init container of the backup pod "
        "(`botrt-objects export`, in the job image) lists them with the backup ServiceAccount's token, which "
        "only that container mounts, into a memory-backed emptyDir: Secrets are encrypted like all data and "
        "never touch the node's disk. A RoleBinding botrt-objects-backup in this namespace binds the ClusterRole "
        "botrt-objects-reader (get and list of the standard kinds; label a ClusterRole "
        "dr.botrt.io/aggregate-to-objects-reader: \"true\" to add custom resources) to the backup "
        "ServiceAccount. Objects labelled dr.botrt.io/exclude-from-backup: \"true\" are never backed up. "
        "A RecoveryPlan restore step with into.objects re-creates them.", {
            "kinds": kind_list("The kinds to back up. Default: ServiceAccount, Secret, ConfigMap, "
                               "Role.rbac.authorization.k8s.io, RoleBinding.rbac.authorization.k8s.io, "
                               "PersistentVolumeClaim, Service, Deployment.apps, StatefulSet.apps, "
                               "DaemonSet.apps, Ingress.networking.k8s.io."),
            "excludeKinds": kind_list("Kinds left out (e.g. Secret)."),
            "customResources": array("Custom resources to back up too, by API group and kind (a kind the "
                                     "apiserver does not serve is reported, not an error).", obj(
                                         "A custom resource kind.", {
                                             "group": string("The API group, e.g. example.io.", minLength=3,
                                                             maxLength=253, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)+$"),
                                             "kind": string("The Kind, e.g. Widget.", minLength=1, maxLength=63,
                                                            pattern=r"^[A-Z][A-Za-z0-9]*$"),
                                         }, required=["group", "kind"]), maxItems=64),
            "selector": label_selector("Only objects whose labels match (matchLabels and matchExpressions). "
                                       "Default: every object of the kinds.", what="object"),
        })


REPLICA_SOURCE = ("Restoring from a replica opens the replica's repository with the replica's keys (its "
                  "encryption, else the policy's; the key it was last rewrapped under) and mounts its Secrets of "
                  "this namespace. latest and beforeTime select among the replica's snapshots; a snapshot id that "
                  "is the primary's id of the replica's newest copy (status.replicas[].lastCopiedSnapshot) is "
                  "restored as that copy (status.replicas[].replicaSnapshot), any other id is taken as an id in the "
                  "replica, and the primary's newest snapshot without a copy in the replica is refused.")


def replica_name(desc):
    return string(desc + " Default: none (the policy's primary repository).", maxLength=63, pattern=DNS_LABEL)


def claim_read_settings():
    """How a claim is read (spec.source.pvc, and every claim of spec.source.claims)."""
    return {
        "runAsUser": integer(
            "The user the backup reads the claim as. Default: the engine's user (65532), which "
            "reads only what that user may. Set the application's uid to read its private "
            "(0600) files; 0 reads every file as root with the single capability "
            "DAC_READ_SEARCH (the namespace's Pod Security level must allow it). Owners and "
            "modes are recorded either way.", minimum=0, maximum=2147483647),
        "runAsGroup": integer("The group the backup reads the claim as. Default: runAsUser's "
                              "value when runAsUser is set.", minimum=0, maximum=2147483647),
        "include": array("The paths backed up, everything else left out (what restic's --files-from "
                         "names), each anchored at the backed-up directory (the claim's root, or "
                         "subPath) with a leading `/`; a component may be a glob (`*`, `?`, `[...]`; "
                         "not `**`). The snapshot keeps the claim's layout, so a restore puts every "
                         "file back where it was. `exclude` applies within what is included. Default: "
                         "everything.",
                         string("One path, e.g. /data/db.", minLength=1, maxLength=4096, pattern=r"^/"),
                         maxItems=64),
        "exclude": array("Paths left out of the backup, as restic's --exclude patterns: `*`, "
                         "`?`, `[...]` and `**` (any number of directories); a pattern without a "
                         "leading `/` matches at any depth (`*.tmp`, `cache`), one with a leading "
                         "`/` is anchored at the backed-up directory (the claim's root, or "
                         "subPath); a leading `!` takes back an earlier exclusion (not below an "
                         "excluded directory, which is not read at all).",
                         string("One pattern.", minLength=1, maxLength=4096), maxItems=256),
        "excludeFile": array("Files in the claim whose lines are more exclude patterns (restic's "
                             "--exclude-file), each named from the backed-up directory with a leading "
                             "`/` (e.g. /.backupignore), so the application keeps its own list. Each "
                             "backup reads them as the claim's data: one pattern a line in the syntax "
                             "of `exclude` (a leading `/` anchors at the backed-up directory; blank "
                             "lines and lines starting with # are skipped; $VAR is not expanded), "
                             "applied after `exclude`. A symbolic link is not followed, and a file that "
                             "is missing, not a regular file or over 1 MiB fails the backup, naming it.",
                             string("One file, e.g. /.backupignore.", minLength=2, maxLength=4096,
                                    pattern=r"^/"), maxItems=8),
        "excludeIfPresent": array("File names whose presence in a directory leaves the rest of "
                                  "that directory out (restic's --exclude-if-present; NAME or "
                                  "NAME:HEADER to require the file to start with HEADER).",
                                  string("One file name.", minLength=1, maxLength=1024,
                                         pattern=r"^[^/]+$"), maxItems=32),
        "excludeCaches": boolean("Leave out directories holding a CACHEDIR.TAG file with its "
                                 "signature (restic's --exclude-caches). Default: false.",
                                 default=False),
        "oneFileSystem": boolean("Stay on the claim's file system: a mount below the backed-up "
                                 "directory is left out (restic's --one-file-system). Default: false.",
                                 default=False),
    }


def label_selector(desc, what="claim"):
    return obj(desc, {
        "matchLabels": obj(f"Labels the {what} must have, each with this value.", {},
                           additionalProperties=string("The label's value.", maxLength=63), maxProperties=64),
        "matchExpressions": array(f"Requirements on the {what}'s labels, all of which must hold.", obj(
            "One requirement: key, operator, values.", {
                "key": string("The label key.", minLength=1, maxLength=317),
                "operator": string("In, NotIn (values given), Exists, DoesNotExist (no values).",
                                   enum=["In", "NotIn", "Exists", "DoesNotExist"]),
                "values": array("The values of In and NotIn.", string("One value.", maxLength=63), maxItems=64),
            }, required=["key", "operator"]), maxItems=32),
    })


def restore_claim(whose):
    return object_name(f"The claim to restore, when {whose} BackupPolicy backs up several (spec.source.claims; "
                       "required then, refused otherwise): latest and beforeTime pick among that claim's snapshots "
                       "(tagged claim=NAME), and a missing target claim is created from its record in the policy's "
                       "status.claims. The claim's files go to the target's root, as a pvc source's do.")


def snapshot_selector():
    return {
        "policyRef": local_ref("The BackupPolicy (in this namespace) whose repository holds the snapshot."),
        "replica": replica_name("Restore from this replica of the policy (a spec.replicas[].name of it) instead "
                                "of its primary repository, e.g. when the primary's region is down. "
                                + REPLICA_SOURCE),
        "snapshot": string("latest (the newest snapshot that verifies) or a snapshot id. Default: latest.",
                           maxLength=128, default="latest", pattern=r"^(latest|[0-9a-f]{8,128})$"),
        "beforeTime": date_time("Use the newest snapshot taken at or before this time (RFC 3339; whole seconds) "
                                "instead of snapshot; for point-in-time recovery before a corruption. The step fails "
                                "when no snapshot is that old."),
    }


def workload_ref():
    return obj("A Deployment or StatefulSet.", {
        "kind": string("Deployment or StatefulSet.", enum=["Deployment", "StatefulSet"]),
        "name": object_name("Name of the workload."),
        "namespace": string("Namespace of the workload. Default: the plan's targetNamespace. A namespace other "
                            "than the plan's must allow it (annotation dr.botrt.io/recovery-allowed-from).",
                            maxLength=63, pattern=DNS_LABEL),
    }, required=["kind", "name"])


def database_query(desc):
    return container(desc, extra={
        "query": string("Query written to the command's standard input (e.g. SELECT count(*) FROM orders).",
                        maxLength=8192),
        "expected": string("Expected standard output, compared after trimming surrounding whitespace.",
                           maxLength=8192),
    })


def recovery_step():
    return obj("One step: a typed action, or a custom Job.", {
        "name": string("Step name, unique within the procedure.", minLength=1, maxLength=63, pattern=DNS_LABEL),
        "description": string("What this step does, in a sentence.", maxLength=1024),
        "action": string("scaleDown: scale the targets to 0 and remember their replicas; scaleUp: restore the "
                         "remembered replicas (or `replicas`); restore: restore a snapshot; verify: verify the "
                         "repository and the restored data; waitReady: wait until the targets are ready; job: run "
                         "the custom container in `job`.",
                         enum=["scaleDown", "scaleUp", "restore", "verify", "waitReady", "job"]),
        "targets": array("Workloads for scaleDown, scaleUp and waitReady.", workload_ref(), maxItems=64),
        "replicas": integer("Replicas for scaleUp when no count was remembered. Default: the remembered count, "
                            "else 1.", fmt="int32", minimum=0),
        "restore": with_rules(obj("What to restore and where, for action restore.", dict(
            snapshot_selector(), claim=restore_claim("policyRef's"),
            into=restore_destination("Where the restored data goes. Set exactly one of pvc, "
                                                          "command, objects.", "into", objects=True)),
                       required=["policyRef", "into"]),
            rule("!(has(self.beforeTime) && has(self.snapshot) && self.snapshot != 'latest')",
                 "beforeTime: set either a snapshot id or beforeTime, not both", ".beforeTime")),
        "verify": with_rules(obj("What to check, for action verify.", {
            "policyRef": local_ref("The BackupPolicy whose repository is verified. Default: the policy of the "
                                   "procedure's restore step."),
            "replica": replica_name("Verify this replica of policyRef's policy (a spec.replicas[].name of it) "
                                    "instead of its primary repository; needs policyRef."),
            "readData": boolean("Read and authenticate every pack, not only the index. Default: true.",
                                default=True),
            "databaseQuery": database_query("A query run against the restored database, compared to an expected "
                                            "result."),
        }), rule("!has(self.replica) || has(self.policyRef)",
                 "replica: names a replica of no policy; set policyRef too", ".replica")),
        "job": container("The custom container, for action job. It must exit 0 to succeed."),
        "timeout": duration("Time limit of one attempt. Default: 10m."),
        "retries": integer("Attempts after the first failure (0-10). Default: 0.", fmt="int32", minimum=0,
                           maximum=10, default=0),
    }, required=["name", "action"], **{"x-kubernetes-validations": [
        rule("!(self.action in ['scaleDown', 'scaleUp', 'waitReady']) || (has(self.targets) && size(self.targets) > 0)",
             "targets: actions scaleDown, scaleUp and waitReady need targets", ".targets"),
        rule("self.action != 'restore' || has(self.restore)", "restore: action restore needs restore", ".restore"),
        rule("self.action != 'verify' || has(self.verify)", "verify: action verify needs verify", ".verify"),
        rule("self.action != 'job' || has(self.job)", "job: action job needs job", ".job"),
    ]})


def recovery_plan_spec():
    return obj("The ordered procedures that bring a service back, and the RTO they must meet.", {
        "tier": string("Protection tier; sets the default RTO target: critical 15m, important 90m, standard 3h, "
                       "archive 24h.", enum=TIERS),
        "rtoTarget": duration("Recovery time objective: from start to the last step's success. Overrides the "
                              "tier's RTO; compliance profiles still tighten it (sox 30m, pci-dss 15m, hipaa 30m, "
                              "gdpr 72h)."),
        "compliance": compliance("the service this plan recovers"),
        "targetNamespace": string("Namespace where the service is recovered. Default: the plan's namespace. "
                                  "Another namespace must allow it: its Namespace object needs the annotation "
                                  "dr.botrt.io/recovery-allowed-from listing the plan's namespace (comma-separated); "
                                  "otherwise the plan is not Ready (TargetNamespaceNotAllowed).",
                                  maxLength=63, pattern=DNS_LABEL),
        "procedures": array("Procedures, run in order; each runs its steps in order. The first failed step "
                            "stops the plan.",
                            obj("A named group of steps, e.g. Restore from Backup.", {
                                "name": string("Procedure name, unique within the plan.", minLength=1, maxLength=63,
                                               pattern=DNS_LABEL),
                                "description": string("What the procedure achieves.", maxLength=1024),
                                "steps": with_rules(
                                    array("Steps, run in order.", recovery_step(), minItems=1, maxItems=64),
                                    rule("self.all(s, self.exists_one(t, t.name == s.name))",
                                         "steps: step names must be unique within the procedure")),
                            }, required=["name", "steps"]), minItems=1, maxItems=32,
                            **{"x-kubernetes-validations": [
                                rule("self.all(p, self.exists_one(q, q.name == p.name))",
                                     "procedures: procedure names must be unique within the plan")]}),
        "trigger": trigger("recovery"),
    }, required=["tier", "procedures"])


def step_status():
    return obj("Progress of one step.", {
        "procedure": string("Procedure name.", maxLength=63),
        "name": string("Step name.", maxLength=63),
        "action": string("The step's action.", maxLength=32),
        "state": string("Pending, Running, Succeeded, Failed or Skipped.",
                        enum=["Pending", "Running", "Succeeded", "Failed", "Skipped"]),
        "attempts": integer("Attempts made so far.", fmt="int32", minimum=0),
        "startTime": date_time("When the step started."),
        "completionTime": date_time("When the step finished."),
        "jobName": string("The Job that runs the current attempt.", maxLength=253),
        "message": string("What happened, in a sentence.", maxLength=4096),
        "progress": run_progress(
            "restore", "A running restore step's progress, as the engine reports it (its JSON progress lines in the "
            "restore container's log of the step's Job, read at most every 10 s): bytes written so far and, with "
            "the engine's total, a percentage and an estimated completion. Unset when the step does not run a "
            "restore or has ended; a finished restore's figures are in message."),
    }, required=["procedure", "name", "state"])


def recovery_plan_status():
    return obj("Observed state of the last run, written by the controller.", {
        "observedGeneration": observed_generation(),
        "conditions": conditions("Ready, Succeeded, RTOMet"),
        "phase": string("Idle (never run), Running, Succeeded or Failed.",
                        enum=["Idle", "Running", "Succeeded", "Failed"]),
        "lastHandledTrigger": string("The spec.trigger or dr.botrt.io/run-now value last acted on.",
                                     maxLength=63),
        "startTime": date_time("When the last run started."),
        "completionTime": date_time("When the last run finished."),
        "rtoTargetSeconds": integer("The effective RTO target in seconds.", minimum=0),
        "rtoTarget": string("The effective RTO target as a duration (e.g. 15m).", maxLength=32),
        "rtoSource": string("What set the RTO target: tier:NAME, override (spec.rtoTarget) or compliance:PROFILE.",
                            maxLength=64),
        "rtoAchievedSeconds": integer("Seconds from start to the last step's success, for the last successful "
                                      "run.", minimum=0),
        "rtoAchieved": string("rtoAchievedSeconds as a duration (e.g. 4m12s).", maxLength=32),
        "failedStep": string("procedure/step that stopped the last run.", maxLength=127),
        "message": string("What happened in the last run, in plain sentences.", maxLength=4096),
        "steps": array("Per-step progress of the last run, in execution order.", step_status(), maxItems=2048),
        "scaledWorkloads": array("Replica counts remembered by scaleDown steps, restored by scaleUp.",
                                 obj("A remembered replica count.", {
                                     "kind": string("Deployment or StatefulSet.", maxLength=32),
                                     "namespace": string("Namespace of the workload.", maxLength=63),
                                     "name": string("Name of the workload.", maxLength=253),
                                     "replicas": integer("Replicas before scaleDown.", fmt="int32", minimum=0),
                                 }, required=["kind", "name", "replicas"]), maxItems=256),
    })


# ---------------------------------------------------------------------------------------------
# DRDrill

def drill_spec():
    return obj("A scheduled rehearsal: restore into an isolated scratch namespace, verify, and score RTO, RPO, "
               "integrity, performance, security posture and compliance.", {
                   "schedule": string("daily, weekly (Sunday 03:00), biweekly (1st and 15th 03:00), monthly (1st "
                                      "03:00), quarterly (1 Jan/Apr/Jul/Oct 03:00) or a 5-field cron expression, "
                                      "in UTC. Default: from the target's tier (critical daily, important weekly, "
                                      "standard monthly, archive quarterly), at least as often as the compliance "
                                      "profiles require (sox quarterly).", maxLength=128,
                                      pattern=DRILL_SCHEDULE_PATTERN),
                   "target": obj("What the drill rehearses. Set exactly one of backupPolicyRef, recoveryPlanRef.", {
                       "backupPolicyRef": local_ref("A BackupPolicy: its snapshot is restored into the scratch "
                                                    "namespace and verified."),
                       "recoveryPlanRef": local_ref(
                           "A RecoveryPlan: the drill rehearses the plan's first restore step in the scratch "
                           "namespace (into an emptyDir instead of the step's claim, unless spec.restore says "
                           "where) and the checks of its first verify step (readData, databaseQuery), unless "
                           "spec.verification gives its own. The plan's scale, job and waitReady steps act on "
                           "live workloads and further restore steps are not run. The measured RTO (restore "
                           "and verification) is compared with the plan's effective RTO target (tightened by the drill's "
                           "compliance profiles)."),
                       "replica": replica_name(
                           "Restore and verify from this replica of the target's policy (a spec.replicas[].name of "
                           "it) instead of its primary repository; for a RecoveryPlan target it replaces the restore "
                           "step's own replica. " + REPLICA_SOURCE + " A drill of latest requires the replica's "
                           "newest recorded copy."),
                   }, oneOf=one_of("backupPolicyRef", "recoveryPlanRef"),
                       **{"x-kubernetes-validations": [exactly_one("target", "backupPolicyRef", "recoveryPlanRef")]}),
                   "snapshot": string("latest or a snapshot id. Default: latest.", maxLength=128, default="latest",
                                      pattern=r"^(latest|[0-9a-f]{8,128})$"),
                   "claim": restore_claim("the target's"),
                   "restore": restore_destination("Where a BackupPolicy target's data is restored. Default: "
                                                  "an emptyDir volume in the scratch namespace. Set exactly one of "
                                                  "pvc, command. A pvc is created in the scratch namespace under "
                                                  "that name, sized (storage request, access modes, storage class) "
                                                  "from the policy's source claim, else from the claim of that name "
                                                  "in the drill's namespace; without one the drill is refused.",
                                                  "restore"),
                   "verification": obj("How the restore is verified.", {
                       "readData": boolean("Read the restored data back and check it: the restore reads every "
                                           "restored file back from the scratch volume and checks each chunk "
                                           "against the snapshot (restore --verify, as restic's). The snapshot's "
                                           "data is downloaded once, by the restore, which decrypts, "
                                           "authenticates and re-hashes every blob it writes either way; the "
                                           "verify step then checks the snapshot's structure (signed manifests, "
                                           "trees, index, packs present) without downloading it again, so a drill "
                                           "reads about the snapshot's stored size. The whole repository's data "
                                           "is checked by the policy's spec.verify schedule (readDataSubset). "
                                           "Default: true.", default=True),
                       "databaseQuery": database_query("For databases: a query run against the restored database, "
                                                       "compared to an expected result."),
                       "maxPerformanceDegradationPercent": integer("Largest accepted drop of restore throughput "
                                                                   "against the policy's baseline, in percent. "
                                                                   "Default: 20.", fmt="int32", minimum=0,
                                                                   maximum=100, default=20),
                       "minComplianceScore": integer("Smallest passing compliance score (0-100). Default: 95.",
                                                     fmt="int32", minimum=0, maximum=100, default=95),
                   }),
                   "compliance": compliance("this drill (in addition to the target's)"),
                   "historyLimit": integer("Runs kept in status.history (1-100). Default: 10.", fmt="int32",
                                           minimum=1, maximum=100, default=10),
                   "timeout": duration("Time limit of one run, after which it fails and the scratch namespace is "
                                       "removed. Default: 1h."),
                   "suspend": boolean("Stop scheduling drills (a trigger still runs one). Default: false.",
                                      default=False),
                   "trigger": trigger("drill"),
                   "egress": array("Destinations the run's pods may reach over TCP besides DNS and the policy's "
                                   "storage and KMS endpoints, which the scratch namespace's NetworkPolicies allow "
                                   "anyway: e.g. the database server a restore command and the database query "
                                   "connect to. Everything else stays denied.", obj("A TCP destination.", {
                                       "host": string("An IP address or CIDR (only it is allowed), or a host name "
                                                      "(NetworkPolicies cannot name hosts, so the port is then "
                                                      "allowed to any destination). Default: any destination.",
                                                      maxLength=253, minLength=1,
                                                      **{"x-kubernetes-validations": [rule(
                                                          "!self.contains(' ')",
                                                          "host: give an IP address, a CIDR or a host name, without "
                                                          "spaces")]}),
                                       "port": integer("TCP port.", fmt="int32", minimum=1, maximum=65535),
                                   }, required=["port"]), maxItems=32),
               }, required=["target"])


def drill_result(desc):
    return obj(desc, {
        "startTime": date_time("When the run started."),
        "completionTime": date_time("When the run finished."),
        "trigger": string("schedule, or the trigger value that started the run.", maxLength=63),
        "snapshot": string("Id of the restored snapshot.", maxLength=128),
        "scratchNamespace": string("The scratch namespace used (removed afterwards).", maxLength=63),
        "passed": boolean("True when every check passed and the score reached the minimum."),
        "rpoAchievedSeconds": integer("Age of the restored snapshot when the run started.", minimum=0),
        "rpoTargetSeconds": integer("The RPO target the run was measured against.", minimum=0),
        "rtoAchievedSeconds": integer("Seconds from start to a verified restore.", minimum=0),
        "rtoTargetSeconds": integer("The RTO target the run was measured against.", minimum=0),
        "dataIntegrity": boolean("The restore authenticated and re-hashed every blob it wrote (every restored "
                                 "file matches the snapshot's content hashes), the engine's verify passed and the "
                                 "query (if any) returned the expected result. 100% required."),
        "performanceDegradationPercent": number("Drop of restore throughput against the baseline, in percent "
                                                "(negative when faster). At most 20% by default."),
        "restoreBytesPerSecond": number("Measured restore throughput.", minimum=0),
        "bytesRead": integer("Bytes the run read from the repository: what its restore and its verify fetched "
                             "from the storage (objects, ranges and listings, as stored: compressed and "
                             "encrypted; verify reads the restored snapshot's packs only), not the restored "
                             "bytes. Absent when neither result reported a figure.", minimum=0),
        "securityPosture": boolean("Backup-namespace NetworkPolicies (and Calico rules) present and unchanged, "
                                   "encryption and signatures verified, drill RBAC no wider than declared."),
        "complianceScore": integer("0-100, computed from the checks above and the compliance profiles (see "
                                   "docs/api-reference.md). Minimum 95 by default.", fmt="int32", minimum=0,
                                   maximum=100),
        "message": string("What happened, in plain sentences.", maxLength=4096),
        "failures": array("One sentence per failed check.", string("A failed check.", maxLength=1024),
                          maxItems=32),
    })


def drill_status():
    return obj("Observed state, written by the controller.", {
        "observedGeneration": observed_generation(),
        "conditions": conditions("Ready, Passed, RTOMet, RPOMet"),
        "target": string("The rehearsed object, as Kind/name, followed by ' (replica NAME)' when the drill "
                         "restores from a replica.", maxLength=300),
        "effectiveSchedule": string("The cron schedule in use.", maxLength=128),
        "scheduleSource": string("What set the schedule: override (spec.schedule), preset:NAME, tier:NAME or "
                                 "compliance:PROFILE.", maxLength=64),
        "nextScheduledRun": date_time("When the next scheduled drill starts."),
        "lastHandledTrigger": string("The spec.trigger or dr.botrt.io/run-now value last acted on.",
                                     maxLength=63),
        "phase": string("Idle or Running.", enum=["Idle", "Running"]),
        "currentRun": obj("The run in progress, if any.", {
            "startTime": date_time("When the run started."),
            "scratchNamespace": string("The scratch namespace of the run.", maxLength=63),
            "step": string("What the run is doing now: the run Job's container that runs (restore, "
                           "restore-load for a database, verify, query); restore until the Job is "
                           "observed.", maxLength=256),
            "progress": run_progress(
                "run", "The run's restore progress, as the engine reports it (its JSON progress lines in the "
                "log of the run Job's restore container, in the scratch namespace, read at most every 10 s): bytes "
                "written so far and, with the engine's total, a percentage and an estimated completion. Set while "
                "the restore runs (bytesDone 0 until the engine's first report); unset once the restore ended "
                "(verify and the database query report no progress), and with currentRun when the run ends."),
        }),
        "lastRunTime": date_time("Start time of the newest finished run."),
        "lastResult": drill_result("The newest finished run."),
        "history": array("Finished runs, newest first, at most spec.historyLimit.",
                         drill_result("One finished run."), maxItems=100),
    })


# ---------------------------------------------------------------------------------------------

def crd(kind, plural, short, spec, status, columns, kind_desc):
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{GROUP}", "labels": {"app.kubernetes.io/part-of": "botrt"}},
        "spec": {
            "group": GROUP,
            "names": {"kind": kind, "listKind": kind + "List", "plural": plural, "singular": kind.lower(),
                      "shortNames": [short], "categories": ["botrt"]},
            "scope": "Namespaced",
            "versions": [{
                "name": VERSION,
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "additionalPrinterColumns": columns,
                "schema": {"openAPIV3Schema": obj(kind_desc, {
                    "apiVersion": string("APIVersion defines the versioned schema of this representation of an "
                                         "object (dr.botrt.io/v1alpha1)."),
                    "kind": string(f"Kind is the REST resource kind ({kind})."),
                    "metadata": {"type": "object"},  # the apiserver forbids a description here
                    "spec": spec,
                    "status": status,
                }, required=["spec"])},
            }],
        },
    }


def col(name, path, typ="string", desc=None, priority=None, fmt=None):
    out = {"name": name, "type": typ, "jsonPath": path}
    if desc:
        out["description"] = desc
    if fmt:
        out["format"] = fmt
    if priority is not None:
        out["priority"] = priority
    return out


def cond(t):
    return f'.status.conditions[?(@.type=="{t}")].status'


AGE = col("Age", ".metadata.creationTimestamp", "date")

CRDS = {
    "dr.botrt.io_backuppolicies.yaml": crd(
        "BackupPolicy", "backuppolicies", "bp", backup_policy_spec(), backup_policy_status(), [
            col("Tier", ".spec.tier", desc="Protection tier."),
            col("Schedule", ".status.effectiveSchedule", desc="Cron schedule in use."),
            col("Last Backup", ".status.lastSuccessfulBackup", "date", desc="Newest successful backup."),
            col("RPO Met", cond("RPOMet"), desc="Whether the newest backup is younger than the RPO target."),
            col("Ready", cond("Ready"), desc="Whether the policy is reconciled and its children exist."),
            AGE,
            col("RPO Target", ".status.rpoTargetSeconds", "integer", desc="Effective RPO in seconds.", priority=1),
            col("RPO Source", ".status.rpoSource", desc="What set the RPO.", priority=1),
            col("Snapshot", ".status.lastSnapshot", desc="Newest snapshot id.", priority=1),
            col("Progress", ".status.progress.percent", "integer",
                desc="Percent done of the running backup (status.progress).", priority=1),
        ],
        "BackupPolicy declares scheduled, encrypted backups of a PVC or a dump command into S3, GCS, Azure or a "
        "local directory, with retention, key rotation and a tracked RPO."),
    "dr.botrt.io_recoveryplans.yaml": crd(
        "RecoveryPlan", "recoveryplans", "rp", recovery_plan_spec(), recovery_plan_status(), [
            col("Tier", ".spec.tier", desc="Protection tier."),
            col("Phase", ".status.phase", desc="Phase of the last run."),
            col("RTO Target", ".status.rtoTarget", desc="Effective RTO target."),
            col("RTO Achieved", ".status.rtoAchieved", desc="RTO of the last successful run."),
            AGE,
            col("Failed Step", ".status.failedStep", desc="Step that stopped the last run.", priority=1),
        ],
        "RecoveryPlan declares the ordered procedures that bring a service back from backup, runs them on "
        "demand and measures the RTO achieved against its target."),
    "dr.botrt.io_drdrills.yaml": crd(
        "DRDrill", "drdrills", "drill", drill_spec(), drill_status(), [
            col("Target", ".status.target", desc="Rehearsed BackupPolicy or RecoveryPlan."),
            col("Schedule", ".status.effectiveSchedule", desc="Cron schedule in use."),
            col("Last Run", ".status.lastRunTime", "date", desc="Start of the newest finished run."),
            col("Passed", ".status.lastResult.passed", "boolean", desc="Whether the newest run passed."),
            col("Score", ".status.lastResult.complianceScore", "integer", desc="Compliance score of the newest run."),
            AGE,
            col("RTO", ".status.lastResult.rtoAchievedSeconds", "integer", desc="RTO achieved (s).", priority=1),
            col("RPO", ".status.lastResult.rpoAchievedSeconds", "integer", desc="RPO achieved (s).", priority=1),
        ],
        "DRDrill schedules rehearsals that really restore a backup into an isolated scratch namespace, verify "
        "it, and record the RTO, RPO and compliance score achieved."),
}


# ---------------------------------------------------------------------------------------------
# docs/api-reference.md, generated from the same schemas so the two never disagree.

DOC_INTRO = """# BotRT API reference (dr.botrt.io/v1alpha1)

Generated by `crds/generate.py` from the CRD schemas; do not edit by hand. `kubectl explain` shows the same
descriptions (for example `kubectl explain backuppolicy.spec.repository.s3`).

Three namespaced kinds, all in the category `botrt` (`kubectl get botrt`):

| Kind | Short name | What it declares |
|---|---|---|
| BackupPolicy | `bp` | What to back up, how often, where, with which keys, how long to keep it, which RPO it must hold |
| RecoveryPlan | `rp` | The ordered steps that bring a service back, and the RTO they must meet |
| DRDrill | `drill` | A scheduled rehearsal that restores into a scratch namespace, verifies, and scores the result |

## Tier defaults

From the original design's tables. Archive's RTO (24 h) is BotRT's choice; the original gives none.

| Tier | Schedule (table) | Effective default schedule | RPO | Keep | Retention rules | RTO | Drills |
|---|---|---|---|---|---|---|---|
| critical | every 5 min | `*/2 * * * *` (tightened) | 5m | 7y | keepLast 288, keepHourly 168, keepDaily 90, keepWeekly 104, keepMonthly 86, keepYearly 7 | 15m | daily |
| important | hourly | `*/15 * * * *` (tightened) | 30m | 2y | keepLast 48, keepDaily 90, keepWeekly 104, keepMonthly 26, keepYearly 2 | 90m | weekly |
| standard | daily | `0 */2 * * *` (tightened) | 4h | 90d | keepLast 7, maxAge 90d | 3h | monthly |
| archive | weekly | `0 */12 * * *` (tightened) | 24h | 7y | keepLast 7, maxAge 7y | 24h | quarterly |

RPO headroom: the RPO age is counted from the newest snapshot's point in time (`status.lastSnapshotTime`: the
engine's snapshot time, i.e. when the backup started reading the data; the backup Job's start time for an engine
that does not report it), not from when the backup finished. A policy without `spec.schedule` backs up at least
every half of its effective RPO, so a backup may run as long as the interval (or one run may be late) before
RPOMet turns False: the table's schedule is used when it is that frequent, else the least frequent step of the
ladder `* * * * *`, `*/2 * * * *`, `*/5 * * * *`, `*/10 * * * *`, `*/15 * * * *`, `*/30 * * * *`, `0 * * * *`,
`0 */2 * * *`, `0 */4 * * *`, `0 */6 * * *`, `0 */12 * * *`, `0 2 * * *`, `0 3 * * 0` whose interval is at most
RPO/2, and `status.scheduleSource` says `rpo`. The original table's frequencies are all slower than that. Cron
cannot run more often than every minute: a 1-minute RPO (the sox and pci-dss profiles) runs every minute with no
headroom, so RPOMet turns False whenever a backup and the wait for the next one take longer than a minute; status
(Ready's message) warns about it. An explicit `spec.schedule` is never changed; when it leaves gaps longer than
the RPO, the controller reports it (RPOMet will turn False).

## Compliance profiles

| Profile | RPO | RTO | Minimum retention | Drills at least | Source in the original design |
|---|---|---|---|---|---|
| sox | 1m | 30m | 7y | quarterly | financial data RPO 60 s, financial system RTO 1800 s, quarterly testing |
| gdpr | 5m | 72h | - | - | personal data RPO 300 s, data portability RTO 72 h |
| pci-dss | 1m | 15m | 1y | - | payment data RPO 60 s, cardholder data RTO 900 s |
| hipaa | 5m | 30m | 6y | - | healthcare data RPO 300 s, critical system RTO 30 min |

Retention minimums are BotRT's reading of the regulations. The strictest value wins: the RPO is the smallest of
the tier's (or `spec.rpo`) and every listed profile's; the same for the RTO; drills run at least as often as the
most demanding of the tier and the profiles; when the rules keep data for less time than a profile requires,
`keepMonthly` is raised to cover it.

"Keep" means a snapshot that old is still there. `maxAge` keeps every snapshot within its age of the newest one
(restic's `--keep-within`; a snapshot dated in the future is kept and not counted as the newest). A calendar rule
`keepX: N` keeps the newest snapshot of each of the last N units that have one, which is sure to reach N - 2 whole
units back (a month counted as 28 days, twelve months as 365): hence keepMonthly 86 for 7 years, 26 for 2 years,
74 for HIPAA's 6 and 14 for PCI-DSS's 1. `Tests/EngineIntegrationTests/RetentionSimulationTests.swift` backs years
up with `botrt-engine backup --time` and prunes them with the prune CronJob's flags for every tier and profile. Status names what applied: `tier:critical`, `override`, `compliance:sox`
(or `compliance:sox,pci-dss` when several tie), `rpo` (schedule tightened), `preset:weekly`, `default`.

## Durations, schedules and triggers

- Durations (`rpo`, `rtoTarget`, `maxAge`, `timeout`): one or more `<number><unit>`, units `y` (365 days), `w`,
  `d`, `h`, `m`, `s`; e.g. `7y`, `90d`, `24h`, `1h30m`.
- Cron (`BackupPolicy.spec.schedule`, `DRDrill.spec.schedule`): five fields `minute hour day-of-month month
  day-of-week` in UTC with `*`, `?` (day fields), ranges `a-b`, steps `*/n` and `a-b/n` and `a/n`, lists `a,b`,
  names `JAN`-`DEC` and `SUN`-`SAT`; or `@yearly`, `@annually`, `@monthly`, `@weekly`, `@daily`, `@midnight`,
  `@hourly`, `@every 1h30m`. Day-of-week is 0-6 (Sunday 0), as in the Kubernetes CronJob controller. When both
  day fields are restricted, a day matches if either matches. The schema's pattern rejects wrong field counts
  and stray words; the controller's parser reports range errors naming the field and the token.
- Drill presets: `daily` = `0 3 * * *`, `weekly` = `0 3 * * 0`, `biweekly` = `0 3 1,15 * *` (cron cannot count
  weeks), `monthly` = `0 3 1 * *`, `quarterly` = `0 3 1 1,4,7,10 *`.
- On-demand runs: set `spec.trigger` to a new value (GitOps-friendly), or the annotation `dr.botrt.io/run-now`
  (`kubectl annotate --overwrite bp/NAME dr.botrt.io/run-now=$(date +%s)`). The value last acted on is
  `status.lastHandledTrigger`; re-applying the same value does nothing.
- "Exactly one of" (source, repository, kms, restore destination, drill target) is enforced by `oneOf` in the
  schema, which works on Kubernetes 1.20 without CEL; the error names the parent field, e.g. `spec.repository`.
  Unknown fields are pruned by the apiserver, so a misspelt backend leaves none set and is rejected the same way.
- On Kubernetes 1.25 and later, install `crds/cel/` instead of `crds/`: the same schemas plus CEL rules
  (`x-kubernetes-validations`) for the cross-field checks the controller otherwise reports in status: exactly one
  source, repository, KMS, restore destination and drill target; retention rules that keep something; durations
  longer than 0s; unique procedure and step names; the field each step action needs; see docs/testing.md.

"""


def doc_rows(node, path, required=False, rows=None):
    rows = [] if rows is None else rows
    typ = node.get("type", "int-or-string" if node.get("x-kubernetes-int-or-string") else "")
    if typ == "array":
        item = node.get("items", {})
        typ = f"[]{item.get('type', '')}"
    elif typ == "object" and "additionalProperties" in node:
        typ = "map"
    notes = []
    if required:
        notes.append("**required**")
    if "enum" in node:
        notes.append("one of " + ", ".join(f"`{str(v).lower() if isinstance(v, bool) else v}`" for v in node["enum"]))
    if "items" in node and "enum" in node["items"]:
        notes.append("items: " + ", ".join(f"`{v}`" for v in node["items"]["enum"]))
    if "default" in node:
        d = node["default"]
        notes.append(f"default `{str(d).lower() if isinstance(d, bool) else d}`")
    for key, label in (("minimum", "min"), ("maximum", "max"), ("minLength", "minLength"), ("maxLength", "maxLength"),
                       ("minItems", "minItems"), ("maxItems", "maxItems")):
        if key in node:
            notes.append(f"{label} {node[key]}")
    if "oneOf" in node:
        notes.append("exactly one of " + ", ".join(f"`{b['required'][0]}`" for b in node["oneOf"]))
    if "format" in node and node["format"] == "date-time":
        notes.append("RFC 3339 time")
    desc = node.get("description", "").replace("|", "\\|").replace("\n", " ")
    rows.append(f"| `{path}` | {typ} | {'; '.join(notes)} | {desc} |")
    req = set(node.get("required", []))
    for name, child in node.get("properties", {}).items():
        doc_rows(child, f"{path}.{name}", name in req, rows)
    if "items" in node and node["items"].get("properties"):
        doc_rows_items(node["items"], path + "[]", rows)
    return rows


def doc_rows_items(node, path, rows):
    req = set(node.get("required", []))
    for name, child in node.get("properties", {}).items():
        doc_rows(child, f"{path}.{name}", name in req, rows)


def api_reference():
    out = [DOC_INTRO]
    for crd_doc in CRDS.values():
        kind = crd_doc["spec"]["names"]["kind"]
        version = crd_doc["spec"]["versions"][0]
        root = version["schema"]["openAPIV3Schema"]
        out.append(f"## {kind}\n\n{root['description']}\n")
        out.append("`kubectl get " + crd_doc["spec"]["names"]["shortNames"][0] + "` columns: " +
                   ", ".join(c["name"] for c in version["additionalPrinterColumns"] if "priority" not in c) +
                   " (more with `-o wide`).\n")
        for part in ("spec", "status"):
            out.append(f"### {kind}.{part}\n")
            out.append("| Field | Type | Constraints | Description |\n|---|---|---|---|")
            out.extend(doc_rows(root["properties"][part], part, part in root.get("required", []))[1:])
            out.append("")
    return "\n".join(out)


class Dumper(yaml.SafeDumper):
    pass


def _str(dumper, data):
    return dumper.represent_scalar("tag:yaml.org,2002:str", data)


Dumper.add_representer(str, _str)
Dumper.ignore_aliases = lambda self, data: True


def without_cel(node):
    """The schema without x-kubernetes-validations (the Kubernetes 1.20 rendering)."""
    if isinstance(node, dict):
        return {k: without_cel(v) for k, v in node.items() if k != "x-kubernetes-validations"}
    if isinstance(node, list):
        return [without_cel(v) for v in node]
    return node


def write_crd(path, doc, header):
    text = "# Generated by crds/generate.py; edit that script, then run it.\n" + header + "---\n"
    text += yaml.dump(doc, Dumper=Dumper, sort_keys=False, width=100, default_flow_style=False)
    with open(path, "w") as f:
        f.write(text)
    print(f"wrote {path}", file=sys.stderr)


def main():
    out_dir = os.path.dirname(os.path.abspath(__file__))
    os.makedirs(os.path.join(out_dir, "cel"), exist_ok=True)
    for name, doc in CRDS.items():
        write_crd(os.path.join(out_dir, name), without_cel(doc),
                  "# For Kubernetes 1.20 and later; crds/cel/ has the same with CEL rules (1.25 and later).\n")
        write_crd(os.path.join(out_dir, "cel", name), doc,
                  "# For Kubernetes 1.25 and later (x-kubernetes-validations); 1.20 rejects this file, use crds/.\n")
    docs = os.path.join(os.path.dirname(out_dir), "docs", "api-reference.md")
    with open(docs, "w") as f:
        f.write(api_reference())
    print(f"wrote {docs}", file=sys.stderr)


if __name__ == "__main__":
    main()
