"""Makes the emulator's copy of infra/template.yaml. The template meant for AWS is never edited;
this writes a derived copy with only what the local emulator needs changed:

- each function's `CodeUri: ..` (a workspace for `sam build`) becomes the zip cargo lambda built
  for it, found through its `Metadata.BuildProperties.Binary`;
- `AWS::Events::Archive` is dropped: MiniStack's CloudFormation has no provisioner for it
  (infra/deploy-local.sh creates the archive through the EventBridge API instead).

usage: local-overlay.py TEMPLATE LAMBDA_DIR OUT
"""
import os
import re
import sys


def main(template, lambda_dir, out):
    lines = open(template).read().splitlines(keepends=True)
    result, binary, replaced = [], None, set()
    skipping = False
    for line in lines:
        # Drop a top-level resource block whose Type is AWS::Events::Archive.
        header = re.match(r"^  (\w+):\s*$", line)
        if header:
            skipping = False
        if re.match(r"^    Type: AWS::Events::Archive\s*$", line) and result and re.match(r"^  \w+:\s*$", result[-1]):
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
                sys.exit(f"{zip_path} is missing: build with cargo lambda first")
            line = f"{m.group(1)}CodeUri: {os.path.abspath(zip_path)}\n"
            replaced.add(binary)
            binary = None
        result.append(line)
    if not replaced:
        sys.exit("no function CodeUri replaced: has the template changed shape?")
    with open(out, "w") as f:
        f.writelines(result)
    print(f"overlay: {len(replaced)} functions from {lambda_dir}: {', '.join(sorted(replaced))}", file=sys.stderr)


if __name__ == "__main__":
    main(*sys.argv[1:4])
