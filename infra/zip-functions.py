#!/usr/bin/env python3
"""Zips the local deployment's debug binaries as cargo lambda's `--output-format zip` would.

    infra/zip-functions.py LAMBDA_DIR BINARY...

Each LAMBDA_DIR/<binary>/bootstrap (cargo lambda's `--output-format binary`) becomes
LAMBDA_DIR/<binary>/bootstrap.zip: one entry, `bootstrap`, executable. infra/deploy-local.sh calls
it for the debug build; release zips (whose size `make bench` reports) stay cargo lambda's own.

Two differences, both for time (README, "Build and test time"):
- only a binary whose content changed since its zip was made is zipped again (the binary's SHA-256
  and the zip's size and time are kept beside it, in bootstrap.zip.source): cargo lambda zipped all
  14 at every deploy, 23 s of a warm `make test` with nothing rebuilt;
- deflate at its fastest level, several binaries at a time: a debug binary is about 45 MB, and the
  emulator unpacks it on the same machine (13.6 MB zipped against cargo lambda's 11.9 MB).
"""

import concurrent.futures
import hashlib
import os
import sys
import zipfile


def stamp(path):
    st = os.stat(path)
    return f"{st.st_size} {st.st_mtime_ns}"


def zip_one(lambda_dir, binary):
    """Returns True when the zip was made, False when the one there already holds this binary."""
    folder = os.path.join(lambda_dir, binary)
    source = os.path.join(folder, "bootstrap")
    target = os.path.join(folder, "bootstrap.zip")
    record = target + ".source"
    if not os.path.isfile(source):
        sys.exit(f"{source} is missing: build with cargo lambda --output-format binary first")
    # Read once: hashed, and zipped when it changed.
    with open(source, "rb") as f:
        content = f.read()
    wanted = hashlib.sha256(content).hexdigest()
    try:
        with open(record) as f:
            kept_digest, kept_stamp = f.read().split(" ", 1)
        # The zip must still be the one made from that binary: a release build (cargo lambda's
        # own zip) in between leaves the record but replaces the zip.
        if kept_digest == wanted and kept_stamp == stamp(target):
            return False
    except (OSError, ValueError):
        pass
    entry = zipfile.ZipInfo("bootstrap")
    entry.external_attr = 0o100755 << 16
    entry.compress_type = zipfile.ZIP_DEFLATED
    partial = target + ".partial"
    with zipfile.ZipFile(partial, "w") as z:
        z.writestr(entry, content, compresslevel=1)
    # The stamp of the zip made here (a rename keeps it): read after the rename, it could be a
    # release zip cargo lambda wrote meanwhile, which the record would then vouch for.
    made = stamp(partial)
    os.replace(partial, target)
    with open(record, "w") as f:
        f.write(f"{wanted} {made}")
    return True


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    lambda_dir, binaries = sys.argv[1], sorted(set(sys.argv[2:]))
    # zlib lets go of the GIL while it compresses: threads use every core.
    with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        made = dict(zip(binaries, pool.map(lambda b: zip_one(lambda_dir, b), binaries)))
    zipped = sorted(b for b, m in made.items() if m)
    print(
        f"zipped {len(zipped)} of {len(binaries)} (the rest unchanged since their zip)"
        + (f": {', '.join(zipped)}" if zipped else ""),
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
