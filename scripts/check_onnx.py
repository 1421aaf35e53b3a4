#!/usr/bin/python3
"""Runs onnx.checker.check_model(full_check=True) on each .onnx path given.

Prints one line per file, `OK path` or `FAIL path: message`, and exits 1 if any file failed
(2 when onnx itself cannot be imported). Meant for Debian's python3-onnx:
    /usr/bin/python3 scripts/check_onnx.py a.onnx b.onnx ...
"""

import sys


def main(paths):
    try:
        import onnx
        import onnx.checker
    except Exception as e:  # noqa: BLE001 - any import failure means the same thing here
        print(f"ERROR cannot import onnx ({e}); install Debian's python3-onnx (apt-get install python3-onnx)")
        return 2
    if not paths:
        print("usage: check_onnx.py MODEL.onnx [MODEL.onnx ...]", file=sys.stderr)
        return 2
    failed = 0
    for path in paths:
        try:
            model = onnx.load(path)
            onnx.checker.check_model(model, full_check=True)
        except Exception as e:  # noqa: BLE001 - report every failure, keep checking the rest
            failed += 1
            message = " ".join(f"{type(e).__name__}: {e}".split())
            print(f"FAIL {path}: {message}")
        else:
            print(f"OK {path}")
        sys.stdout.flush()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
