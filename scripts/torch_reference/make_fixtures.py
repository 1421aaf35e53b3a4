"""Writes PyTorch reference fixtures for the checkpoint importers and the exported graphs.

Run from the repository root (about 5 s on 2 cores; needs Debian's python3-torch):

    /usr/bin/python3 scripts/torch_reference/make_fixtures.py [--out test/fixtures/glow-torch]
        [--no-names-check]

For every case it writes into the output folder
  <case>.pt    torch.save(model.state_dict()) of the float32 model: the file a user of that
               PyTorch port has (an OrderedDict of tensors, zip format)
  <case>.json  naming, config, inputs and float64 reference outputs (schema below)
and then verifies, printing one line per case:
  - the .pt loads back with load_state_dict(strict=True);
  - decode(encode(x).eps, T=1) == x to 1e-10;
  - the same weights under the other naming (convert_state_dict) give identical outputs;
  - (unless --no-names-check, and when node and dist/src/glow/names.js exist) y0ast names and
    shapes equal src/glow/names.ts paramSpecs(config).

Reference outputs are computed in float64 from the float32-rounded weights (the saved .pt is
loaded back into a double model). x and the fixed eps are float32-representable, and the
temperatures are the float32 values (0.7 -> 0.699999988079071), so a float32 ONNX graph sees
exactly the inputs the reference saw.

JSON schema (T = {"shape": [int...], "data": [number...]}, data flattened row-major, float64):
{
  "format": "glow-torch-fixture/1",
  "case": str, "description": str,
  "naming": "y0ast" | "chaiyujin",
  "checkpoint": "<case>.pt",
  "config": {imageShape, K, L, hiddenChannels, coupling, permutation, lu, learnTop,
             numClasses, nBits, actnormScale},
  "seed": int,                      # randomize_ seed
  "luMasksDirty": bool,             # LU lower/upper hold noise where the masks ignore them
  "priorH": {"shape": [...]},       # prior_h as stored (chaiyujin: [B, 2C, h, w]), all zeros
  "stateDict": [{"name": str, "shape": [int...]}],   # in file order, all float32
  "permutations": {"flow.layers.N": [int...]},       # only when permutation == 'shuffle':
                                                     # output channel c reads input indices[c]
  "inputs": {"x": T [N,C,H,W], "y": T [N,classes] one-hot (class-conditional only)},
  "encode": {"eps": [T...] (eps_1 = first split ... eps_L = top), "logdet": T [N],
             "log_px": T [N], "bpd": T [N], "y_logits": T [N,classes] (class-conditional only)},
  "decode": [{"name": "roundtrip" | "fixed_eps_t07" | "zeros_t0", "temperature": number,
              "eps": [T...], "x": T [N,C,H,W]}]
                 # roundtrip: eps = encode.eps, T = 1 (x equals inputs.x to ~1e-15)
                 # fixed_eps_t07: eps ~ N(0,1) rounded to float32, T = float32(0.7)
                 # zeros_t0: eps all zero, T = 0 (the mode of the prior at every level)
}
"""

import argparse
import copy
import json
import math
import os
import shutil
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from glow_reference import Glow, convert_state_dict  # noqa: E402

torch.set_num_threads(2)

BASE = dict(actnormScale=1)

CASES = [
    dict(name='y0ast_affine_lu_learntop', naming='y0ast', n=2, seed=11,
         desc='y0ast names, affine coupling, LU 1x1 conv, learned top prior, 3x8x8, K=2, L=1',
         config=dict(imageShape=[3, 8, 8], K=2, L=1, hiddenChannels=8, coupling='affine',
                     permutation='invconv', lu=True, learnTop=True, numClasses=0, nBits=5)),
    dict(name='y0ast_additive_plain', naming='y0ast', n=3, seed=12,
         desc='y0ast names, additive coupling, plain 1x1 conv, fixed zero top prior, 1x8x8, K=2, L=2',
         config=dict(imageShape=[1, 8, 8], K=2, L=2, hiddenChannels=6, coupling='additive',
                     permutation='invconv', lu=False, learnTop=False, numClasses=0, nBits=8)),
    dict(name='y0ast_cond3_affine_lu', naming='y0ast', n=3, seed=13,
         desc='y0ast names, class-conditional (3 classes), affine, LU, learned top, 2x8x8, K=1, L=2',
         config=dict(imageShape=[2, 8, 8], K=1, L=2, hiddenChannels=6, coupling='affine',
                     permutation='invconv', lu=True, learnTop=True, numClasses=3, nBits=5)),
    dict(name='y0ast_reverse_additive', naming='y0ast', n=2, seed=14,
         desc='y0ast names, reverse permutation, additive, fixed zero top prior, 3x4x4, K=2, L=2',
         config=dict(imageShape=[3, 4, 4], K=2, L=2, hiddenChannels=4, coupling='additive',
                     permutation='reverse', lu=False, learnTop=False, numClasses=0, nBits=3)),
    dict(name='chaiyujin_affine_lu_learntop', naming='chaiyujin', n=2, seed=21, dirty=True,
         desc='chaiyujin names, affine, LU (noise in the masked-out LU entries), learned top, 2x8x8, K=2, L=2',
         config=dict(imageShape=[2, 8, 8], K=2, L=2, hiddenChannels=8, coupling='affine',
                     permutation='invconv', lu=True, learnTop=True, numClasses=0, nBits=5)),
    dict(name='chaiyujin_additive_plain', naming='chaiyujin', n=3, seed=22,
         desc='chaiyujin names, additive, plain 1x1 conv, fixed zero top prior, 1x8x8, K=1, L=2',
         config=dict(imageShape=[1, 8, 8], K=1, L=2, hiddenChannels=6, coupling='additive',
                     permutation='invconv', lu=False, learnTop=False, numClasses=0, nBits=8)),
    dict(name='chaiyujin_cond3_affine_lu', naming='chaiyujin', n=3, seed=23,
         desc='chaiyujin names, class-conditional (3 classes) without learn_top, affine, LU, 1x8x8, K=2, L=1',
         config=dict(imageShape=[1, 8, 8], K=2, L=1, hiddenChannels=8, coupling='affine',
                     permutation='invconv', lu=True, learnTop=False, numClasses=3, nBits=5)),
    dict(name='chaiyujin_reverse_affine', naming='chaiyujin', n=2, seed=24,
         desc='chaiyujin names, reverse permutation, affine, learned top, 1x4x4, K=2, L=2',
         config=dict(imageShape=[1, 4, 4], K=2, L=2, hiddenChannels=4, coupling='affine',
                     permutation='reverse', lu=False, learnTop=True, numClasses=0, nBits=5)),
    dict(name='y0ast_shuffle_affine', naming='y0ast', n=2, seed=31,
         desc='y0ast names, shuffle permutation (orders in "permutations"), affine, fixed zero top prior, 2x8x8, K=2, L=2',
         config=dict(imageShape=[2, 8, 8], K=2, L=2, hiddenChannels=5, coupling='affine',
                     permutation='shuffle', lu=False, learnTop=False, numClasses=0, nBits=5)),
]

PRIOR_BATCH = 4
T07 = float(torch.tensor(0.7, dtype=torch.float32).item())


def tensor_json(t):
    t = t.detach().to(torch.float64).contiguous()
    return {'shape': list(t.shape), 'data': t.flatten().tolist()}


def make_inputs(case, gen):
    C, H, W = case['config']['imageShape']
    n = case['n']
    nb = case['config']['nBits']
    bins = 2 ** nb
    k = torch.randint(0, bins, (n, C, H, W), generator=gen).to(torch.float64)
    u = torch.rand(n, C, H, W, generator=gen, dtype=torch.float64) / bins
    x = (k / bins - 0.5 + u).float().double()  # float32-representable
    y = None
    if case['config']['numClasses'] > 0:
        labels = torch.arange(n) % case['config']['numClasses']
        y = F.one_hot(labels, case['config']['numClasses']).double()
    return x, y


def run_all(model, x, y, eps_fixed):
    with torch.no_grad():
        enc = model.encode(x, y)
        zeros = [torch.zeros_like(e) for e in enc['eps']]
        dec = [
            ('roundtrip', 1.0, enc['eps'], model.decode(enc['eps'], 1.0, y)),
            ('fixed_eps_t07', T07, eps_fixed, model.decode(eps_fixed, T07, y)),
            ('zeros_t0', 0.0, zeros, model.decode(zeros, 0.0, y)),
        ]
    return enc, dec


def max_diff(a, b):
    return max((u - v).abs().max().item() for u, v in zip(a, b))


def flat_outputs(enc, dec):
    ts = list(enc['eps']) + [enc['logdet'], enc['log_px'], enc['bpd']]
    if enc['y_logits'] is not None:
        ts.append(enc['y_logits'])
    ts += [d[3] for d in dec]
    return ts


def names_ts_specs(configs):
    """paramSpecs from the built TypeScript (dist/), or None when unavailable."""
    js = 'dist/src/glow/names.js'
    if not (os.path.exists(js) and shutil.which('node')):
        return None
    src = ("import('./%s').then(m => { const cs = JSON.parse(process.argv[1]);"
           " console.log(JSON.stringify(cs.map(c => m.paramSpecs(c).map(s => [s.name, s.shape])))); })" % js)
    r = subprocess.run(['node', '-e', src, json.dumps(configs)], capture_output=True, text=True)
    if r.returncode != 0:
        print('names check skipped: node failed:', r.stderr.strip()[:300])
        return None
    return json.loads(r.stdout)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--out', default='test/fixtures/glow-torch')
    ap.add_argument('--no-names-check', action='store_true')
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    t_start = time.time()
    ok = True
    y0ast_specs = {}

    for case in CASES:
        t0 = time.time()
        cfg = dict(case['config'], **BASE)
        naming = case['naming']
        other = 'chaiyujin' if naming == 'y0ast' else 'y0ast'
        gen = torch.Generator().manual_seed(1000 + case['seed'])

        model = Glow(cfg, naming, prior_batch=PRIOR_BATCH, shuffle_seed=case['seed']).double()
        model.randomize_(case['seed'], dirty_lu_masks=case.get('dirty', False))
        perms = model.get_permutations()

        # The float32 checkpoint, exactly as torch.save(model.state_dict()) writes it.
        pt_path = os.path.join(args.out, case['name'] + '.pt')
        model32 = copy.deepcopy(model).float()
        torch.save(model32.state_dict(), pt_path)

        # Reference model: float64, loaded from the float32 file.
        ref = Glow(cfg, naming, prior_batch=PRIOR_BATCH).double()
        ref.set_permutations(perms)
        state = torch.load(pt_path)
        ref.load_state_dict(state, strict=True)
        ref.eval()

        x, y = make_inputs(case, gen)
        with torch.no_grad():
            shapes = [e.shape for e in ref.encode(x, y)['eps']]
        eps_fixed = [torch.randn(s, generator=gen, dtype=torch.float64).float().double() for s in shapes]
        enc, dec = run_all(ref, x, y, eps_fixed)

        # Checks
        rt = (dec[0][3] - x).abs().max().item()
        twin = Glow(cfg, other, prior_batch=PRIOR_BATCH).double()
        twin.set_permutations(perms)
        twin.load_state_dict(convert_state_dict(state, naming, other, PRIOR_BATCH), strict=True)
        enc2, dec2 = run_all(twin, x, y, eps_fixed)
        cross = max_diff(flat_outputs(enc, dec), flat_outputs(enc2, dec2))
        # Same seed, other naming, no file round trip: randomize_ is naming-independent.
        same_seed = Glow(cfg, other, prior_batch=PRIOR_BATCH, shuffle_seed=case['seed']).double()
        same_seed.randomize_(case['seed'], dirty_lu_masks=case.get('dirty', False))
        sd_a = convert_state_dict(model.state_dict(), naming, other, PRIOR_BATCH)
        sd_b = same_seed.state_dict()
        seed_diff = max((sd_a[k] - sd_b[k]).abs().max().item() for k in sd_b)
        y0_state = state if naming == 'y0ast' else convert_state_dict(state, naming, 'y0ast')
        y0ast_specs[case['name']] = (cfg, [[k, list(v.shape)] for k, v in y0_state.items()])

        case_ok = rt < 1e-10 and cross == 0.0 and seed_diff == 0.0 and all(
            torch.isfinite(t).all() for t in flat_outputs(enc, dec))
        ok &= case_ok

        doc = {
            'format': 'glow-torch-fixture/1',
            'case': case['name'],
            'description': case['desc'],
            'naming': naming,
            'checkpoint': case['name'] + '.pt',
            'config': cfg,
            'seed': case['seed'],
            'luMasksDirty': bool(case.get('dirty', False)),
            'priorH': {'shape': list(state['prior_h'].shape)},
            'stateDict': [{'name': k, 'shape': list(v.shape)} for k, v in state.items()],
        }
        if cfg['permutation'] == 'shuffle':
            doc['permutations'] = perms
        doc['inputs'] = {'x': tensor_json(x)}
        if y is not None:
            doc['inputs']['y'] = tensor_json(y)
        doc['encode'] = {
            'eps': [tensor_json(e) for e in enc['eps']],
            'logdet': tensor_json(enc['logdet']),
            'log_px': tensor_json(enc['log_px']),
            'bpd': tensor_json(enc['bpd']),
        }
        if enc['y_logits'] is not None:
            doc['encode']['y_logits'] = tensor_json(enc['y_logits'])
        doc['decode'] = [
            {'name': name, 'temperature': temp, 'eps': [tensor_json(e) for e in eps], 'x': tensor_json(xo)}
            for name, temp, eps, xo in dec
        ]
        json_path = os.path.join(args.out, case['name'] + '.json')
        with open(json_path, 'w') as f:
            json.dump(doc, f, separators=(',', ':'))
            f.write('\n')
        print(f"{'ok  ' if case_ok else 'FAIL'} {case['name']:30s} bpd={[round(b, 4) for b in enc['bpd'].tolist()]} "
              f"roundtrip={rt:.1e} cross-naming={cross:.1e} same-seed={seed_diff:.1e} "
              f"pt={os.path.getsize(pt_path)}B json={os.path.getsize(json_path)}B {time.time() - t0:.2f}s")

    if not args.no_names_check:
        specs = names_ts_specs([c for c, _ in y0ast_specs.values()])
        if specs is None:
            print('names check skipped (no node or dist/src/glow/names.js; run npm run build)')
        else:
            for (case_name, (_, ours)), theirs in zip(y0ast_specs.items(), specs):
                same_set = sorted(map(str, ours)) == sorted(map(str, theirs))
                same_order = ours == theirs
                print(f"names.ts {'ok  ' if same_set else 'FAIL'} {case_name}"
                      + ('' if same_order or not same_set else ' (same names and shapes, different order)'))
                ok &= same_set

    total = sum(os.path.getsize(os.path.join(args.out, f)) for f in os.listdir(args.out))
    print(f"{'all ok' if ok else 'FAILURES'}: {len(CASES)} cases, {total} bytes in {args.out}, {time.time() - t_start:.1f}s")
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
