"""Fused kernels and the unfused path each replaces: what PyTorch runs instead of counted
ops on some devices or grad modes (``nn.MultiheadAttention``'s and
``nn.TransformerEncoderLayer``'s inference fast paths, oneDNN's, cuDNN's, MIOpen's and
MPS's RNNs). A fused call is charged what its unfused path costs for the same shapes and
flags: ``REFERENCES[op]`` runs that path, built from public torch functions, on meta
tensors (composite.py records and costs its ops), so the count, the activations and
the ops it is charged as are the ones the slow path would have given.

A fused backward is charged the backward of its reference, through autograd on meta
tensors, for the gradients the kernel computes: every one for oneDNN's and MPS's; for
cuDNN's and MIOpen's the input's and the initial states' always (they compute them
unconditionally) and the weights' where ``output_mask`` asks.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import _disable_current_modes

aten = torch.ops.aten


def _time_major(t: torch.Tensor) -> torch.Tensor:
    return t.transpose(0, 1)


def _masks(mask, mask_type, batch: int, heads: int, q_len: int, k_len: int) -> dict:
    """The slow path's ``attn_mask``/``key_padding_mask`` for a fast path's merged mask:
    type 0 is (L, S), 1 is (B, S), 2 is (B, heads, L, S)."""
    if mask is None:
        return {}
    if mask_type == 1:
        return {"key_padding_mask": mask}
    if mask_type == 2:
        return {"attn_mask": mask.expand(batch, heads, q_len, k_len).reshape(-1, q_len, k_len)}
    return {"attn_mask": mask}


def _attention(query, key, value, embed_dim, num_head, qkv_weight, qkv_bias, proj_weight,
               proj_bias, mask=None, need_weights=True, average_attn_weights=True,
               mask_type=None):
    """``nn.MultiheadAttention``'s slow path (batch first, as its fast path requires)."""
    if query.dim() == 2:  # unbatched
        query, key, value = query.unsqueeze(0), key.unsqueeze(0), value.unsqueeze(0)
    q = _time_major(query)  # the slow path keeps q, k and v one tensor when they are one
    k = q if key is query else _time_major(key)
    v = k if value is key else _time_major(value)
    return F.multi_head_attention_forward(
        q, k, v, embed_dim, num_head, qkv_weight, qkv_bias, None, None, False, 0.0,
        proj_weight, proj_bias, training=False, need_weights=need_weights,
        average_attn_weights=average_attn_weights,
        **_masks(mask, mask_type, query.shape[0], num_head, query.shape[1], key.shape[1]))


def _encoder_layer(src, embed_dim, num_heads, qkv_weight, qkv_bias, proj_weight, proj_bias,
                   use_gelu, norm_first, eps, norm_weight_1, norm_bias_1, norm_weight_2,
                   norm_bias_2, ffn_weight_1, ffn_bias_1, ffn_weight_2, ffn_bias_2, mask=None,
                   mask_type=None):
    """``nn.TransformerEncoderLayer``'s slow path (batch first, in eval)."""
    def attend(x):
        return _attention(x, x, x, embed_dim, num_heads, qkv_weight, qkv_bias, proj_weight,
                          proj_bias, mask, False, True, mask_type)[0].transpose(0, 1)

    def feed_forward(x):
        hidden = F.linear(x, ffn_weight_1, ffn_bias_1)
        return F.linear(F.gelu(hidden) if use_gelu else F.relu(hidden), ffn_weight_2, ffn_bias_2)

    def norm(x, weight, bias):
        return F.layer_norm(x, (embed_dim,), weight, bias, eps)

    x = src
    if norm_first:
        x = x + attend(norm(x, norm_weight_1, norm_bias_1))
        return x + feed_forward(norm(x, norm_weight_2, norm_bias_2))
    x = norm(x + attend(x), norm_weight_1, norm_bias_1)
    return norm(x + feed_forward(x), norm_weight_2, norm_bias_2)


# cuDNN's and MIOpen's RNN modes, and the functions of their unfused paths
_RNN_MODES = {0: torch.rnn_relu, 1: torch.rnn_tanh, 2: torch.lstm, 3: torch.gru}


def _rnn(mode, input, hx, cx, params, has_biases, num_layers, bidirectional, batch_first,
         batch_sizes):
    """The unfused RNN of ``mode`` (no dropout: it has no FLOPs). A packed sequence
    (``batch_sizes``, a list of ints) runs as one."""
    fn = _RNN_MODES[mode]
    hidden = [hx, cx] if fn is torch.lstm else hx
    if batch_sizes:
        sizes = torch.tensor(batch_sizes, dtype=torch.int64)
        return fn(input, sizes, hidden, params, has_biases, num_layers, 0.0, False,
                  bidirectional)
    return fn(input, hidden, params, has_biases, num_layers, 0.0, False, bidirectional,
              batch_first)


def _backward(forward, leaves: list, grads: list, needs: list | None = None):
    """Record the backward of ``forward(*leaves)`` with respect to the leaves that
    ``needs`` marks (all by default; None leaves never), its outputs weighted by
    ``grads`` (None: that output has no gradient). The forward runs unrecorded."""
    needs = needs or [True] * len(leaves)
    needs = [bool(n) and x is not None for x, n in zip(leaves, needs)]
    if not any(needs) or all(g is None for g in grads):  # the kernel has nothing to do
        return
    with _disable_current_modes(), torch.enable_grad():
        inputs = [x.detach().requires_grad_() if n else x for x, n in zip(leaves, needs)]
        outs = forward(*inputs)
    pairs = [(o, g) for o, g in zip(outs, grads) if g is not None]
    torch.autograd.grad([o for o, _ in pairs], [x for x, n in zip(inputs, needs) if n],
                        [g for _, g in pairs], allow_unused=True)


def _cudnn_rnn(input, weight, weight_stride0, weight_buf, hx, cx, mode, hidden_size,
               proj_size, num_layers, batch_first, dropout, train, bidirectional, batch_sizes,
               dropout_state):
    return _rnn(mode, input, hx, cx, list(weight), weight_stride0 in (4, 5), num_layers,
                bidirectional, batch_first, batch_sizes)


def _cudnn_rnn_backward(input, weight, weight_stride0, weight_buf, hx, cx, output,
                        grad_output, grad_hy, grad_cy, mode, hidden_size, proj_size,
                        num_layers, batch_first, dropout, train, bidirectional, batch_sizes,
                        dropout_state, reserve, output_mask):
    need_weights = output_mask[3]  # the data gradients are computed whatever the mask says

    def forward(x, h, c, *params):
        out = _rnn(mode, x, h, c, list(params), weight_stride0 in (4, 5), num_layers,
                   bidirectional, batch_first, batch_sizes)
        return out if len(out) == 3 else (*out, None)  # (output, hy[, cy])

    _backward(forward, [input, hx, cx, *weight], [grad_output, grad_hy, grad_cy],
              [True, True, True] + [need_weights] * len(weight))


def _miopen_rnn(input, weight, weight_stride0, hx, cx, mode, hidden_size, num_layers,
                batch_first, dropout, train, bidirectional, batch_sizes, dropout_state):
    return _cudnn_rnn(input, weight, weight_stride0, None, hx, cx, mode, hidden_size, 0,
                      num_layers, batch_first, dropout, train, bidirectional, batch_sizes,
                      dropout_state)


def _miopen_rnn_backward(input, weight, weight_stride0, weight_buf, hx, cx, output,
                         grad_output, grad_hy, grad_cy, mode, hidden_size, num_layers,
                         batch_first, dropout, train, bidirectional, batch_sizes,
                         dropout_state, reserve, output_mask):
    return _cudnn_rnn_backward(input, weight, weight_stride0, weight_buf, hx, cx, output,
                               grad_output, grad_hy, grad_cy, mode, hidden_size, 0,
                               num_layers, batch_first, dropout, train, bidirectional,
                               batch_sizes, dropout_state, reserve, output_mask)


def _one_layer(input, w_ih, w_hh, b_ih, b_hh, hx, cx, has_biases, batch_sizes):
    """One direction of one LSTM layer (oneDNN's unit: time-major input, (B, H) states)."""
    params = [w_ih, w_hh, b_ih, b_hh] if has_biases else [w_ih, w_hh]
    return _rnn(2, input, hx.unsqueeze(0), cx.unsqueeze(0), params, has_biases, 1, False,
                False, batch_sizes)


def _mkldnn_rnn_layer(input, weight0, weight1, weight2, weight3, hx_, cx_, reverse,
                      batch_sizes, mode, hidden_size, num_layers, has_biases, bidirectional,
                      batch_first, train):
    return _one_layer(input, weight0, weight1, weight2, weight3, hx_, cx_, has_biases,
                      batch_sizes)


def _mkldnn_rnn_layer_backward(input, weight1, weight2, weight3, weight4, hx_, cx_tmp,
                               output, hy_, cy_, grad_output, grad_hy, grad_cy, reverse, mode,
                               hidden_size, num_layers, has_biases, train, bidirectional,
                               batch_sizes, batch_first, workspace):
    leaves = [input, weight1, weight2] + ([weight3, weight4] if has_biases else [])
    leaves += [hx_, cx_tmp]

    def forward(x, w_ih, w_hh, *rest):
        b_ih, b_hh, h, c = rest if has_biases else (None, None, *rest)
        out, hy, cy = _one_layer(x, w_ih, w_hh, b_ih, b_hh, h, c, has_biases, batch_sizes)
        return out, hy.squeeze(0), cy.squeeze(0)

    _backward(forward, leaves, [grad_output, grad_hy, grad_cy])


def _lstm_mps(input, hx, params, has_biases, num_layers, dropout, train, bidirectional,
              batch_first):
    return torch.lstm(input, list(hx), list(params), has_biases, num_layers, 0.0, False,
                      bidirectional, batch_first)


def _lstm_mps_backward(grad_y, grad_hy, grad_cy, z_state, cell_state_fwd, input,
                       layers_outputs, hx, params, has_biases, num_layers, dropout, train,
                       bidirectional, batch_first):
    _backward(lambda x, h, c, *w: _lstm_mps(x, [h, c], w, has_biases, num_layers, dropout,
                                            train, bidirectional, batch_first),
              [input, *hx, *params], [grad_y, grad_hy, grad_cy])


#: fused op (OpOverloadPacket) -> its unfused path, f(*args, **kwargs) on meta tensors
REFERENCES = {
    aten._native_multi_head_attention: _attention,
    aten._transformer_encoder_layer_fwd: _encoder_layer,
    aten.mkldnn_rnn_layer: _mkldnn_rnn_layer,
    aten.mkldnn_rnn_layer_backward: _mkldnn_rnn_layer_backward,
    aten._cudnn_rnn: _cudnn_rnn,
    aten._cudnn_rnn_backward: _cudnn_rnn_backward,
    aten.miopen_rnn: _miopen_rnn,
    aten.miopen_rnn_backward: _miopen_rnn_backward,
    aten._lstm_mps: _lstm_mps,
    aten.lstm_mps_backward: _lstm_mps_backward,
}


def reference(func):
    """The unfused path of ``func`` (an OpOverload), or None if it is not a fused kernel;
    an ``out=`` overload's is that of its functional form."""
    return REFERENCES.get(getattr(func, "_overloadpacket", None))
