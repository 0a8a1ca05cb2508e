"""Idempotent LocalStack set-up for the control plane (see 01-control-plane.sh)."""
import io
import json
import os
import zipfile

import boto3

endpoint = os.environ.get("AWS_ENDPOINT_URL", "http://127.0.0.1:4566")
kw = dict(endpoint_url=endpoint, region_name=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
          aws_access_key_id="test", aws_secret_access_key="test")
sqs = boto3.client("sqs", **kw)
secrets = boto3.client("secretsmanager", **kw)
lam = boto3.client("lambda", **kw)

dlq_url = sqs.create_queue(QueueName="msgsvc-control-dlq")["QueueUrl"]
dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
queue_url = sqs.create_queue(QueueName="msgsvc-control", Attributes={
    "VisibilityTimeout": "5",
    "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "3"}),
})["QueueUrl"]

try:
    secrets.create_secret(Name="msgsvc/broker", SecretString=json.dumps({"username": "guest", "password": "guest"}))
except secrets.exceptions.ResourceExistsException:
    pass

template = os.environ.get("TENANT_FUNCTION_TEMPLATE", "consumer")
try:
    lam.get_function(FunctionName=template)
except lam.exceptions.ResourceNotFoundException:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("bootstrap", "#!/bin/sh\n# placeholder: cargo lambda watch runs the real consumer\n")
    lam.create_function(FunctionName=template, Runtime="provided.al2023", Handler="bootstrap",
                        Role="arn:aws:iam::000000000000:role/msgsvc-consumer",
                        Code={"ZipFile": buf.getvalue()}, MemorySize=256, Timeout=60,
                        Architectures=["arm64"])
print(f"control queue {queue_url}, DLQ {dlq_url}, template function {template}")
