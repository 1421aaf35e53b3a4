"""Loads a glow-onnx native checkpoint into the PyTorch reference port and encodes inputs.

A native checkpoint is a .safetensors file whose tensor names and shapes are those of the
y0ast/Glow-PyTorch state_dict. This script builds the 'y0ast' reference model
(glow_reference.py), opens the file with a small safetensors reader (json + struct +
torch.frombuffer; the pip `safetensors` package is not needed), calls
load_state_dict(state, strict=True) - so any missing, unexpected or misshapen tensor fails - and
prints the encode outputs as JSON on stdout.

    /usr/bin/python3 scripts/torch_reference/check_native.py CHECKPOINT.safetensors \\
        [CONFIG.json] INPUTS.json [--float32] [--permutations PERMS.json]

  CONFIG.json   the glow-onnx config ({imageShape, K, L, ...}), or any JSON object holding it
                under "config" (glow.json, a fixture file). Without it, the config stored in
                the checkpoint's metadata ("glow_onnx.config") is used.
  INPUTS.json   {"x": X, "y"?: Y}, or an object holding that under "inputs" (a fixture file);
                each tensor either {"shape": [...], "data": [flat...]} or a nested list.
                x [N,C,H,W] dequantised pixels; y [N,classes] one-hot for class-conditional models.
  permutation 'shuffle': channel orders {"flow.layers.N": [indices]} are taken from
                --permutations, else CONFIG.json's "permutations", else the checkpoint metadata
                ("glow_onnx.shuffles").
  --float32     compute in float32 (default float64, from the stored values).

stdout (T = {"shape": [...], "data": [flat float64...]}):
  {"naming": "y0ast", "checkpoint": path, "tensors": count, "dtype": "float64"|"float32",
   "eps": [T...] (eps_1 = first split ... eps_L = top), "logdet": T, "log_px": T, "bpd": T,
   "y_logits": T (class-conditional only)}
Exit status 1 with a message on stderr when the file does not load strictly.

    /usr/bin/python3 scripts/torch_reference/check_native.py --self-test

writes a safetensors file from each fixture of test/fixtures/glow-torch (names mapped to y0ast),
runs the above on it and compares with the fixture's encode outputs.
"""

import argparse
import json
import os
import struct
import sys

import torch

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from glow_reference import Glow, convert_state_dict  # noqa: E402

torch.set_num_threads(2)

SAFE_DTYPES = {
    'F64': torch.float64, 'F32': torch.float32, 'F16': torch.float16, 'BF16': torch.bfloat16,
    'I64': torch.int64, 'I32': torch.int32, 'I16': torch.int16, 'I8': torch.int8,
    'U8': torch.uint8, 'BOOL': torch.bool,
}
CONFIG_KEYS = ('imageShape', 'K', 'L', 'hiddenChannels', 'coupling', 'permutation', 'lu', 'learnTop',
               'numClasses', 'nBits', 'actnormScale')
# Absent means the paper's layers: an unbounded sigmoid (scaleFloor), zero padding (zerosPadValue).
OPTIONAL_CONFIG_KEYS = ('scaleFloor', 'zerosPadValue', 'scaleBound', 'lipschitz', 'constantSplitScale')


class LoadError(Exception):
    pass


def read_safetensors(path):
    """Returns (OrderedDict name -> tensor (a copy), metadata dict)."""
    with open(path, 'rb') as f:
        raw = f.read()
    if len(raw) < 8:
        raise LoadError(f'{path}: too short for a safetensors file')
    (n,) = struct.unpack('<Q', raw[:8])
    if n > len(raw) - 8:
        raise LoadError(f'{path}: header length {n} exceeds the file')
    header = json.loads(raw[8:8 + n].decode('utf-8'))
    base = 8 + n
    data = bytearray(raw[base:])  # writable buffer for torch.frombuffer
    metadata = header.pop('__metadata__', {}) or {}
    tensors = {}
    for name, info in header.items():
        dtype = SAFE_DTYPES.get(info['dtype'])
        if dtype is None:
            raise LoadError(f'{path}: {name} has unsupported dtype {info["dtype"]}')
        begin, end = info['data_offsets']
        shape = list(info['shape'])
        count = 1
        for s in shape:
            count *= s
        itemsize = torch.tensor([], dtype=dtype).element_size()
        if end - begin != count * itemsize or end > len(data):
            raise LoadError(f'{path}: {name} byte range {begin}..{end} does not hold {shape} {info["dtype"]}')
        if count == 0:
            t = torch.empty(shape, dtype=dtype)
        else:
            t = torch.frombuffer(data, dtype=dtype, count=count, offset=begin).reshape(shape).clone()
        if sys.byteorder != 'little' and itemsize > 1:
            t = t.view(torch.uint8).reshape(-1, itemsize).flip(1).reshape(-1).view(dtype).reshape(shape)
        tensors[name] = t
    # The header is a JSON object; order the tensors by position in the file (the writer's order).
    order = sorted(header, key=lambda k: header[k]['data_offsets'][0])
    return {k: tensors[k] for k in order}, metadata


def write_safetensors(path, tensors, metadata=None):
    """Minimal writer (used by --self-test): little-endian, 8-byte aligned header."""
    names = list(tensors)
    header = {}
    blobs = []
    offset = 0
    rev = {v: k for k, v in SAFE_DTYPES.items()}
    for name in names:
        t = tensors[name].contiguous()
        b = t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.view(torch.int16).numpy().tobytes()
        header[name] = {'dtype': rev[t.dtype], 'shape': list(t.shape), 'data_offsets': [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    if metadata:
        header['__metadata__'] = metadata
    h = json.dumps(header, separators=(',', ':')).encode('utf-8')
    h += b' ' * ((8 - len(h) % 8) % 8)
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def to_tensor(v, dtype):
    if isinstance(v, dict):
        return torch.tensor(v['data'], dtype=dtype).reshape(v['shape'])
    return torch.tensor(v, dtype=dtype)


def tensor_json(t):
    t = t.detach().to(torch.float64).contiguous()
    return {'shape': list(t.shape), 'data': t.flatten().tolist()}


def extract_config(obj):
    if isinstance(obj, dict) and all(k in obj for k in CONFIG_KEYS):
        return {k: obj[k] for k in CONFIG_KEYS + OPTIONAL_CONFIG_KEYS if k in obj}
    if isinstance(obj, dict) and isinstance(obj.get('config'), dict):
        return extract_config(obj['config'])
    raise LoadError('no Glow config found (expected the keys ' + ', '.join(CONFIG_KEYS) + ', possibly under "config")')


def run(checkpoint, config_obj, inputs_obj, float32=False, permutations=None):
    state, metadata = read_safetensors(checkpoint)
    if config_obj is None:
        if 'glow_onnx.config' not in metadata:
            raise LoadError(f'{checkpoint}: no config given and none in the metadata (glow_onnx.config)')
        config_obj = json.loads(metadata['glow_onnx.config'])
    config = extract_config(config_obj)
    if permutations is None and isinstance(config_obj, dict) and 'permutations' in config_obj:
        permutations = config_obj['permutations']
    if permutations is None and 'glow_onnx.shuffles' in metadata:
        permutations = json.loads(metadata['glow_onnx.shuffles'])
    if config['permutation'] == 'shuffle' and not permutations:
        raise LoadError('permutation shuffle: no channel orders (--permutations, config "permutations", or metadata)')

    dtype = torch.float32 if float32 else torch.float64
    model = Glow(config, naming='y0ast').to(dtype)
    if permutations:
        model.set_permutations(permutations)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise LoadError(f'{checkpoint}: load_state_dict(strict=True) failed: {e}') from None
    model.eval()

    if isinstance(inputs_obj, dict) and 'inputs' in inputs_obj and 'x' not in inputs_obj:
        inputs_obj = inputs_obj['inputs']
    x = to_tensor(inputs_obj['x'], dtype)
    y = to_tensor(inputs_obj['y'], dtype) if inputs_obj.get('y') is not None else None
    if config['numClasses'] > 0 and y is None:
        raise LoadError('class-conditional model: INPUTS.json needs "y" (one-hot [N, classes])')
    with torch.no_grad():
        out = model.encode(x, y)
    result = {
        'naming': 'y0ast', 'checkpoint': checkpoint, 'tensors': len(state),
        'dtype': 'float32' if float32 else 'float64',
        'eps': [tensor_json(e) for e in out['eps']],
        'logdet': tensor_json(out['logdet']), 'log_px': tensor_json(out['log_px']), 'bpd': tensor_json(out['bpd']),
    }
    if out['y_logits'] is not None:
        result['y_logits'] = tensor_json(out['y_logits'])
    return result


def self_test(fixtures='test/fixtures/glow-torch'):
    import tempfile
    names = sorted(f[:-5] for f in os.listdir(fixtures) if f.endswith('.json'))
    if not names:
        print(f'no fixtures in {fixtures}: run make_fixtures.py first', file=sys.stderr)
        return 1
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            fx = json.load(open(os.path.join(fixtures, name + '.json')))
            state = torch.load(os.path.join(fixtures, fx['checkpoint']))
            state = convert_state_dict(state, fx['naming'], 'y0ast')
            path = os.path.join(tmp, name + '.safetensors')
            meta = {'format': 'pt', 'glow_onnx.config': json.dumps(fx['config'])}
            if 'permutations' in fx:
                meta['glow_onnx.shuffles'] = json.dumps(fx['permutations'])
            write_safetensors(path, state, meta)
            # Once with the fixture as config + inputs, once with the config from the metadata.
            for cfg in (fx, None):
                res = run(path, cfg, fx)
                diffs = [max(abs(a - b) for a, b in zip(r['data'], e['data']))
                         for r, e in zip(res['eps'] + [res['bpd'], res['logdet']],
                                         fx['encode']['eps'] + [fx['encode']['bpd'], fx['encode']['logdet']])]
                good = max(diffs) < 1e-12
                ok &= good
            print(f"{'ok  ' if good else 'FAIL'} {name:30s} {res['tensors']} tensors, max diff {max(diffs):.1e}")
        # A strict load must fail on a missing tensor.
        fx = json.load(open(os.path.join(fixtures, names[0] + '.json')))
        state = convert_state_dict(torch.load(os.path.join(fixtures, fx['checkpoint'])), fx['naming'], 'y0ast')
        state.pop(next(k for k in state if k.endswith('actnorm.logs')))
        path = os.path.join(tmp, 'broken.safetensors')
        write_safetensors(path, state)
        try:
            run(path, fx, fx)
            print('FAIL strict load accepted a checkpoint with a missing tensor')
            ok = False
        except LoadError as e:
            print('ok   strict load refuses a missing tensor:', str(e).splitlines()[0][:120])
    print('self-test ' + ('ok' if ok else 'FAILED'))
    return 0 if ok else 1


def main():
    ap = argparse.ArgumentParser(description='Load a native Glow checkpoint into the PyTorch reference and encode.')
    ap.add_argument('files', nargs='*', help='CHECKPOINT.safetensors [CONFIG.json] INPUTS.json')
    ap.add_argument('--float32', action='store_true')
    ap.add_argument('--permutations')
    ap.add_argument('--self-test', action='store_true')
    ap.add_argument('--fixtures', default='test/fixtures/glow-torch')
    args = ap.parse_args()
    if args.self_test:
        return self_test(args.fixtures)
    if len(args.files) not in (2, 3):
        ap.error('expected CHECKPOINT.safetensors [CONFIG.json] INPUTS.json')
    ckpt = args.files[0]
    config_obj = json.load(open(args.files[1])) if len(args.files) == 3 else None
    inputs_obj = json.load(open(args.files[-1]))
    perms = json.load(open(args.permutations)) if args.permutations else None
    try:
        result = run(ckpt, config_obj, inputs_obj, args.float32, perms)
    except LoadError as e:
        print(f'check_native: {e}', file=sys.stderr)
        return 1
    json.dump(result, sys.stdout)
    sys.stdout.write('\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
