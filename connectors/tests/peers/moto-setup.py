"""Sets up the ECR test peer (moto's server mode) for scripts/connector-peers.

Creates an IAM user allowed ecr:*, its access key, and the repositories the tests list, then
prints `ACCESS_KEY_ID SECRET_ACCESS_KEY` on one line. moto is started with
INITIAL_NO_AUTH_ACTION_COUNT equal to the number of calls made here (passed as the second
argument, checked below): every request after them must be SigV4-signed with a key moto
issued, and a wrong signature is refused with SignatureDoesNotMatch.

Usage: moto-setup.py ENDPOINT_URL EXPECTED_CALLS REPOSITORY...
"""

import json
import sys

import boto3

endpoint, expected_calls, repositories = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
anonymous = dict(
    endpoint_url=endpoint,
    region_name="us-east-1",
    aws_access_key_id="AKIDSETUPONLY",
    aws_secret_access_key="setup-only",
)
calls = 0

iam = boto3.client("iam", **anonymous)
iam.create_user(UserName="stella-ci")
calls += 1
iam.put_user_policy(
    UserName="stella-ci",
    PolicyName="ecr-read",
    PolicyDocument=json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "ecr:*", "Resource": "*"}],
        }
    ),
)
calls += 1
key = iam.create_access_key(UserName="stella-ci")["AccessKey"]
calls += 1
ecr = boto3.client("ecr", **anonymous)
for name in repositories:
    ecr.create_repository(repositoryName=name)
    calls += 1

if calls != expected_calls:
    sys.exit(f"moto-setup: made {calls} calls, moto was told to expect {expected_calls}")
print(key["AccessKeyId"], key["SecretAccessKey"])
