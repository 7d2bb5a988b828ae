#!/usr/bin/env python3
"""Create the AWS resources the integration tests expect, on emulators (or real AWS).

Idempotent: running it again reuses what exists and changes nothing.

Endpoints come from the standard per-service variables
    AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL_DYNAMODB, AWS_ENDPOINT_URL_KMS
(an unset one means the SDK default). Region: AWS_REGION / AWS_DEFAULT_REGION
(default us-east-1); credentials default to test/test when none are set.

Names can be overridden with
    SKYE_FILES_TABLE            (default skye-files)
    SKYE_SESSIONS_TABLE         (default skye-sessions)
    SKYE_TEMP_BUCKET            (default skye-temp)
    SKYE_PROVIDER_BUCKET_PREFIX (default skye-provider-; buckets PREFIX1 .. PREFIXN)
    SKYE_PROVIDER_BUCKET_COUNT  (default 8)
    SKYE_KMS_ALIAS              (default alias/skye-test)

Prints shell `export` lines on stdout, or writes them to the file given as the
only argument:
    SKYE_TEST_KMS_KEY_ID, SKYE_TEST_KMS_KEY_ALIAS, SKYE_TEST_FILES_TABLE,
    SKYE_TEST_SESSIONS_TABLE, SKYE_TEST_TEMP_BUCKET, SKYE_TEST_PROVIDER_BUCKETS
Progress goes to stderr.
"""

import os
import shlex
import sys
import time

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

TTL_ATTRIBUTE = "expires_at"


def log(msg):
    print(f"create-resources: {msg}", file=sys.stderr, flush=True)


def env(name, default):
    value = os.environ.get(name, "").strip()
    return value or default


def error_code(err):
    return err.response.get("Error", {}).get("Code", "")


def client(service, endpoint_var):
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    kwargs = {
        "region_name": region,
        "config": Config(
            retries={"max_attempts": 5, "mode": "standard"},
            connect_timeout=5,
            read_timeout=30,
            # Path-style: emulator endpoints are IP literals.
            s3={"addressing_style": "path"},
        ),
    }
    endpoint = os.environ.get(endpoint_var, "").strip()
    if endpoint:
        kwargs["endpoint_url"] = endpoint
    if not (os.environ.get("AWS_ACCESS_KEY_ID") or os.environ.get("AWS_PROFILE")):
        kwargs["aws_access_key_id"] = "test"
        kwargs["aws_secret_access_key"] = "test"
    return boto3.client(service, **kwargs)


# ---------------------------------------------------------------- DynamoDB


def ensure_table(ddb, name, key_schema, attribute_definitions):
    try:
        desc = ddb.describe_table(TableName=name)["Table"]
        existing = sorted((k["AttributeName"], k["KeyType"]) for k in desc["KeySchema"])
        wanted = sorted((k["AttributeName"], k["KeyType"]) for k in key_schema)
        if existing != wanted:
            raise SystemExit(
                f"create-resources: table {name} exists with key schema {existing}, expected {wanted}"
            )
        log(f"table {name}: exists ({desc.get('TableStatus')})")
    except ClientError as err:
        if error_code(err) != "ResourceNotFoundException":
            raise
        try:
            ddb.create_table(
                TableName=name,
                KeySchema=key_schema,
                AttributeDefinitions=attribute_definitions,
                BillingMode="PAY_PER_REQUEST",
            )
            log(f"table {name}: created")
        except ClientError as err2:
            if error_code(err2) != "ResourceInUseException":
                raise
            log(f"table {name}: created concurrently")

    deadline = time.monotonic() + 60
    while True:
        status = ddb.describe_table(TableName=name)["Table"].get("TableStatus")
        if status == "ACTIVE":
            break
        if time.monotonic() > deadline:
            raise SystemExit(f"create-resources: table {name} stuck in status {status}")
        time.sleep(0.2)

    ttl = ddb.describe_time_to_live(TableName=name).get("TimeToLiveDescription", {})
    if ttl.get("TimeToLiveStatus") in ("ENABLED", "ENABLING"):
        if ttl.get("AttributeName") != TTL_ATTRIBUTE:
            raise SystemExit(
                f"create-resources: table {name} has TTL on {ttl.get('AttributeName')!r}, "
                f"expected {TTL_ATTRIBUTE!r}"
            )
        log(f"table {name}: TTL on {TTL_ATTRIBUTE} already enabled")
    else:
        ddb.update_time_to_live(
            TableName=name,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": TTL_ATTRIBUTE},
        )
        log(f"table {name}: TTL enabled on {TTL_ATTRIBUTE}")


# ---------------------------------------------------------------- S3


def ensure_bucket(s3, name):
    try:
        s3.head_bucket(Bucket=name)
        log(f"bucket {name}: exists")
        return
    except ClientError as err:
        if error_code(err) not in ("404", "NoSuchBucket", "NotFound"):
            raise
    region = s3.meta.region_name
    kwargs = {"Bucket": name}
    if region and region != "us-east-1":
        kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
    try:
        s3.create_bucket(**kwargs)
        log(f"bucket {name}: created")
    except ClientError as err:
        if error_code(err) != "BucketAlreadyOwnedByYou":
            raise
        log(f"bucket {name}: exists")


# ---------------------------------------------------------------- KMS


def ensure_key(kms, alias):
    if not alias.startswith("alias/"):
        alias = "alias/" + alias
    try:
        meta = kms.describe_key(KeyId=alias)["KeyMetadata"]
        usable = meta.get("KeyState") == "Enabled" and meta.get("KeySpec", "SYMMETRIC_DEFAULT") == "SYMMETRIC_DEFAULT"
        if usable:
            log(f"kms {alias}: exists ({meta['KeyId']})")
            return meta["Arn"], alias
        log(f"kms {alias}: points at an unusable key ({meta.get('KeyState')}, {meta.get('KeySpec')}); replacing")
        alias_exists = True
    except ClientError as err:
        if error_code(err) != "NotFoundException":
            raise
        alias_exists = False

    meta = kms.create_key(
        Description=f"skye integration tests ({alias})",
        KeyUsage="ENCRYPT_DECRYPT",
        KeySpec="SYMMETRIC_DEFAULT",
    )["KeyMetadata"]
    if alias_exists:
        kms.update_alias(AliasName=alias, TargetKeyId=meta["KeyId"])
    else:
        try:
            kms.create_alias(AliasName=alias, TargetKeyId=meta["KeyId"])
        except ClientError as err:
            if error_code(err) != "AlreadyExistsException":
                raise
            # Someone else created it concurrently: use theirs, drop ours.
            kms.schedule_key_deletion(KeyId=meta["KeyId"], PendingWindowInDays=7)
            meta = kms.describe_key(KeyId=alias)["KeyMetadata"]
    log(f"kms {alias}: created ({meta['KeyId']})")
    return meta["Arn"], alias


# ---------------------------------------------------------------- main


# Values the tests read back through the connector's secret references (not real secrets).
TEST_SECRET_VALUE = "secret-from-secrets-manager-0123456789abcdef"
TEST_PARAMETER_VALUE = "secret-from-ssm-parameter-0123456789abcdef"


def ensure_test_secrets(sm, ssm):
    """A Secrets Manager secret and an SSM SecureString for the secret-reference tests."""
    name = "skye/test-eurooffice-jwt"
    try:
        arn = sm.describe_secret(SecretId=name)["ARN"]
    except sm.exceptions.ResourceNotFoundException:
        arn = sm.create_secret(Name=name, SecretString=TEST_SECRET_VALUE)["ARN"]
    parameter = "/skye/test/user-jwt"
    ssm.put_parameter(Name=parameter, Value=TEST_PARAMETER_VALUE, Type="SecureString", Overwrite=True)
    return arn, parameter


def main(argv):
    if len(argv) > 2 or (len(argv) == 2 and argv[1] in ("-h", "--help")):
        print(__doc__, file=sys.stderr)
        return 2

    files_table = env("SKYE_FILES_TABLE", "skye-files")
    sessions_table = env("SKYE_SESSIONS_TABLE", "skye-sessions")
    temp_bucket = env("SKYE_TEMP_BUCKET", "skye-temp")
    prefix = env("SKYE_PROVIDER_BUCKET_PREFIX", "skye-provider-")
    count = int(env("SKYE_PROVIDER_BUCKET_COUNT", "8"))
    alias = env("SKYE_KMS_ALIAS", "alias/skye-test")
    provider_buckets = [f"{prefix}{i}" for i in range(1, count + 1)]

    ddb = client("dynamodb", "AWS_ENDPOINT_URL_DYNAMODB")
    s3 = client("s3", "AWS_ENDPOINT_URL_S3")
    kms = client("kms", "AWS_ENDPOINT_URL_KMS")

    ensure_table(
        ddb,
        files_table,
        [
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
        [
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
    )
    ensure_table(
        ddb,
        sessions_table,
        [{"AttributeName": "pk", "KeyType": "HASH"}],
        [{"AttributeName": "pk", "AttributeType": "S"}],
    )
    for bucket in [temp_bucket, *provider_buckets]:
        ensure_bucket(s3, bucket)
    key_arn, alias = ensure_key(kms, alias)
    secret_arn, parameter = ensure_test_secrets(
        client("secretsmanager", "AWS_ENDPOINT_URL_SECRETS_MANAGER"), client("ssm", "AWS_ENDPOINT_URL_SSM")
    )

    values = [
        ("SKYE_TEST_KMS_KEY_ID", key_arn),
        ("SKYE_TEST_KMS_KEY_ALIAS", alias),
        ("SKYE_TEST_FILES_TABLE", files_table),
        ("SKYE_TEST_SESSIONS_TABLE", sessions_table),
        ("SKYE_TEST_TEMP_BUCKET", temp_bucket),
        ("SKYE_TEST_PROVIDER_BUCKETS", ",".join(provider_buckets)),
        ("SKYE_TEST_SECRET_ARN", secret_arn),
        ("SKYE_TEST_SECRET_PARAMETER", parameter),
    ]
    text = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in values)
    if len(argv) == 2:
        tmp = argv[1] + ".tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, argv[1])
        log(f"wrote {argv[1]}")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
