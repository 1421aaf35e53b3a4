// The Python that the reference checks run: Debian's, where .ci/run installs python3-onnx,
// python3-torch and python3-opencv (a python3 earlier on PATH, such as pyenv's, lacks them).

export const PYTHON = '/usr/bin/python3';
