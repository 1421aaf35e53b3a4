#!/usr/bin/python3
"""PyTorch side of scripts/bench.ts (npm run bench). Two jobs, one JSON line on stdout each:

  export SPEC   the reference model with the checkpoint's weights, exported by torch.onnx with
                W and W^-1 of every 1x1 convolution cached as buffers: the workaround a PyTorch
                user writes, because plain export fails on inverse/slogdet. Writes
                SPEC.out/encode.onnx and SPEC.out/decode.onnx (dynamic batch).
  time SPEC     encode and decode in eager PyTorch (the reference as it is, torch.no_grad, float32,
                SPEC.threads threads) for each batch size: per-run milliseconds and peak RSS.

SPEC is JSON: {"checkpoint": native .safetensors, "batches": [..], "reps": R, "threads": T,
"out": dir}.
"""
import json
import math
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, __file__.rsplit('/', 1)[0])
from check_native import extract_config, read_safetensors  # noqa: E402
from glow_reference import Glow, InvConv1x1  # noqa: E402


def load(checkpoint):
    state, metadata = read_safetensors(checkpoint)
    config = extract_config(json.loads(metadata['glow_onnx.config']))
    if config['numClasses'] > 0:
        raise SystemExit('bench_torch.py: class-conditional configs are not benchmarked')
    model = Glow(config).float()
    model.load_state_dict(state, strict=True)
    return model.eval(), config


def peak_rss_mb():
    """VmHWM: getrusage's ru_maxrss carries the parent's high-water mark across exec."""
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith('VmHWM:'):
                return int(line.split()[1]) / 1024
    raise SystemExit('bench_torch.py: no VmHWM in /proc/self/status')


class CachedInvConv(nn.Module):
    """InvConv1x1 with W and W^-1 computed once: torch.onnx cannot export torch.linalg.inv."""

    def __init__(self, inner):
        super().__init__()
        with torch.no_grad():
            w = inner.matrix().double()
            self.register_buffer('w', w.float().view(inner.channels, inner.channels, 1, 1))
            self.register_buffer('w_inv', torch.linalg.inv(w).float().view(inner.channels, inner.channels, 1, 1))
            self.register_buffer('logdet_per_pixel', torch.linalg.slogdet(w)[1].float())

    def logdet(self, hw):
        return hw * self.logdet_per_pixel

    def forward(self, x):
        return F.conv2d(x, self.w)

    def reverse(self, y):
        return F.conv2d(y, self.w_inv)


def cache_invconvs(model):
    for step in model.flow.layers:
        if isinstance(getattr(step, 'invconv', None), InvConv1x1):
            step.invconv = CachedInvConv(step.invconv)
    return model


class Encode(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        out = self.model.encode(x)
        return (*out['eps'], out['logdet'], out['log_px'], out['bpd'])


class Decode(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, *inputs):
        *eps, temperature = inputs
        return self.model.decode(list(eps), temperature)


def eps_like(model, config, n):
    C, H, W = config['imageShape']
    shapes = []
    c, h, w = C, H, W
    for level in range(config['L']):
        c, h, w = c * 4, h // 2, w // 2
        if level < config['L'] - 1:
            shapes.append((c // 2, h, w))
            c //= 2
    shapes.append((c, h, w))
    return [torch.randn(n, *s) for s in shapes]


def export(spec):
    model, config = load(spec['checkpoint'])
    cache_invconvs(model)
    C, H, W = config['imageShape']
    x = torch.rand(2, C, H, W) - 0.5
    eps = eps_like(model, config, 2)
    L = len(eps)
    out = spec['out']
    batch = {0: 'N'}
    with torch.no_grad():
        torch.onnx.export(Encode(model), (x,), f'{out}/encode.onnx', opset_version=spec.get('opset', 17),
                          input_names=['x'], output_names=[f'eps_{i + 1}' for i in range(L)] + ['logdet', 'log_px', 'bpd'],
                          dynamic_axes={'x': batch, **{f'eps_{i + 1}': batch for i in range(L)}, 'logdet': batch,
                                        'log_px': batch, 'bpd': batch})
        torch.onnx.export(Decode(model), (*eps, torch.tensor(1.0)), f'{out}/decode.onnx', opset_version=spec.get('opset', 17),
                          input_names=[f'eps_{i + 1}' for i in range(L)] + ['temperature'], output_names=['x'],
                          dynamic_axes={**{f'eps_{i + 1}': batch for i in range(L)}, 'x': batch})
    print(json.dumps({'encode': f'{out}/encode.onnx', 'decode': f'{out}/decode.onnx'}))


def time_eager(spec):
    torch.set_num_threads(spec['threads'])
    torch.manual_seed(0)
    model, config = load(spec['checkpoint'])
    C, H, W = config['imageShape']
    base = peak_rss_mb()
    results = {}
    with torch.no_grad():
        for n in spec['batches']:
            x = torch.rand(n, C, H, W) - 0.5
            eps = eps_like(model, config, n)
            runs = {'encode': [], 'decode': []}
            for name, fn in (('encode', lambda: model.encode(x)), ('decode', lambda: model.decode(eps, 0.7))):
                for rep in range(spec['reps'] + 1):  # the first run of each is warm-up
                    start = time.perf_counter()
                    out = fn()
                    elapsed = (time.perf_counter() - start) * 1000
                    if rep > 0:
                        runs[name].append(elapsed)
            if not math.isfinite(float(out.sum())):
                raise SystemExit('bench_torch.py: decode gave non-finite values')
            results[str(n)] = {**runs, 'peakRssMB': peak_rss_mb()}
    print(json.dumps({'baseRssMB': base, 'batches': results}))


if __name__ == '__main__':
    job, spec = sys.argv[1], json.loads(sys.argv[2])
    {'export': export, 'time': time_eager}[job](spec)
