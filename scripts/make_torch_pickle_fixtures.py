#!/usr/bin/env python3
"""Writes the torch.save fixtures for test/io/torch.test.ts into test/fixtures/torch-io/.

Run with a Python that has torch (Debian: /usr/bin/python3 with python3-torch):

    /usr/bin/python3 scripts/make_torch_pickle_fixtures.py

Besides the .pt files it writes expected.json with every tensor the reader should return for
each readable fixture: name, dtype, shape and the flat row-major values (NaN and infinities as
the strings "nan", "inf", "-inf"). The unreadable fixtures (legacy format, pickled classes, ...)
are listed under "unreadable"; the tests hold the messages they expect.
"""

import argparse
import io
import json
import math
import os
import pickle
import struct
import sys
import zipfile
import zlib
from collections import OrderedDict

import numpy as np
import torch

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'test', 'fixtures', 'torch-io')


def values_of(t):
    out = []
    for v in t.detach().flatten().double().tolist():
        if math.isnan(v):
            out.append('nan')
        elif math.isinf(v):
            out.append('inf' if v > 0 else '-inf')
        else:
            out.append(v)
    if t.dtype in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8, torch.bool):
        out = [int(v) for v in t.detach().flatten().long().tolist()]
    return out


def describe(sd):
    return [
        {'name': k, 'dtype': str(v.dtype).replace('torch.', ''), 'shape': list(v.shape), 'values': values_of(v)}
        for k, v in sd.items()
    ]


def compact_json(expected):
    """One tensor per line: small, and diffs stay readable."""
    dump = lambda value: json.dumps(value, allow_nan=False)
    files = []
    for name, tensors in expected['readable'].items():
        rows = ',\n'.join(f'    {dump(t)}' for t in tensors)
        files.append(f'  {dump(name)}: [\n{rows}\n  ]')
    readable = ',\n'.join(files)
    return (f'{{\n "torch_version": {dump(expected["torch_version"])},\n'
            f' "unreadable": {dump(expected["unreadable"])},\n'
            f' "readable": {{\n{readable}\n }}\n}}\n')


def save(name, obj, **kwargs):
    path = os.path.join(OUT, name)
    torch.save(obj, path, **kwargs)
    return path


def plain_state_dict():
    g = torch.Generator().manual_seed(0)
    shared = torch.arange(10.0)
    sd = {
        'f32': torch.randn(2, 3, generator=g),
        'f32_specials': torch.tensor([float('nan'), float('inf'), float('-inf'), -0.0, 1e-45, 3.4028234663852886e38]),
        'f64': torch.tensor([1 / 3, -2.5e-300, 1e300, 0.1], dtype=torch.float64),
        'i64': torch.tensor([0, -1, 2 ** 53, -(2 ** 53), 123456789012], dtype=torch.int64),
        'f16': torch.tensor([1.0, -2.5, 65504.0, 6e-8, 0.1, float('inf')], dtype=torch.float16),
        'bf16': torch.tensor([1.0, -3.140625, 1e30, 0.1], dtype=torch.bfloat16),
        'bool': torch.tensor([[True, False], [False, True]]),
        'i32': torch.tensor([-(2 ** 31), 2 ** 31 - 1, 7], dtype=torch.int32),
        'i16': torch.tensor([-32768, 32767], dtype=torch.int16),
        'i8': torch.tensor([-128, 127, 0], dtype=torch.int8),
        'u8': torch.tensor([0, 255, 17], dtype=torch.uint8),
        'scalar': torch.tensor(3.5),
        'empty': torch.zeros(0),
        'empty_2d': torch.zeros(2, 0, 3),
        # Views: non-contiguous, offset into a shared storage, strided, expanded (stride 0).
        'transposed': torch.arange(6.0).reshape(2, 3).t(),
        'permuted': torch.randn(2, 3, 4, generator=g).permute(2, 0, 1),
        'shared_slice': shared[2:5],
        'shared_full': shared,
        'shared_strided': shared[1::3],
        'expanded': torch.tensor([[1.0, 2.0, 3.0]]).expand(2, 3),
    }
    assert not sd['transposed'].is_contiguous() and not sd['permuted'].is_contiguous()
    assert sd['expanded'].stride() == (0, 1)
    return sd


class TinyNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 1)
        self.norm = torch.nn.BatchNorm2d(4)
        self.head = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4 * 2 * 2, 2))

    def forward(self, x):
        return self.head(self.norm(self.conv(x)))


class Config:
    """Stands for anything a training script pickles next to the weights."""

    def __init__(self):
        self.width = 4


def module_and_optimizer():
    torch.manual_seed(1)
    net = TinyNet()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    net(torch.randn(2, 3, 2, 2)).sum().backward()
    opt.step()
    return net, opt


def rezip_deflated(src, dst):
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, 'w') as zout:
        for info in zin.infolist():
            out_info = zipfile.ZipInfo(info.filename, date_time=(1980, 1, 1, 0, 0, 0))
            out_info.compress_type = zipfile.ZIP_DEFLATED
            zout.writestr(out_info, zin.read(info.filename))
        zout.comment = b'glow-onnx fixture: deflated entries and an archive comment'


def write_zip64(entries, dst):
    """A stored ZIP whose every size and offset lives in ZIP64 fields, as large torch files do."""
    out = bytearray()
    central = bytearray()
    for name, data in entries:
        nb = name.encode()
        crc = zlib.crc32(data)
        offset = len(out)
        extra = struct.pack('<HHQQ', 1, 16, len(data), len(data))
        out += struct.pack('<IHHHHHIIIHH', 0x04034B50, 45, 0, 0, 0, 0, crc, 0xFFFFFFFF, 0xFFFFFFFF, len(nb), len(extra))
        out += nb + extra + data
        cextra = struct.pack('<HHQQQ', 1, 24, len(data), len(data), offset)
        central += struct.pack('<IHHHHHHIIIHHHHHII', 0x02014B50, 45, 45, 0, 0, 0, 0, crc, 0xFFFFFFFF, 0xFFFFFFFF,
                               len(nb), len(cextra), 0, 0, 0, 0, 0xFFFFFFFF)
        central += nb + cextra
    cd_offset = len(out)
    out += central
    zip64_end = len(out)
    n = len(entries)
    out += struct.pack('<IQHHIIQQQQ', 0x06064B50, 44, 45, 45, 0, 0, n, n, len(central), cd_offset)
    out += struct.pack('<IIQI', 0x07064B50, 0, zip64_end, 1)
    out += struct.pack('<IHHHHIIH', 0x06054B50, 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
    with open(dst, 'wb') as f:
        f.write(out)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args()
    os.makedirs(OUT, exist_ok=True)
    expected = {'torch_version': torch.__version__, 'readable': {}, 'unreadable': []}

    plain = plain_state_dict()
    plain_path = save('plain.pt', plain)
    expected['readable']['plain.pt'] = describe(plain)

    rezip_deflated(plain_path, os.path.join(OUT, 'plain_deflated.pt'))
    expected['readable']['plain_deflated.pt'] = describe(plain)

    with zipfile.ZipFile(plain_path) as z:
        entries = [('archive/' + i.filename.split('/', 1)[1], z.read(i.filename)) for i in z.infolist()]
    write_zip64(entries, os.path.join(OUT, 'plain_zip64.pt'))
    expected['readable']['plain_zip64.pt'] = describe(plain)

    net, opt = module_and_optimizer()
    sd = net.state_dict()
    assert hasattr(sd, '_metadata')
    save('module.pt', sd)
    expected['readable']['module.pt'] = describe(sd)

    # A training checkpoint: the weights under 'model', plus things the reader must ignore,
    # including an object (argparse.Namespace) that it cannot and need not load.
    save('checkpoint.pt', {
        'epoch': 3,
        'model': sd,
        'optimizer': opt.state_dict(),
        'args': argparse.Namespace(lr=1e-3, flows=4),
        'history': [0.5, 0.25],
    })
    expected['readable']['checkpoint.pt'] = describe(sd)

    # nn.Parameters rather than plain tensors (torch._utils._rebuild_parameter).
    params = OrderedDict(net.named_parameters())
    save('parameters.pt', params)
    expected['readable']['parameters.pt'] = describe(params)

    # The legacy (pre-1.6) format, as torch 0.4 to 1.5 wrote it by default.
    legacy = dict(_use_new_zipfile_serialization=False)
    save('legacy.pt', {'w': torch.ones(2)}, **legacy)
    expected['readable']['legacy.pt'] = describe({'w': torch.ones(2)})
    save('legacy_plain.pt', plain, **legacy)
    expected['readable']['legacy_plain.pt'] = describe(plain)
    # chaiyujin/glow-pytorch's trainer saves {global_step, graph, optim} (its builder.py), in this
    # format with the torch of its time: a real model of that port (the glow-torch fixture) wrapped
    # so, with Adam state that holds tensors too (of two parameters, to keep the file small). The
    # test compares it with that fixture, so expected.json does not repeat its values.
    graph = torch.load(os.path.join(OUT, '..', 'glow-torch', 'chaiyujin_affine_lu_learntop.pt'))
    params = [p.clone().requires_grad_() for p in list(graph.values())[:2]]
    optim = torch.optim.Adam(params, lr=1e-3)
    sum((p * p).sum() for p in params).backward()
    optim.step()
    save('legacy_chaiyujin.pkg', {'global_step': 1200, 'graph': graph, 'optim': optim.state_dict()}, **legacy)

    # Unreadable ones.
    save('legacy_module.pt', net, **legacy)  # the whole module: a ('module', ...) persistent id
    save('custom_class.pt', net)  # the whole module: needs __main__.TinyNet
    save('wrapped_module.pt', {'epoch': 1, 'model': net})
    save('config_object.pt', {'w': torch.ones(2), 'config': Config()})
    save('numpy_value.pt', {'w': torch.ones(2), 'mean': np.arange(3.0)})
    save('int64_beyond_2_53.pt', {'ok': torch.tensor([1]), 'big': torch.tensor([2 ** 53 + 1])})
    save('complex.pt', {'z': torch.tensor([1 + 2j])})
    with open(os.path.join(OUT, 'plain_pickle.pkl'), 'wb') as f:
        pickle.dump({'w': [1.0, 2.0]}, f, protocol=4)
    expected['unreadable'] = ['legacy_module.pt', 'custom_class.pt', 'wrapped_module.pt', 'config_object.pt',
                              'numpy_value.pt', 'int64_beyond_2_53.pt', 'complex.pt', 'plain_pickle.pkl']

    # Sanity: torch itself reads the variants back the same.
    for name in ('plain_deflated.pt', 'plain_zip64.pt'):
        try:
            loaded = torch.load(os.path.join(OUT, name))
        except Exception as error:  # torch's own reader need not support every variant
            print(f'note: torch.load({name}) fails: {error}', file=sys.stderr)
            continue
        if json.dumps(describe(loaded)) != json.dumps(describe(plain)):
            sys.exit(f'torch.load({name}) differs from plain.pt')

    with open(os.path.join(OUT, 'expected.json'), 'w') as f:
        f.write(compact_json(expected))
    total = 0
    for name in sorted(os.listdir(OUT)):
        size = os.path.getsize(os.path.join(OUT, name))
        total += size
        print(f'{size:8d}  {name}')
    print(f'{total:8d}  total')


if __name__ == '__main__':
    main()
