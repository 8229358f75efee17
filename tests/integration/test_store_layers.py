#!/usr/bin/python3
"""The store's operations keep to sql.h (issue 11 item 4; DEVELOPERS.md): no ops_*.c prepares,
binds or steps a statement by hand, nor reads a column by its position — statements run through
sql.h's one-call helpers and rows are read through field tables. A source check: it reads
src/store/ops_*.c and names each line that calls the driver directly.

  ops_use_sql_helpers   no db_prepare, db_bind_args, db_step or db_column_* in src/store/ops_*.c

Run: /usr/bin/python3 tests/integration/test_store_layers.py --bin-dir build
"""
import argparse
import glob
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(REPO, "tests", "rig"))
import rig  # noqa: E402

# db.h's statement calls that sql.h wraps (db_finish stays: a caller that stops at a row
# finishes the statement itself, as sql.h says).
DRIVER_CALL = re.compile(r"\bdb_(prepare|bind_args|bind_failed|step|column_\w+)\s*\(")


def case_ops_use_sql_helpers():
    files = sorted(glob.glob(os.path.join(REPO, "src", "store", "ops_*.c")))
    assert files, "no src/store/ops_*.c found"
    found = []
    for path in files:
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if DRIVER_CALL.search(line):
                    found.append(f"{os.path.relpath(path, REPO)}:{n}: {line.strip()}")
    assert not found, "driver calls in ops files:\n  " + "\n  ".join(found)
    print(f"     {len(files)} ops files, none calls the driver's statement functions")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin-dir", required=False)
    ap.parse_args()
    r = rig.Runner()
    r.run("ops_use_sql_helpers", case_ops_use_sql_helpers)
    return r.exit_code()


if __name__ == "__main__":
    sys.exit(main())
