"""Calls ECS DescribeClusters through boto3 and prints how the error parsed."""
import json
import sys

import boto3
from botocore.exceptions import ClientError

endpoint, access_key, secret_key = sys.argv[1:4]
client = boto3.client(
    "ecs",
    endpoint_url=endpoint,
    region_name="us-east-1",
    aws_access_key_id=access_key,
    aws_secret_access_key=secret_key,
)
try:
    client.describe_clusters(clusters=["missing"])
    print(json.dumps({"error": None}))
except ClientError as e:
    print(json.dumps({
        "error": e.response["Error"],
        "status": e.response["ResponseMetadata"]["HTTPStatusCode"],
        "request_id": e.response["ResponseMetadata"].get("RequestId"),
    }))
