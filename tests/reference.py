"""Independent pure-Python reference of every handler kind (csrc/kinds.h): one function
per kind, of the same name and parameters, tensors given as shapes and the output's shape
as ``out``. Each returns (count, activations): multiply-adds for matmuls, convolutions
and attention, fvcore's flops for the others.

Written from the definitions (every multiply of a matmul / convolution / attention is
enumerated by its index ranges), not from the engine's code.
"""
from math import prod


def mm(a, b, *, out=None):
    (m, k), (_, n) = a, b
    return m * k * n, m * n


def bmm(a, b, *, out=None):
    (bt, m, k), (_, _, n) = a, b
    return bt * m * k * n, bt * m * n


def grouped_mm(a, b, *, out):
    if len(a) == 2 and len(b) == 2:  # (m, K) x (K, n), K split into groups: out (g, m, n)
        return a[0] * a[1] * b[1], prod(out)
    k = a[-1]  # every output element is a k-long dot product within its group
    return prod(out) * k, prod(out)


def conv(input, weight, transposed, *, out):
    x, w, n = input, weight, input[0]
    if transposed:
        # every input position scatters into w[1] * prod(k) outputs for each of its w[0] channels
        c_in, c_out_per_group = w[0], w[1]
        macs = n * prod(x[2:]) * c_in * c_out_per_group * prod(w[2:])
    else:
        # every output position gathers c_in/groups * prod(k) inputs for each of w[0] channels
        c_out, c_in_per_group = w[0], w[1]
        macs = n * prod(out[2:]) * c_out * c_in_per_group * prod(w[2:])
    return macs, prod(out)


def conv_backward(grad_output, input, weight, transposed, output_mask, *, out=None):
    # the input gradient and the weight gradient each pair every (input, weight, output)
    # of the forward once
    forward = conv(input, weight, transposed, out=grad_output)[0]
    return forward * (int(output_mask[0]) + int(output_mask[1])), 0


def _attention(query, key, value, bshd):
    if bshd:  # (batch, seq, heads, dim) -> (batch, heads, seq, dim)
        query, key, value = ([s[0], s[2], s[1], s[3]] for s in (query, key, value))
    return prod(query[:-2]), query[-2], query[-1], key[-2], value[-1]


def sdpa(query, key, value, bshd, offsets, *, out=None):
    if offsets is not None:
        raise ValueError("variable-length attention is not countable from shapes")
    bh, s_q, d, s_k, d_v = _attention(query, key, value, bshd)
    scores = bh * s_q * s_k * d     # q @ k^T
    values = bh * s_q * s_k * d_v   # p @ v
    return scores + values, bh * s_q * s_k + bh * s_q * d_v


def sdpa_backward(query, key, value, bshd, offsets, *, out=None):
    if offsets is not None:
        raise ValueError("variable-length attention is not countable from shapes")
    bh, s_q, d, s_k, d_v = _attention(query, key, value, bshd)
    recompute = bh * s_q * s_k * d
    grad_v = bh * s_k * s_q * d_v
    grad_p = bh * s_q * d_v * s_k
    grad_k = bh * s_k * s_q * d
    grad_q = bh * s_q * s_k * d
    return recompute + grad_v + grad_p + grad_k + grad_q, 0


def batch_norm(input, weight, training, *, out=None):
    affine = weight is not None
    per = (5 if affine else 4) if training else (2 if affine else 1)
    return prod(input) * per, 0


def norm(input, weight, *, out=None):
    return prod(input) * (5 if weight is not None else 4), 0


def elementwise(input, input_scale, output_scale, *, out):
    return input_scale * prod(input) + output_scale * prod(out), 0


def mean_pool(input, dim, keepdim, *, out=None):
    # adaptive_avg_pool2d to 1x1 as aten.mean reaches it (dim [-1, -2], keepdim): one flop
    # per input element; a mean the program calls itself is free, as in fvcore
    pooled = bool(keepdim) and dim is not None and list(dim) == [-1, -2] and len(input) in (3, 4)
    return (prod(input) if pooled else 0), 0


def matmul(a, *, out):
    # every output element is a dot product along the first operand's last dimension
    return prod(out) * a[-1], prod(out)


def addbmm(a, b, *, out=None):
    (bt, m, k), (_, _, n) = a, b
    return bt * m * k * n, m * n  # the batch's products summed into one (m, n)


def linear_backward(input, grad_output, output_mask, *, out=None):
    # y = x W^T: dX = dY W and dW = dY^T X each pair every (x, w) product of the forward
    forward = prod(input) * grad_output[-1]
    return forward * (int(output_mask[0]) + int(output_mask[1])), 0


def trilinear(i1, i2, i3, expand1, expand2, expand3, *, out):
    # each operand unsqueezed at its expand dims; one multiply-add per point of the
    # space they broadcast to
    def unsqueezed(shape, expand):
        shape = list(shape)
        for d in sorted(expand):
            shape.insert(d, 1)
        return shape

    shapes = [unsqueezed(s, e) for s, e in ((i1, expand1), (i2, expand2), (i3, expand3))]
    return prod(max(sizes) for sizes in zip(*shapes)), prod(out)


def conv_tbc(input, weight, *, out):
    k, c_in, _ = weight  # each output (time, batch, channel) gathers k taps of c_in inputs
    return prod(out) * k * c_in, prod(out)


def packed_conv(input, packed, transposed, *, out):
    # a quantized convolution: ``packed`` is the shape of the weight its parameters hold
    return conv(input, packed, transposed, out=out)


def rnn(input, hx, num_layers, bidirectional, gates, *, out=None):
    hidden = (hx[0] if isinstance(hx[0], list) else hx)[-1]
    features = input[-1]
    tokens = prod(input) // features
    directions = 2 if bidirectional else 1
    macs = acts = 0
    for layer in range(num_layers):
        width = features if layer == 0 else directions * hidden
        for _ in range(directions):
            # per token: gates*hidden rows times the input, and times the hidden state
            macs += tokens * gates * hidden * width + tokens * gates * hidden * hidden
            acts += 2 * tokens * gates * hidden  # the two projections' outputs
    return macs, acts
