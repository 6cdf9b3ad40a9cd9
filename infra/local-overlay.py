"""Makes the emulator's copy of infra/template.yaml. The template meant for AWS is never edited;
this writes a derived copy with only what the local emulator needs changed:

- each function's `CodeUri: ..` (a workspace for `sam build`) becomes its binary's zip (cargo
  lambda's for a release build, infra/zip-functions.py's for the debug one), found through its
  `Metadata.BuildProperties.Binary`;
- `AWS::Events::Archive` is dropped: MiniStack's CloudFormation has no provisioner for it
  (infra/deploy-local.sh creates the archive through the EventBridge API instead);
- every function is given `AWS_LAMBDA_LOG_FORMAT=JSON`, as Lambda derives it on AWS from the
  template's `LoggingConfig.LogFormat: JSON`, which MiniStack ignores (its functions logged
  coloured text; the benchmark reads the JSON lines' spans);
- `SalesOutboxFastPathAlarm` is dropped: MiniStack's CloudFormation refuses an alarm on metric math
  ("Properties.Metrics (metric math) is not supported"); the template test checks its metrics.

With --localstack (LocalStack's free edition, which has no API Gateway v2, no Cognito and no SES
v2), the HTTP API's resources and outputs, the user pool and the SES identity are dropped too. The
APIs are then not served at all: every route needs a caller the JWT authorizer verified, and no
setting turns that off (a function URL without it would only answer 401). The LocalStack checks
are about routing and adapters; the demo and the API tests run on MiniStack.

usage: local-overlay.py TEMPLATE LAMBDA_DIR OUT [--localstack]
"""
import os
import re
import sys


LOCALSTACK_DROPPED_TYPES = {
    "AWS::SES::EmailIdentity",  # SES v2: not in LocalStack's free edition (the email function says so at start)
    "AWS::ApiGatewayV2::Api",
    "AWS::ApiGatewayV2::Integration",
    "AWS::ApiGatewayV2::Route",
    "AWS::ApiGatewayV2::Stage",
    "AWS::ApiGatewayV2::Authorizer",
    "AWS::Cognito::UserPool",
    "AWS::Cognito::UserPoolClient",
    "AWS::Cognito::UserPoolGroup",
}
LOCALSTACK_DROPPED_OUTPUTS = {"ApiId", "ApiUrl", "UserPoolId", "UserPoolClientId"}
LOCAL_DROPPED_RESOURCES = {"SalesOutboxFastPathAlarm"}  # metric math: see the docstring
LOCALSTACK_DROPPED_RESOURCES = {"SalesApiPermission", "WebhooksApiPermission", "WarehouseApiPermission"}  # API Gateway's permissions


def main(template, lambda_dir, out, *flags):
    localstack = "--localstack" in flags
    dropped_types = {"AWS::Events::Archive"} | (LOCALSTACK_DROPPED_TYPES if localstack else set())
    lines = open(template).read().splitlines(keepends=True)
    result, binary, replaced = [], None, set()
    skipping = False
    section = None
    for line in lines:
        top = re.match(r"^(\w+):", line)
        if top:
            section = top.group(1)
        # Drop a top-level resource (or output) block by its Type or name.
        header = re.match(r"^  (\w+):\s*$", line)
        if header:
            skipping = False
            if (section == "Resources" and header.group(1) in LOCAL_DROPPED_RESOURCES) or (localstack and (
                (section == "Outputs" and header.group(1) in LOCALSTACK_DROPPED_OUTPUTS)
                or (section == "Resources" and header.group(1) in LOCALSTACK_DROPPED_RESOURCES)
            )):
                skipping = True
                continue
        kind = re.match(r"^    Type: (\S+)\s*$", line)
        if kind and kind.group(1) in dropped_types and result and re.match(r"^  \w+:\s*$", result[-1]):
            result.pop()
            skipping = True
            continue
        if skipping and (line.startswith("    ") or not line.strip()):
            continue
        skipping = False
        m = re.match(r"^\s+Binary:\s*(\S+)\s*$", line)
        if m:
            binary = m.group(1)
        m = re.match(r"^(\s+)CodeUri:\s*\.\.\s*$", line)
        if m:
            if not binary:
                sys.exit(f"CodeUri without a preceding Metadata.BuildProperties.Binary: {line!r}")
            zip_path = os.path.join(lambda_dir, binary, "bootstrap.zip")
            if not os.path.exists(zip_path):
                sys.exit(f"{zip_path} is missing: build and zip with infra/deploy-local.sh first")
            line = f"{m.group(1)}CodeUri: {os.path.abspath(zip_path)}\n"
            replaced.add(binary)
            binary = None
        if localstack and re.match(r"^    DependsOn: EmailSenderIdentity\s*$", line):
            continue
        result.append(line)
        if section == "Globals" and re.match(r"^      Variables:\s*$", line):
            result.append("        AWS_LAMBDA_LOG_FORMAT: JSON\n")
    if not replaced:
        sys.exit("no function CodeUri replaced: has the template changed shape?")
    with open(out, "w") as f:
        f.writelines(result)
    print(f"overlay: {len(replaced)} functions from {lambda_dir}: {', '.join(sorted(replaced))}", file=sys.stderr)


if __name__ == "__main__":
    main(*sys.argv[1:])
