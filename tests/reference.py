"""Independent pure-Python reference of every C++ formula (multiply-adds unless noted).

Written from the definitions (every multiply of a matmul / convolution / attention is
enumerated by its index ranges), not from the engine's code.
"""
from math import prod


def mm(a, b):
    (m, k), (_, n) = a, b
    return m * k * n, m * n


def bmm(a, b):
    (bt, m, k), (_, _, n) = a, b
    return bt * m * k * n, bt * m * n


def grouped_mm(a, b, out):
    if len(a) == 2 and len(b) == 2:  # (m, K) x (K, n), K split into groups: out (g, m, n)
        return a[0] * a[1] * b[1], prod(out)
    k = a[-1]  # every output element is a k-long dot product within its group
    return prod(out) * k, prod(out)


def conv(x, w, out, transposed):
    n = x[0]
    if transposed:
        # every input position scatters into w[1] * prod(k) outputs for each of its w[0] channels
        c_in, c_out_per_group = w[0], w[1]
        macs = n * prod(x[2:]) * c_in * c_out_per_group * prod(w[2:])
    else:
        # every output position gathers c_in/groups * prod(k) inputs for each of w[0] channels
        c_out, c_in_per_group = w[0], w[1]
        macs = n * prod(out[2:]) * c_out * c_in_per_group * prod(w[2:])
    return macs, prod(out)


def conv_backward(grad_out, x, w, transposed, mask_input, mask_weight):
    forward = conv(x, w, grad_out, transposed)[0]
    return forward * (int(mask_input) + int(mask_weight))


def sdpa(q, k, v):
    bh = prod(q[:-2])
    s_q, d = q[-2], q[-1]
    s_k, d_v = k[-2], v[-1]
    scores = bh * s_q * s_k * d     # q @ k^T
    values = bh * s_q * s_k * d_v   # p @ v
    return scores + values, bh * s_q * s_k + bh * s_q * d_v


def sdpa_backward(q, k, v):
    bh = prod(q[:-2])
    s_q, d = q[-2], q[-1]
    s_k, d_v = k[-2], v[-1]
    recompute = bh * s_q * s_k * d
    grad_v = bh * s_k * s_q * d_v
    grad_p = bh * s_q * d_v * s_k
    grad_k = bh * s_k * s_q * d
    grad_q = bh * s_q * s_k * d
    return recompute + grad_v + grad_p + grad_k + grad_q


def batch_norm(x, affine, training):
    per = (5 if affine else 4) if training else (2 if affine else 1)
    return prod(x) * per


def norm(x, affine):
    return prod(x) * (5 if affine else 4)


def elementwise(inp, out, input_scale, output_scale):
    return input_scale * prod(inp) + output_scale * prod(out)
