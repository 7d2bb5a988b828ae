#!/usr/bin/env python3
"""Smoke-test running emulators: source target/emulators/env.sh, then run this
with the venv-moto interpreter (it has boto3):

    . target/emulators/env.sh
    target/emulators/venv-moto/bin/python localstack/smoke-test.py

Checks S3 put/get (+ a two-part multipart upload) in a provider bucket,
KMS GenerateDataKey + Decrypt with an EncryptionContext, and DynamoDB
TransactWriteItems with a ConditionExpression. Exits non-zero on any failure.
"""

import os
import sys
import time
import uuid

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

CFG = Config(retries={"max_attempts": 3, "mode": "standard"}, s3={"addressing_style": "path"})
results = []


def check(name, fn):
    t = time.monotonic()
    try:
        fn()
    except Exception as err:  # noqa: BLE001 - report every failure
        results.append(False)
        print(f"FAIL {name}: {type(err).__name__}: {err}")
    else:
        results.append(True)
        print(f"ok   {name} ({(time.monotonic() - t) * 1000:.0f} ms)")


def client(service, var):
    return boto3.client(service, endpoint_url=os.environ[var], config=CFG)


def main():
    s3 = client("s3", "AWS_ENDPOINT_URL_S3")
    kms = client("kms", "AWS_ENDPOINT_URL_KMS")
    ddb = client("dynamodb", "AWS_ENDPOINT_URL_DYNAMODB")
    bucket = os.environ["SKYE_TEST_PROVIDER_BUCKETS"].split(",")[0]
    key_id = os.environ["SKYE_TEST_KMS_KEY_ID"]
    table = os.environ["SKYE_TEST_FILES_TABLE"]
    run = uuid.uuid4().hex

    def s3_put_get():
        body = b"hello " + run.encode()
        s3.put_object(Bucket=bucket, Key=f"smoke/{run}", Body=body)
        got = s3.get_object(Bucket=bucket, Key=f"smoke/{run}")["Body"].read()
        assert got == body, got

    def s3_multipart(algorithm):
        # LocalStack is strict and consistent with itself: if CreateMultipartUpload named a
        # ChecksumAlgorithm, CompleteMultipartUpload must repeat every part's checksum
        # (else InvalidRequest); if it named none, the parts must carry no checksum
        # (else InvalidPart), even though UploadPart returns one by default.
        def run_mpu():
            key = f"smoke/{run}-mpu-{algorithm or 'none'}"
            part1 = os.urandom(5 * 1024 * 1024)
            part2 = b"tail"
            create = {"ChecksumAlgorithm": algorithm} if algorithm else {}
            mpu = s3.create_multipart_upload(Bucket=bucket, Key=key, **create)
            parts = []
            for n, data in ((1, part1), (2, part2)):
                r = s3.upload_part(
                    Bucket=bucket, Key=key, UploadId=mpu["UploadId"], PartNumber=n, Body=data, **create
                )
                part = {"PartNumber": n, "ETag": r["ETag"]}
                if algorithm:
                    part[f"Checksum{algorithm}"] = r[f"Checksum{algorithm}"]
                parts.append(part)
            s3.complete_multipart_upload(
                Bucket=bucket, Key=key, UploadId=mpu["UploadId"], MultipartUpload={"Parts": parts}
            )
            got = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
            assert got == part1 + part2

        return run_mpu

    def kms_data_key():
        ctx = {"tenant": "smoke", "run": run}
        dk = kms.generate_data_key(KeyId=key_id, KeySpec="AES_256", EncryptionContext=ctx)
        assert len(dk["Plaintext"]) == 32
        out = kms.decrypt(CiphertextBlob=dk["CiphertextBlob"], EncryptionContext=ctx)
        assert out["Plaintext"] == dk["Plaintext"]
        try:
            kms.decrypt(CiphertextBlob=dk["CiphertextBlob"], EncryptionContext={"tenant": "other"})
        except ClientError as err:
            assert err.response["Error"]["Code"] == "InvalidCiphertextException", err
        else:
            raise AssertionError("decrypt with the wrong EncryptionContext succeeded")

    def ddb_transaction():
        item = {
            "pk": {"S": f"FILE#{run}"},
            "sk": {"S": "META"},
            "expires_at": {"N": str(int(time.time()) + 3600)},
        }
        put = {"Put": {"TableName": table, "Item": item, "ConditionExpression": "attribute_not_exists(pk)"}}
        ddb.transact_write_items(TransactItems=[put])
        got = ddb.get_item(TableName=table, Key={"pk": item["pk"], "sk": item["sk"]}, ConsistentRead=True)
        assert got["Item"]["expires_at"] == item["expires_at"], got
        try:
            ddb.transact_write_items(TransactItems=[put])
        except ClientError as err:
            assert err.response["Error"]["Code"] == "TransactionCanceledException", err
            reasons = [r.get("Code") for r in err.response.get("CancellationReasons", [])]
            assert reasons == ["ConditionalCheckFailed"], reasons
        else:
            raise AssertionError("second conditional TransactWriteItems succeeded")

    check("s3 put/get", s3_put_get)
    check("s3 multipart (no checksum)", s3_multipart(None))
    check("s3 multipart (CRC32 checksums)", s3_multipart("CRC32"))
    check("kms GenerateDataKey+Decrypt with EncryptionContext", kms_data_key)
    check("dynamodb TransactWriteItems with ConditionExpression", ddb_transaction)
    passed = sum(results)
    print(f"smoke: {passed} passed, {len(results) - passed} failed ({os.environ.get('SKYE_TEST_EMULATOR_SET')})")
    return 0 if passed == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
