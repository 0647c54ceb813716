"""Signs requests with botocore and prints them as JSON.

Reads a JSON list of request specs on stdin; for each prints the method,
URL, headers and body exactly as botocore would send them.
"""
import json
import sys

from botocore.auth import S3SigV4Auth, S3SigV4QueryAuth, SigV4Auth, SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials


def sign(spec):
    creds = Credentials(spec["access_key"], spec["secret_key"])
    body = spec.get("body", "").encode()
    request = AWSRequest(
        method=spec["method"], url=spec["url"], data=body, headers=dict(spec.get("headers", {}))
    )
    if spec.get("unsigned_payload"):
        request.context["client_config"] = Config(s3={"payload_signing_enabled": False})
    kind = spec["kind"]
    service, region = spec["service"], spec["region"]
    if kind == "header":
        SigV4Auth(creds, service, region).add_auth(request)
    elif kind == "s3":
        S3SigV4Auth(creds, service, region).add_auth(request)
    elif kind == "presign":
        SigV4QueryAuth(creds, service, region, expires=spec["expires"]).add_auth(request)
    elif kind == "s3-presign":
        S3SigV4QueryAuth(creds, service, region, expires=spec["expires"]).add_auth(request)
    else:
        raise ValueError(kind)
    prepared = request.prepare()
    return {
        "method": prepared.method,
        "url": prepared.url,
        "headers": [[k, v if isinstance(v, str) else v.decode()] for k, v in prepared.headers.items()],
        "body": body.decode(),
    }


json.dump([sign(spec) for spec in json.load(sys.stdin)], sys.stdout)
