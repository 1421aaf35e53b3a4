"""Independent PyTorch reference implementation of Glow (Kingma & Dhariwal 2018).

Written from the paper and the project's design document (docs/design.md: layer semantics, I/O
contract), not copied from any repository. The modules reproduce the state_dict names and shapes
of either PyTorch port of Glow, selected with ``naming``:

  'y0ast'      y0ast/Glow-PyTorch    (the names of src/glow/names.ts paramSpecs, same order)
  'chaiyujin'  chaiyujin/glow-pytorch (``f.N`` coupling nets, ``invconv.{l,u}``, a
                                       batch-sized ``prior_h`` nn.Parameter, ...)

so ``model.load_state_dict(torch.load(ckpt), strict=True)`` accepts a checkpoint of that port
(or one written by glow-onnx, which uses y0ast names), and ``convert_state_dict`` maps one
naming onto the other.

Semantics (both namings): NCHW; squeeze channel c*4 + 2i + j; FlowStep = ActNorm -> 1x1 conv
(plain / LU) or channel permutation (reverse / shuffle, stored outside the state_dict) ->
additive or affine coupling; Split2d scores the second half under a Conv2dZeros prior of the
first half (mean = even channels, logs = odd); top prior from prior_h (-> learn_top) (+ y
projection), mean = first half, logs = second half.

Usage (a library; run it directly for a quick self-check):

    /usr/bin/python3 scripts/torch_reference/glow_reference.py

    import sys; sys.path.insert(0, 'scripts/torch_reference')
    from glow_reference import Glow
    model = Glow(config, naming='y0ast').double()
    model.randomize_(seed=1)
    out = model.encode(x, y)          # dict: eps (list), logdet, log_px, bpd, y_logits
    x2 = model.decode(out['eps'], 1.0, y)

``config`` is the JSON config of glow-onnx (src/glow/config.ts): imageShape [C,H,W], K, L,
hiddenChannels, coupling, permutation, lu (one flag, or a list of one per level), learnTop, numClasses, nBits, actnormScale and
optionally scaleFloor and zerosPadValue (the value every Conv2dZeros pads its input with: 0, or
1 for models imported from rosinality/glow-pytorch, whose ZeroConv2d pads with ones).
"""

import math
import re

import torch
import torch.nn as nn
import torch.nn.functional as F

NAMINGS = ('y0ast', 'chaiyujin')
LOGSCALE_FACTOR = 3.0
LOG_2PI = math.log(2 * math.pi)


# --------------------------------------------------------------------------------------------
# Reshaping helpers


def squeeze(x):
    """[N, C, H, W] -> [N, 4C, H/2, W/2]; output channel c*4 + 2*i + j holds x[c, 2h+i, 2w+j]."""
    n, c, h, w = x.shape
    x = x.reshape(n, c, h // 2, 2, w // 2, 2)
    x = x.permute(0, 1, 3, 5, 2, 4)
    return x.reshape(n, c * 4, h // 2, w // 2)


def unsqueeze(x):
    n, c, h, w = x.shape
    x = x.reshape(n, c // 4, 2, 2, h, w)
    x = x.permute(0, 1, 4, 2, 5, 3)
    return x.reshape(n, c // 4, h * 2, w * 2)


def gaussian_logp(eps, logs):
    """log N(z; mean, exp(logs)^2) with eps = (z - mean) * exp(-logs), summed per example."""
    return (-0.5 * eps ** 2 - logs - 0.5 * LOG_2PI).flatten(1).sum(1)


# --------------------------------------------------------------------------------------------
# Building blocks


class ActNorm(nn.Module):
    """y = (x + bias) * exp(logs), per channel; log-det H*W*sum(logs)."""

    def __init__(self, channels, scale=1.0):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.logs = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.scale = scale
        self.initializing = False  # set by Glow.data_init_ (data-dependent init, paper 3.1)

    def _maybe_init(self, x):
        if self.initializing:
            with torch.no_grad():
                mean = x.mean(dim=(0, 2, 3), keepdim=True)
                std = ((x - mean) ** 2).mean(dim=(0, 2, 3), keepdim=True).sqrt()
                self.bias.copy_(-mean)
                self.logs.copy_(torch.log(self.scale / (std + 1e-6)))

    def forward(self, x):
        self._maybe_init(x)
        return (x + self.bias) * torch.exp(self.logs)

    def reverse(self, y):
        return y * torch.exp(-self.logs) - self.bias

    def logdet(self, hw):
        return hw * self.logs.sum()


# y0ast-style modules: wrappers holding an inner nn.Conv2d / nn.Linear named conv / linear.


def spectral_buffers(conv, cin, cout, k):
    """glow-onnx's spectral normalisation state (config lipschitz): conv.weight_u [out],
    conv.weight_v [in*k*k], power-iteration vectors saved by its training."""
    conv.register_buffer('weight_u', torch.zeros(cout))
    conv.register_buffer('weight_v', torch.zeros(cin * k * k))


def spectral_factor(conv, gain, lipschitz):
    """1 / max(1, sigma / c), sigma = u^T (W * gain per output channel) v, W as [out, in*k*k]."""
    w = (conv.weight * gain.reshape(-1, 1, 1, 1)).flatten(1)
    sigma = conv.weight_u @ w @ conv.weight_v
    return lipschitz / sigma if sigma > lipschitz else torch.ones((), dtype=w.dtype)


class ConvActNormY(nn.Module):
    """conv (no bias, 'same' padding) then ActNorm: conv.weight, actnorm.{bias,logs}."""

    def __init__(self, cin, cout, k, scale=1.0, lipschitz=None):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, padding=(k - 1) // 2, bias=False)
        self.actnorm = ActNorm(cout, scale)
        nn.init.normal_(self.conv.weight, 0.0, 0.05)
        self.lipschitz = lipschitz
        if lipschitz is not None:
            spectral_buffers(self.conv, cin, cout, k)

    def forward(self, x):
        if self.lipschitz is None:
            return self.actnorm(self.conv(x))
        f = spectral_factor(self.conv, torch.exp(self.actnorm.logs), self.lipschitz)
        return self.actnorm(F.conv2d(x, self.conv.weight * f, padding=self.conv.padding))


class Conv2dZerosY(nn.Module):
    """conv(x) * exp(3 * logs), zero-initialised: conv.{weight,bias}, logs [out,1,1]; x padded
    with pad_value."""

    def __init__(self, cin, cout, k=3, pad_value=0.0, lipschitz=None):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, padding=0)
        nn.init.zeros_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)
        self.logs = nn.Parameter(torch.zeros(cout, 1, 1))
        self.pad, self.pad_value = (k - 1) // 2, pad_value
        self.lipschitz = lipschitz
        if lipschitz is not None:
            spectral_buffers(self.conv, cin, cout, k)

    def forward(self, x):
        x = F.pad(x, [self.pad] * 4, value=self.pad_value)
        gain = torch.exp(self.logs * LOGSCALE_FACTOR)
        if self.lipschitz is None:
            return self.conv(x) * gain
        f = spectral_factor(self.conv, gain, self.lipschitz)
        return F.conv2d(x, self.conv.weight * f, self.conv.bias) * gain


class LinearZerosY(nn.Module):
    """linear(y) * exp(3 * logs): linear.{weight,bias}, logs [out]."""

    def __init__(self, cin, cout):
        super().__init__()
        self.linear = nn.Linear(cin, cout)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)
        self.logs = nn.Parameter(torch.zeros(cout))

    def forward(self, y):
        return self.linear(y) * torch.exp(self.logs * LOGSCALE_FACTOR)


# chaiyujin-style modules: subclasses of nn.Conv2d / nn.Linear with extra tensors.


class ConvActNormC(nn.Conv2d):
    """weight (no bias), actnorm.{bias,logs}."""

    def __init__(self, cin, cout, k, scale=1.0):
        super().__init__(cin, cout, k, padding=(k - 1) // 2, bias=False)
        self.actnorm = ActNorm(cout, scale)
        nn.init.normal_(self.weight, 0.0, 0.05)

    def forward(self, x):
        return self.actnorm(super().forward(x))


class Conv2dZerosC(nn.Conv2d):
    """weight, bias, logs [out,1,1]; x padded with pad_value."""

    def __init__(self, cin, cout, k=3, pad_value=0.0):
        super().__init__(cin, cout, k, padding=0)
        nn.init.zeros_(self.weight)
        nn.init.zeros_(self.bias)
        self.logs = nn.Parameter(torch.zeros(cout, 1, 1))
        self.pad, self.pad_value = (k - 1) // 2, pad_value

    def forward(self, x):
        x = F.pad(x, [self.pad] * 4, value=self.pad_value)
        return super().forward(x) * torch.exp(self.logs * LOGSCALE_FACTOR)


class LinearZerosC(nn.Linear):
    """weight, bias, logs [out]."""

    def __init__(self, cin, cout):
        super().__init__(cin, cout)
        nn.init.zeros_(self.weight)
        nn.init.zeros_(self.bias)
        self.logs = nn.Parameter(torch.zeros(cout))

    def forward(self, y):
        return super().forward(y) * torch.exp(self.logs * LOGSCALE_FACTOR)


def conv_actnorm(naming, cin, cout, k, scale, lipschitz=None):
    if naming == 'y0ast':
        return ConvActNormY(cin, cout, k, scale, lipschitz)
    if lipschitz is not None:
        raise ValueError('lipschitz (spectral normalisation) exists in the y0ast naming only')
    return ConvActNormC(cin, cout, k, scale)


def conv_zeros(naming, cin, cout, k, cfg, lipschitz=None):
    if naming == 'y0ast':
        return Conv2dZerosY(cin, cout, k, cfg.get('zerosPadValue', 0.0), lipschitz)
    if lipschitz is not None:
        raise ValueError('lipschitz (spectral normalisation) exists in the y0ast naming only')
    return Conv2dZerosC(cin, cout, k, cfg.get('zerosPadValue', 0.0))


def linear_zeros(naming, cin, cout):
    return (LinearZerosY if naming == 'y0ast' else LinearZerosC)(cin, cout)


class InvConv1x1(nn.Module):
    """Invertible 1x1 convolution, y = conv(x, W).

    plain: weight [C,C]; log-det H*W*log|det W|.
    LU:    W = P @ (L * strict_lower + I) @ (U * strict_upper + diag(sign_s * exp(log_s)));
           log-det H*W*sum(log_s). Parameters lower/upper (y0ast) or l/u (chaiyujin), log_s;
           buffers p, sign_s. Entries outside the strict triangles are ignored (masked).
    """

    def __init__(self, channels, lu, naming):
        super().__init__()
        self.channels = channels
        self.lu = lu
        self.lower_name, self.upper_name = ('lower', 'upper') if naming == 'y0ast' else ('l', 'u')
        w = torch.linalg.qr(torch.randn(channels, channels))[0]  # random rotation, paper 3.2
        if not lu:
            self.weight = nn.Parameter(w)
        else:
            p, lower, upper = torch.linalg.lu(w)
            s = torch.diagonal(upper)
            # Registration order: parameters, then buffers (state_dict lists them so anyway).
            setattr(self, self.lower_name, nn.Parameter(lower.clone()))  # unit diagonal kept, masked
            self.log_s = nn.Parameter(torch.log(s.abs()))
            setattr(self, self.upper_name, nn.Parameter(torch.triu(upper, 1)))
            self.register_buffer('p', p)
            self.register_buffer('sign_s', torch.sign(s))

    @property
    def lower_param(self):
        return getattr(self, self.lower_name)

    @property
    def upper_param(self):
        return getattr(self, self.upper_name)

    def matrix(self):
        if not self.lu:
            return self.weight
        c = self.channels
        dt = self.log_s.dtype
        strict_lower = torch.tril(torch.ones(c, c, dtype=dt), -1)
        eye = torch.eye(c, dtype=dt)
        lower = self.lower_param * strict_lower + eye
        upper = self.upper_param * strict_lower.T + torch.diag(self.sign_s * torch.exp(self.log_s))
        return self.p @ lower @ upper

    def logdet(self, hw):
        if self.lu:
            return hw * self.log_s.sum()
        return hw * torch.linalg.slogdet(self.weight)[1]

    def forward(self, x):
        w = self.matrix()
        return F.conv2d(x, w.view(self.channels, self.channels, 1, 1))

    def reverse(self, y):
        w_inv = torch.linalg.inv(self.matrix())
        return F.conv2d(y, w_inv.view(self.channels, self.channels, 1, 1))


class Squeeze(nn.Module):
    def forward(self, x):
        return squeeze(x)

    def reverse(self, x):
        return unsqueeze(x)


class FlowStep(nn.Module):
    """ActNorm -> invconv / permutation -> coupling. Modules: actnorm, invconv, block|f."""

    def __init__(self, channels, hidden, cfg, naming, generator, lu):
        super().__init__()
        self.channels = channels
        self.coupling = cfg['coupling']
        self.permutation = cfg['permutation']
        # glow-onnx's optional lower bound on the affine scale (0: the paper's layer)
        self.scale_floor = cfg.get('scaleFloor', 0.0)
        # glow-onnx's two-sided bound: scale = exp(-ln(a) tanh(t)), no +2 (None: sigmoid)
        self.scale_bound = cfg.get('scaleBound')
        scale = cfg.get('actnormScale', 1.0)
        self.actnorm = ActNorm(channels, scale)
        if self.permutation == 'invconv':
            self.invconv = InvConv1x1(channels, lu, naming)
        elif self.permutation == 'reverse':
            self.perm = torch.arange(channels - 1, -1, -1)  # plain attribute, not in state_dict
        elif self.permutation == 'shuffle':
            self.perm = torch.randperm(channels, generator=generator)
        else:
            raise ValueError(f'unknown permutation {self.permutation!r}')
        half = channels // 2
        out = channels if self.coupling == 'affine' else channels - half
        lipschitz = cfg.get('lipschitz')
        net = nn.Sequential(
            conv_actnorm(naming, half, hidden, 3, scale, lipschitz), nn.ReLU(),
            conv_actnorm(naming, hidden, hidden, 1, scale, lipschitz), nn.ReLU(),
            conv_zeros(naming, hidden, out, 3, cfg, lipschitz),
        )
        self.net_name = 'block' if naming == 'y0ast' else 'f'
        setattr(self, self.net_name, net)

    @property
    def net(self):
        return getattr(self, self.net_name)

    def affine_scale(self, t):
        """The scale and its log, from the odd channels t of the network output."""
        if self.scale_bound is not None:
            log_scale = -math.log(self.scale_bound) * torch.tanh(t)
            return torch.exp(log_scale), log_scale
        scale = torch.sigmoid(t + 2.0).clamp(min=self.scale_floor)
        return scale, torch.log(scale)

    def set_perm(self, indices):
        self.perm = torch.as_tensor(indices, dtype=torch.long)

    def forward(self, x):
        hw = x.shape[2] * x.shape[3]
        z = self.actnorm(x)
        logdet = self.actnorm.logdet(hw).expand(x.shape[0])
        if self.permutation == 'invconv':
            z = self.invconv(z)
            logdet = logdet + self.invconv.logdet(hw)
        else:
            z = z[:, self.perm]  # output channel c reads input channel perm[c]
        half = self.channels // 2
        z1, z2 = z[:, :half], z[:, half:]
        h = self.net(z1)
        if self.coupling == 'additive':
            z2 = z2 + h
        else:
            shift, (scale, log_scale) = h[:, 0::2], self.affine_scale(h[:, 1::2])
            z2 = (z2 + shift) * scale
            logdet = logdet + log_scale.flatten(1).sum(1)
        return torch.cat([z1, z2], 1), logdet

    def reverse(self, z):
        half = self.channels // 2
        z1, z2 = z[:, :half], z[:, half:]
        h = self.net(z1)
        if self.coupling == 'additive':
            z2 = z2 - h
        else:
            shift, (scale, _) = h[:, 0::2], self.affine_scale(h[:, 1::2])
            z2 = z2 / scale - shift
        z = torch.cat([z1, z2], 1)
        if self.permutation == 'invconv':
            z = self.invconv.reverse(z)
        else:
            inv = torch.empty_like(self.perm)
            inv[self.perm] = torch.arange(self.channels)
            z = z[:, inv]
        return self.actnorm.reverse(z)


class Split(nn.Module):
    """Keeps z1 (first half); z2 is modelled by Conv2dZeros(z1): mean = h[:,0::2], logs = h[:,1::2]."""

    def __init__(self, channels, naming, cfg):
        super().__init__()
        self.conv = conv_zeros(naming, channels // 2, channels, 3, cfg)
        self.constant_scale = cfg.get('constantSplitScale', False)
        if self.constant_scale and naming != 'y0ast':
            raise ValueError('constantSplitScale exists in the y0ast naming only')

    def prior(self, z1):
        h = self.conv(z1)
        if not self.constant_scale:
            return h[:, 0::2], h[:, 1::2]
        # constantSplitScale: the log-scale is the bias times exp(3 logs) of its channels alone.
        logs = (self.conv.conv.bias[1::2] * torch.exp(LOGSCALE_FACTOR * self.conv.logs[1::2, 0, 0])).view(1, -1, 1, 1)
        return h[:, 0::2], logs.expand_as(h[:, 1::2])


class FlowNet(nn.Module):
    def __init__(self, cfg, naming, generator):
        super().__init__()
        c = cfg['imageShape'][0]
        K, L = cfg['K'], cfg['L']
        layers = []
        # lu: one flag, or one per level (plain and LU 1x1 convolutions mixed, as rosinality's
        # --no_lu models have them)
        lu = cfg['lu'] if isinstance(cfg['lu'], list) else [cfg['lu']] * L
        assert len(lu) == L, f'lu lists {len(lu)} levels, the model has {L}'
        for level in range(L):
            c *= 4
            layers.append(Squeeze())
            for _ in range(K):
                layers.append(FlowStep(c, cfg['hiddenChannels'], cfg, naming, generator, lu[level]))
            if level < L - 1:
                layers.append(Split(c, naming, cfg))
                c //= 2
        self.layers = nn.ModuleList(layers)
        self.top_channels = c


# --------------------------------------------------------------------------------------------
# The model


class Glow(nn.Module):
    def __init__(self, config, naming='y0ast', prior_batch=4, shuffle_seed=0):
        """config: glow-onnx JSON config. prior_batch: rows of chaiyujin's prior_h parameter.
        shuffle_seed: seeds the fixed random channel orders of permutation 'shuffle'."""
        super().__init__()
        if naming not in NAMINGS:
            raise ValueError(f'naming must be one of {NAMINGS}, got {naming!r}')
        self.config = dict(config)
        self.naming = naming
        C, H, W = config['imageShape']
        L = config['L']
        gen = torch.Generator().manual_seed(shuffle_seed)
        self.flow = FlowNet(config, naming, gen)
        top = self.flow.top_channels
        self.top_channels = top
        top_shape = [2 * top, H >> L, W >> L]
        if naming == 'y0ast':
            self.register_buffer('prior_h', torch.zeros(1, *top_shape))
        else:
            self.prior_h = nn.Parameter(torch.zeros(prior_batch, *top_shape))
        self.has_learn_top = bool(config['learnTop'])
        self.num_classes = int(config['numClasses'])
        self.top_name = 'learn_top_fn' if naming == 'y0ast' else 'learn_top'
        if self.has_learn_top:
            # nn.Module attribute named after the port (learn_top_fn / learn_top).
            self.add_module(self.top_name, conv_zeros(naming, 2 * top, 2 * top, 3, config))
        if self.num_classes > 0:
            self.project_ycond = linear_zeros(naming, self.num_classes, 2 * top)
            self.project_class = linear_zeros(naming, top, self.num_classes)

    # -- parameters ---------------------------------------------------------------------------

    def steps(self):
        """(module index, FlowStep) pairs."""
        return [(i, m) for i, m in enumerate(self.flow.layers) if isinstance(m, FlowStep)]

    def get_permutations(self):
        """{'flow.layers.N': [indices]} for permutation shuffle/reverse (output c reads input indices[c])."""
        return {f'flow.layers.{i}': m.perm.tolist() for i, m in self.steps() if m.permutation != 'invconv'}

    def set_permutations(self, perms):
        for i, m in self.steps():
            key = f'flow.layers.{i}'
            if key in perms:
                m.set_perm(perms[key])

    @torch.no_grad()
    def randomize_(self, seed, dirty_lu_masks=False):
        """Sets every parameter to random moderate values (prior_h stays zero, as both ports
        require). Values are drawn in the same order for both namings, so one seed gives the
        same model under either. dirty_lu_masks: also put noise in the LU entries that the
        masks ignore (the diagonal and upper triangle of lower, the lower triangle of upper)."""
        g = torch.Generator().manual_seed(seed)
        done = set()  # inner modules of y0ast wrappers, drawn with the wrapper

        def normal(t, std):
            t.copy_(torch.randn(t.shape, generator=g, dtype=torch.float64) * std)

        def uniform(t, a):
            t.copy_((torch.rand(t.shape, generator=g, dtype=torch.float64) * 2 - 1) * a)

        for m in self.modules():
            if isinstance(m, ActNorm):
                normal(m.bias, 0.1)
                uniform(m.logs, 0.3)
            elif isinstance(m, InvConv1x1):
                c = m.channels
                q = torch.linalg.qr(torch.randn(c, c, generator=g, dtype=torch.float64))[0]
                if not m.lu:
                    m.weight.copy_(q + 0.05 * torch.randn(c, c, generator=g, dtype=torch.float64))
                else:
                    p, _, upper = torch.linalg.lu(q)
                    m.p.copy_(p)
                    m.sign_s.copy_(torch.sign(torch.diagonal(upper)))
                    sd = 0.3 / math.sqrt(c)
                    low = torch.randn(c, c, generator=g, dtype=torch.float64) * sd
                    up = torch.randn(c, c, generator=g, dtype=torch.float64) * sd
                    if dirty_lu_masks:
                        low = torch.tril(low, -1) + torch.triu(torch.randn(c, c, generator=g, dtype=torch.float64), 0)
                        up = torch.triu(up, 1) + torch.tril(torch.randn(c, c, generator=g, dtype=torch.float64), 0)
                    else:
                        # As both ports store them: unit diagonal in lower, zeros elsewhere.
                        low = torch.tril(low, -1) + torch.eye(c, dtype=torch.float64)
                        up = torch.triu(up, 1)
                    m.lower_param.copy_(low)
                    m.upper_param.copy_(up)
                    uniform(m.log_s, 0.3)
            elif isinstance(m, (Conv2dZerosY, LinearZerosY)):
                inner = m.conv if isinstance(m, Conv2dZerosY) else m.linear
                normal(inner.weight, 0.05 if isinstance(m, Conv2dZerosY) else 0.1)
                normal(inner.bias, 0.1)
                uniform(m.logs, 0.2)
                done.add(id(inner))
            elif id(m) in done:
                continue
            elif isinstance(m, nn.Conv2d):
                normal(m.weight, 0.05)
                if m.bias is not None:
                    normal(m.bias, 0.1)
                if isinstance(m, Conv2dZerosC):
                    uniform(m.logs, 0.2)
            elif isinstance(m, nn.Linear):
                normal(m.weight, 0.1)
                normal(m.bias, 0.1)
                if isinstance(m, LinearZerosC):
                    uniform(m.logs, 0.2)
        return self

    @torch.no_grad()
    def data_init_(self, x, y=None):
        """Paper-style data-dependent ActNorm initialisation from a batch."""
        for m in self.modules():
            if isinstance(m, ActNorm):
                m.initializing = True
        try:
            self.encode(x, y)
        finally:
            for m in self.modules():
                if isinstance(m, ActNorm):
                    m.initializing = False
        return self

    # -- priors -------------------------------------------------------------------------------

    def top_prior(self, n, y=None):
        h = self.prior_h.detach()[:1].expand(n, -1, -1, -1)
        if self.has_learn_top:
            h = getattr(self, self.top_name)(h)
        if self.num_classes > 0:
            if y is None:
                raise ValueError('class-conditional model: y (one-hot [N, classes]) is required')
            h = h + self.project_ycond(y).view(n, -1, 1, 1)
        c = h.shape[1] // 2
        return h[:, :c], h[:, c:]

    # -- encode / decode ----------------------------------------------------------------------

    def encode(self, x, y=None):
        n = x.shape[0]
        C, H, W = self.config['imageShape']
        D = C * H * W
        z = x
        logdet = torch.zeros(n, dtype=x.dtype)
        logp = torch.zeros(n, dtype=x.dtype)
        eps = []
        for layer in self.flow.layers:
            if isinstance(layer, Squeeze):
                z = layer(z)
            elif isinstance(layer, FlowStep):
                z, ld = layer(z)
                logdet = logdet + ld
            else:
                half = z.shape[1] // 2
                z1, z2 = z[:, :half], z[:, half:]
                mean, logs = layer.prior(z1)
                e = (z2 - mean) * torch.exp(-logs)
                eps.append(e)
                logp = logp + gaussian_logp(e, logs)
                z = z1
        mean, logs = self.top_prior(n, y)
        e = (z - mean) * torch.exp(-logs)
        eps.append(e)
        logp = logp + gaussian_logp(e, logs)
        log_px = logdet + logp - D * math.log(2 ** self.config['nBits'])
        bpd = -log_px / (D * math.log(2))
        out = {'eps': eps, 'logdet': logdet, 'log_px': log_px, 'bpd': bpd, 'y_logits': None}
        if self.num_classes > 0:
            out['y_logits'] = self.project_class(z.mean(dim=(2, 3)))
        return out

    def decode(self, eps, temperature=1.0, y=None):
        """eps: list [eps_1 (first split), ..., eps_L (top)]; z = mean + exp(logs) * T * eps."""
        n = eps[-1].shape[0]
        mean, logs = self.top_prior(n, y)
        z = mean + torch.exp(logs) * temperature * eps[-1]
        level = len(eps) - 2
        for layer in reversed(self.flow.layers):
            if isinstance(layer, Squeeze):
                z = layer.reverse(z)
            elif isinstance(layer, FlowStep):
                z = layer.reverse(z)
            else:
                mean, logs = layer.prior(z)
                z2 = mean + torch.exp(logs) * temperature * eps[level]
                level -= 1
                z = torch.cat([z, z2], 1)
        return z


# --------------------------------------------------------------------------------------------
# Name maps between the two ports


# y0ast name pattern -> chaiyujin name (suffix rules; anything else is named alike).
_Y0AST_TO_CHAIYUJIN = [
    (r'^(flow\.layers\.\d+)\.block\.([02])\.conv\.weight$', r'\1.f.\2.weight'),
    (r'^(flow\.layers\.\d+)\.block\.([02])\.actnorm\.(bias|logs)$', r'\1.f.\2.actnorm.\3'),
    (r'^(flow\.layers\.\d+)\.block\.4\.conv\.(weight|bias)$', r'\1.f.4.\2'),
    (r'^(flow\.layers\.\d+)\.block\.4\.logs$', r'\1.f.4.logs'),
    (r'^(flow\.layers\.\d+)\.invconv\.lower$', r'\1.invconv.l'),
    (r'^(flow\.layers\.\d+)\.invconv\.upper$', r'\1.invconv.u'),
    (r'^(flow\.layers\.\d+)\.conv\.conv\.(weight|bias)$', r'\1.conv.\2'),
    (r'^learn_top_fn\.conv\.(weight|bias)$', r'learn_top.\1'),
    (r'^learn_top_fn\.logs$', 'learn_top.logs'),
    (r'^(project_ycond|project_class)\.linear\.(weight|bias)$', r'\1.\2'),
]
_CHAIYUJIN_TO_Y0AST = [
    (r'^(flow\.layers\.\d+)\.f\.([02])\.weight$', r'\1.block.\2.conv.weight'),
    (r'^(flow\.layers\.\d+)\.f\.([02])\.actnorm\.(bias|logs)$', r'\1.block.\2.actnorm.\3'),
    (r'^(flow\.layers\.\d+)\.f\.4\.(weight|bias)$', r'\1.block.4.conv.\2'),
    (r'^(flow\.layers\.\d+)\.f\.4\.logs$', r'\1.block.4.logs'),
    (r'^(flow\.layers\.\d+)\.invconv\.l$', r'\1.invconv.lower'),
    (r'^(flow\.layers\.\d+)\.invconv\.u$', r'\1.invconv.upper'),
    (r'^(flow\.layers\.\d+)\.conv\.(weight|bias)$', r'\1.conv.conv.\2'),
    (r'^learn_top\.(weight|bias)$', r'learn_top_fn.conv.\1'),
    (r'^learn_top\.logs$', 'learn_top_fn.logs'),
    (r'^(project_ycond|project_class)\.(weight|bias)$', r'\1.linear.\2'),
]


def convert_name(name, src, dst):
    if src == dst:
        return name
    rules = _Y0AST_TO_CHAIYUJIN if src == 'y0ast' else _CHAIYUJIN_TO_Y0AST
    for pat, rep in rules:
        if re.match(pat, name):
            return re.sub(pat, rep, name)
    return name


def convert_state_dict(state, src, dst, prior_batch=4):
    """Renames a state_dict from naming src to naming dst. prior_h: chaiyujin's batch-sized
    parameter keeps its first row for y0ast; y0ast's row is repeated prior_batch times."""
    out = {}
    for k, v in state.items():
        nk = convert_name(k, src, dst)
        if nk == 'prior_h' and src != dst:
            v = v[:1].repeat(prior_batch, 1, 1, 1) if dst == 'chaiyujin' else v[:1].clone()
        out[nk] = v
    return out


def _self_check():
    """Round trip, naming equivalence, squeeze layout, and the log-determinant against the
    slogdet of the autograd Jacobian of x -> eps (log|det d eps/dx| = logdet - sum logs)."""
    torch.set_num_threads(2)
    torch.manual_seed(0)
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float64).view(2, 3, 4, 4)
    s = squeeze(x)
    assert all(s[n, c * 4 + 2 * i + j, h, w] == x[n, c, 2 * h + i, 2 * w + j]
               for n in range(2) for c in range(3) for i in range(2) for j in range(2)
               for h in range(2) for w in range(2))
    assert torch.equal(unsqueeze(s), x)
    base = dict(imageShape=[2, 4, 4], K=2, L=2, hiddenChannels=5, coupling='affine', permutation='invconv',
                lu=True, learnTop=True, numClasses=3, nBits=5, actnormScale=1)
    variants = [{}, dict(coupling='additive', lu=False, numClasses=0), dict(lu=[False, True]),
                dict(permutation='shuffle', learnTop=False), dict(permutation='reverse', L=1)]
    for v in variants:
        cfg = dict(base, **v)
        C, H, W = cfg['imageShape']
        D = C * H * W
        ncls = cfg['numClasses']
        outs = {}
        x = torch.rand(1, C, H, W, dtype=torch.float64) - 0.5
        y = F.one_hot(torch.tensor([1]), ncls).double() if ncls else None
        for naming in NAMINGS:
            m = Glow(cfg, naming, shuffle_seed=5).double().randomize_(1, dirty_lu_masks=True)
            with torch.no_grad():
                out = m.encode(x, y)
                err = (m.decode(out['eps'], 1.0, y) - x).abs().max().item()
            jac = torch.autograd.functional.jacobian(
                lambda t: torch.cat([e.flatten() for e in m.encode(t.view(1, C, H, W), y)['eps']]), x.flatten())
            ld_eps = torch.linalg.slogdet(jac)[1].item()
            expect = (out['log_px'] + D * math.log(2 ** cfg['nBits'])).item() - sum(
                (-0.5 * e ** 2 - 0.5 * LOG_2PI).sum().item() for e in out['eps'])
            assert err < 1e-12 and abs(ld_eps - expect) < 1e-9, (cfg, naming, err, ld_eps, expect)
            outs[naming] = torch.cat([out['bpd']] + [e.flatten() for e in out['eps']])
            print(f"{naming:9s} {v or 'base'}: bpd {out['bpd'].item():.6f}, round trip {err:.1e}, "
                  f"jacobian logdet err {abs(ld_eps - expect):.1e}")
        assert torch.equal(outs['y0ast'], outs['chaiyujin'])
    print('self-check ok')


if __name__ == '__main__':
    _self_check()
