#!/usr/bin/python3
"""PyTorch side of scripts/train-bench.ts: trains the reference Glow (float32, Adam, batch of
MNIST-shaped noise-dequantised data) for a number of steps and prints one JSON line with the
images per second. Run through the TypeScript script, which runs glow-onnx in the same
invocation and prints the ratio:
    node dist/scripts/train-bench.js --K 16 --hidden 64 --steps 20
"""
import json
import math
import sys
import time

import torch

sys.path.insert(0, __file__.rsplit('/', 1)[0])
from glow_reference import Glow  # noqa: E402


def main():
    spec = json.loads(sys.argv[1])
    torch.set_num_threads(spec['threads'])
    torch.manual_seed(0)
    model = Glow(spec['config']).float()
    C, H, W = spec['config']['imageShape']
    batch = spec['batchSize']
    bins = 2 ** spec['config']['nBits']
    data = torch.randint(0, bins, (batch * 4, C, H, W)).float() / bins - 0.5
    model.data_init_(data[:batch] + torch.rand(batch, C, H, W) / bins)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    times = []
    for step in range(spec['steps']):
        x = data[(step % 4) * batch:(step % 4 + 1) * batch] + torch.rand(batch, C, H, W) / bins
        start = time.perf_counter()
        opt.zero_grad()
        loss = model.encode(x)['bpd'].mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 50.0)
        opt.step()
        times.append(time.perf_counter() - start)
        if not math.isfinite(loss.item()):
            raise SystemExit(f'loss became {loss.item()}')
    steady = sorted(times[2:])
    print(json.dumps({'imagesPerSecond': batch / steady[len(steady) // 2], 'lastLoss': loss.item()}))


if __name__ == '__main__':
    main()
