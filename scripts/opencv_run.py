#!/usr/bin/env python3
"""Runs ONNX graphs with OpenCV's DNN module (cv2.dnn.readNetFromONNX, Debian's python3-opencv).

usage: opencv_run.py MANIFEST.json
MANIFEST: a list of {"model": path, "inputs": {name: {"file": path, "shape": [...]}},
"outputs": [name, ...], "out": dir}; inputs and outputs are raw little-endian float32.
Each output is written to out/NAME.bin, reshaped to the shape the ONNX graph declares (OpenCV
returns 1-D outputs as columns). Prints "OK model" or "FAIL model: message" per entry, one line
each; exits 2 when cv2 cannot be imported.
"""
import json
import sys

try:
    import cv2
    import numpy as np
except ImportError as e:
    print(f"cannot import cv2: {e}")
    sys.exit(2)


def run(entry):
    net = cv2.dnn.readNetFromONNX(entry["model"])
    for name, spec in entry["inputs"].items():
        data = np.fromfile(spec["file"], dtype="<f4").reshape(spec["shape"])
        net.setInput(data, name)
    results = net.forward(entry["outputs"])
    for name, value in zip(entry["outputs"], results):
        np.ascontiguousarray(value, dtype="<f4").tofile(f"{entry['out']}/{name}.bin")


def main():
    with open(sys.argv[1]) as f:
        manifest = json.load(f)
    for entry in manifest:
        try:
            run(entry)
            print(f"OK {entry['model']}", flush=True)
        except Exception as e:  # one line per model: OpenCV's messages span several
            message = " ".join(str(e).split())
            print(f"FAIL {entry['model']}: {message}", flush=True)


if __name__ == "__main__":
    main()
